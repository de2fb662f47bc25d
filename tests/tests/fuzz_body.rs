//! Runs the cargo-fuzz target's body (runtime/fuzz/src/lib.rs, which needs nightly and
//! libFuzzer as a fuzz target) on stable: it must compile against today's kdruntime, and on
//! generated models and byte-level mutations of them it must return, never panic.

#[path = "../../runtime/fuzz/src/lib.rs"]
mod fuzz_body;

use kdtests::gen::suite;
use kdtests::rng::Rng;

#[test]
fn fuzz_body_runs_on_generated_models_and_mutations() {
    let models = suite(19, 99);
    let mut rng = Rng::new(12345);
    let mut stages = [0usize; 5];
    for g in &models {
        stages[fuzz_body::model_init_invoke(&g.model) as usize] += 1;
        for _ in 0..40 {
            let mut m = g.model.clone();
            match rng.range(0, 2) {
                0 => {
                    for _ in 0..rng.range(1, 4) {
                        let i = rng.range(0, m.len() as i64 - 1) as usize;
                        m[i] ^= 1 << rng.range(0, 7);
                    }
                }
                1 => m.truncate(rng.range(0, m.len() as i64 - 1) as usize),
                _ => {
                    let i = rng.range(0, m.len() as i64 - 1) as usize;
                    m[i] = 0xff;
                }
            }
            stages[fuzz_body::model_init_invoke(&m) as usize] += 1;
        }
    }
    // Unmutated models of the wired-in operators reach invoke; mutations reach every stage.
    assert!(stages[4] >= 7, "stages reached: {stages:?}");
    assert!(stages[0] > 0, "stages reached: {stages:?}");
    eprintln!("fuzz body stages (rejected, no plan, no init, invoke error, invoked): {stages:?}");
}
