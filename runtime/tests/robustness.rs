//! Malformed models must produce errors, never panics: truncated and randomly mutated fixture
//! bytes go through `from_bytes`, then (when accepted) `arena_size`, `Interpreter::new` and
//! `invoke`. Every check happens before `invoke`: a model `arena_size` accepts must be accepted
//! by `Interpreter::new` and must then run without error. By default 2,500 deterministic mutations of each of five models (four core fixtures
//! and `nets/all_ops`, which uses every operator), plus truncations: more than 12,000 models.
//! Mutations are bit flips, random bytes, extreme 4-byte words, small bytes in the tables, and
//! field mutations (words that look like dimensions/strides/indices or like scales set to edge
//! values). `KDRUNTIME_MUTATIONS=N` sets the per-model count.

use kdruntime::{Interpreter, Model};

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
    /// `arena_size` (planning and operator validation) refused it.
    rejected_at_plan: usize,
    /// The plan exceeded the test's arena cap (not initialised).
    over_cap: usize,
    /// `invoke` ran to completion.
    ran_ok: usize,
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
        out.over_cap += 1;
        return;
    }
    let mut arena = vec![0u8; need];
    // Validation is complete at `arena_size`: init and invoke may not fail afterwards.
    let mut interp = match Interpreter::new(&model, &mut arena) {
        Ok(i) => i,
        Err(e) => panic!("arena_size accepted the model, Interpreter::new refused it: {e}"),
    };
    if let Ok(input) = interp.input_mut(0) {
        input.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
    if let Err(e) = interp.invoke() {
        panic!("invoke failed on a model init accepted: {e}");
    }
    let _ = interp.output(0).map(|o| o.len());
    out.ran_ok += 1;
}

#[test]
fn truncated_and_mutated_models_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Outcome::default();
    let mut total = 0;
    // KDRUNTIME_MUTATIONS raises the per-model count for longer local fuzzing runs.
    let per_model: usize = std::env::var("KDRUNTIME_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500);
    for name in [
        "core/pipeline_u8_classifier",
        "core/conv_same_s2_d2_5x5",
        "core/fc_pt_bias",
        "core/mean_negaxes_keep_float",
        "nets/all_ops",
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
            match i % 6 {
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
                // a field that looks like a dimension, stride, index or enum (a small
                // aligned int32) set to an edge value
                4 => {
                    let small: Vec<usize> = (0..m.len() / 4)
                        .map(|w| 4 * w)
                        .filter(|&p| {
                            let v = i32::from_le_bytes(m[p..p + 4].try_into().unwrap());
                            (1..=64).contains(&v)
                        })
                        .collect();
                    if let Some(&p) = small.get(rng.below(small.len().max(1))) {
                        let v = [0i32, 1, 2, 3, 7, 255, -1, -2, i32::MAX, i32::MIN][rng.below(10)];
                        m[p..p + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
                // a field that looks like a scale or beta (a plausible positive float) set to
                // zero, negative, huge, tiny, NaN or infinity
                5 => {
                    let floats: Vec<usize> = (0..m.len() / 4)
                        .map(|w| 4 * w)
                        .filter(|&p| {
                            let v = f32::from_le_bytes(m[p..p + 4].try_into().unwrap());
                            (1e-6..1e3).contains(&v)
                        })
                        .collect();
                    if let Some(&p) = floats.get(rng.below(floats.len().max(1))) {
                        let old = f32::from_le_bytes(m[p..p + 4].try_into().unwrap());
                        let v = [
                            0.0,
                            -old,
                            old * 1e6,
                            old * 1e-6,
                            f32::NAN,
                            f32::INFINITY,
                            f32::MIN_POSITIVE / 4.0,
                            f32::MAX,
                        ][rng.below(8)];
                        m[p..p + 4].copy_from_slice(&v.to_le_bytes());
                    }
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
    println!(
        "{total} truncated/mutated models: {} rejected at load, {} rejected by arena_size, \
         {} over the test's arena cap, {} initialised and invoked without error",
        out.rejected_at_load, out.rejected_at_plan, out.over_cap, out.ran_ok
    );
    if per_model >= 2500 {
        assert!(total >= 10_000, "{total}");
    }
    // The mutations must reach every stage, or the test would prove little.
    assert!(
        out.rejected_at_load > 100 && out.rejected_at_plan > 100 && out.ran_ok > 100,
        "{out:?}"
    );
}
