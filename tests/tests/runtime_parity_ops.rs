//! kdruntime (every kernel family) against TFLite's reference kernels (BUILTIN_REF) on random single-operator models
//! from `kdtests::gen` covering all 20 operators (19 + RELU_N1_TO_1): every output byte must be equal. A model
//! kdruntime rejects is a failure unless TFLite rejects it too (and the reverse).
//!
//! `KD_PARITY_OPS=N` sets the number of models (default 800: 40 per operator); `KD_PARITY_SEED`
//! the suite seed.

use std::collections::BTreeMap;

use kdruntime::kernels::simd::Kernels;
use kdtests::gen::{self, ALL_OPS};
use kdtests::kd;
use kdtests::reference::{self, Backend};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    models: usize,
    values: usize,
    both_rejected: usize,
}

#[test]
fn random_single_op_models_match_builtin_ref_bit_for_bit() {
    let count = env_usize("KD_PARITY_OPS", 40 * ALL_OPS.len());
    let seed = env_usize("KD_PARITY_SEED", 7) as u64;
    assert!(
        count >= ALL_OPS.len(),
        "KD_PARITY_OPS must cover every operator"
    );
    let models = gen::suite(count, seed);
    let refs = reference::run_batch(&gen::cases(&models), Backend::TfliteRef).expect("harness ran");
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    for (m, r) in models.iter().zip(&refs) {
        let t = tally.entry(format!("{:?}", m.kind)).or_default();
        for kernels in kd::ALL_KERNELS {
            let ours = kd::run_with(&m.model, &m.inputs, kernels);
            let name = format!("{} ({kernels:?})", m.name);
            match (&r.result, ours) {
                (Ok((want, info)), Ok(got)) => {
                    if got.outputs.len() != want.len() {
                        failures.push(format!(
                            "{}: {} outputs, TFLite {}",
                            name,
                            got.outputs.len(),
                            want.len()
                        ));
                        continue;
                    }
                    for (k, (g, w)) in got.outputs.iter().zip(want).enumerate() {
                        if g != w {
                            let first = g.iter().zip(w).position(|(a, b)| a != b);
                            let differ = g.iter().zip(w).filter(|(a, b)| a != b).count();
                            failures.push(format!(
                            "{} output {k}: {} bytes (TFLite {}), {differ} differ, first at byte {first:?}",
                            name,
                            g.len(),
                            w.len()
                        ));
                        }
                        let elem = info
                            .get(k)
                            .and_then(|i| i.elem_size().ok())
                            .unwrap_or(1)
                            .max(1);
                        if kernels == Kernels::Reference {
                            t.values += w.len() / elem;
                        }
                    }
                    if kernels == Kernels::Reference {
                        t.models += 1;
                    }
                }
                (Err(_), Err(_)) if kernels == Kernels::Reference => t.both_rejected += 1,
                (Err(_), Err(_)) => {}
                (Ok(_), Err(e)) => failures.push(format!("{}: kdruntime rejected it: {e}", m.name)),
                (Err(e), Ok(_)) => failures.push(format!(
                    "{}: TFLite rejected it ({e}) but kdruntime ran it",
                    name
                )),
            }
        }
    }
    println!(
        "{:<18} {:>7} {:>9} {:>14}",
        "operator", "models", "values", "both rejected"
    );
    let (mut models_total, mut values_total) = (0, 0);
    for (op, t) in &tally {
        println!(
            "{op:<18} {:>7} {:>9} {:>14}",
            t.models, t.values, t.both_rejected
        );
        models_total += t.models;
        values_total += t.values;
    }
    println!(
        "total: {models_total} models, {values_total} values compared bit-exact against BUILTIN_REF"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} models differ or were rejected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for k in ALL_OPS {
        let t = &tally[&format!("{k:?}")];
        assert!(
            t.models * ALL_OPS.len() >= count * 8 / 10,
            "{k:?}: only {} models compared",
            t.models
        );
    }
}
