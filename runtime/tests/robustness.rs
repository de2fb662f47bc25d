//! Malformed models must produce errors, never panics: truncated and randomly mutated fixture
//! bytes go through `from_bytes`, then (when accepted) `arena_size`, `Interpreter::new` and
//! `invoke`. 4,000 deterministic mutations across four models by default (plus truncations).

use kdruntime::{Error, Interpreter, Model};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Largest arena the test will allocate for a mutated model (bigger claims are only planned).
const ARENA_CAP: usize = 1 << 22;

#[derive(Default, Debug)]
struct Outcome {
    rejected_at_load: usize,
    rejected_at_plan: usize,
    ran: usize,
}

fn exercise(bytes: &[u8], out: &mut Outcome) {
    let model = match Model::from_bytes(bytes) {
        Ok(m) => m,
        Err(e) => {
            // Errors must render (Display never panics either).
            assert!(!e.to_string().is_empty());
            out.rejected_at_load += 1;
            return;
        }
    };
    for t in model.tensors() {
        let _ = t.map(|t| t.shape);
    }
    for op in model.operators() {
        let _ = op.map(|o| o.name());
    }
    let need = match model.arena_size() {
        Ok(n) => n,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            out.rejected_at_plan += 1;
            return;
        }
    };
    if need > ARENA_CAP {
        out.rejected_at_plan += 1;
        return;
    }
    let mut arena = vec![0u8; need];
    let mut interp = match Interpreter::new(&model, &mut arena) {
        Ok(i) => i,
        Err(e) => {
            assert!(
                !matches!(e, Error::ArenaTooSmall { .. }),
                "arena_size and new disagree: {e}"
            );
            out.rejected_at_plan += 1;
            return;
        }
    };
    if let Ok(input) = interp.input_mut(0) {
        input.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
    if interp.invoke().is_ok() {
        let _ = interp.output(0).map(|o| o.len());
    }
    out.ran += 1;
}

#[test]
fn truncated_and_mutated_models_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/core/");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Outcome::default();
    let mut total = 0;
    // KDRUNTIME_MUTATIONS raises the per-model count for longer local fuzzing runs.
    let per_model: usize = std::env::var("KDRUNTIME_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for name in [
        "pipeline_u8_classifier",
        "conv_same_s2_d2_5x5",
        "fc_pt_bias",
        "mean_negaxes_keep_float",
    ] {
        let original = std::fs::read(format!("{dir}{name}.tflite")).unwrap();
        exercise(&original, &mut out);
        // Every truncation length of the first 256 bytes, then a stride through the rest.
        for len in (0..original.len()).filter(|&l| l < 256 || l % 37 == 0) {
            exercise(&original[..len], &mut out);
            total += 1;
        }
        for i in 0..per_model {
            let mut m = original.clone();
            match i % 4 {
                // 1-4 random bit flips
                0 => (0..1 + rng.below(4)).for_each(|_| {
                    let p = rng.below(m.len());
                    m[p] ^= 1 << rng.below(8);
                }),
                // a random byte
                1 => {
                    let p = rng.below(m.len());
                    m[p] = rng.next() as u8;
                }
                // a 4-byte word set to an extreme or random value (offsets, lengths, indices)
                2 => {
                    let p = rng.below(m.len() - 4) & !3;
                    let v = [
                        0u32,
                        1,
                        0x7fff_ffff,
                        0xffff_ffff,
                        0x8000_0000,
                        rng.next() as u32,
                    ][rng.below(6)];
                    m[p..p + 4].copy_from_slice(&v.to_le_bytes());
                }
                // a small value written into the first quarter (tables, vtables, shapes)
                _ => {
                    let p = rng.below(m.len() / 4);
                    m[p] = [0u8, 1, 2, 0x7f, 0x80, 0xff][rng.below(6)];
                }
            }
            exercise(&m, &mut out);
            total += 1;
        }
    }
    println!("{total} mutated models: {out:?}");
    assert!(total >= 4000);
    // The mutations must reach every stage, or the test would prove little.
    assert!(out.rejected_at_load > 100 && out.ran > 100, "{out:?}");
}
