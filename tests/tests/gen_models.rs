//! Every random single-operator model the generator builds loads and runs under TFLite's
//! reference kernels, and TFLite's own shape inference agrees with the shapes written into it.

use kdtests::gen::{self, ALL_OPS};
use kdtests::reference::{self, Backend};

const COUNT: usize = 320; // 16 models of each of the 20 operators

#[test]
fn random_models_run_under_builtin_ref() {
    let models = gen::suite(COUNT, 1);
    let results =
        reference::run_batch(&gen::cases(&models), Backend::TfliteRef).expect("harness ran");
    let mut failures = Vec::new();
    let mut values = 0usize;
    let mut informative = 0usize;
    for (m, r) in models.iter().zip(&results) {
        match &r.result {
            Ok((outputs, info)) => {
                let shape: Vec<i64> = m.output_shapes[0].iter().map(|&d| d.into()).collect();
                if info[0].shape != shape {
                    failures.push(format!(
                        "{}: TFLite inferred output shape {:?}, the model says {:?}",
                        m.name, info[0].shape, shape
                    ));
                }
                values += outputs[0].len();
                // An int8 output with some value off the rails tells a parity test something.
                if info[0].dtype != "int8"
                    || outputs[0]
                        .iter()
                        .any(|&b| b as i8 != -128 && b as i8 != 127)
                {
                    informative += 1;
                }
            }
            Err(e) => failures.push(format!("{}: {e}", m.name)),
        }
    }
    for k in ALL_OPS {
        assert!(
            models.iter().filter(|m| m.kind == k).count() >= 15,
            "{k:?} under-represented"
        );
    }
    println!(
        "{} models ran under BUILTIN_REF, {values} output bytes, {informative} with unsaturated outputs",
        models.len() - failures.len()
    );
    assert!(
        informative * 10 >= COUNT * 8,
        "only {informative} of {COUNT} models have unsaturated outputs"
    );
    assert!(
        failures.is_empty(),
        "{} of {COUNT} models failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
