//! Models emitted by TensorFlow's own TFLiteConverter (full-integer, uint8 in / int8 out), not by
//! our writer, in kdruntime against TFLite's reference kernels (BUILTIN_REF): every output byte
//! equal, on letterboxed photos and on random inputs. `make setup` (step `tfmodels`, script
//! tools/tf_convert.py) builds them under .cache/tfmodels/. Also prints each model's operator list
//! and kdruntime's arena next to TFLite Micro's.

use std::collections::BTreeMap;

use kdruntime::{Interpreter, Model};
use kdtests::nets::load_photo;
use kdtests::reference::{self, Backend, RunOptions};
use kdtests::rng::Rng;
use kdtests::workspace_root;

/// Every model tools/tf_convert.py writes, with its input resolution.
const MODELS: [(&str, usize); 5] = [
    ("mobilenetv2_035_96", 96),
    ("mobilenetv2_100_224", 224),
    ("efficientnetb0_224", 224),
    ("mobilenetv3small_224", 224),
    ("poolconcat_64", 64),
];

const PHOTOS: [&str; 4] = ["chelsea.png", "china.jpg", "coffee.png", "rocket.jpg"];
const RANDOM_INPUTS: usize = 2;

fn load_model(name: &str) -> Vec<u8> {
    let path = workspace_root()
        .join(".cache")
        .join("tfmodels")
        .join(format!("{name}.tflite"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}): run `make setup` (its tfmodels step converts the Keras \
             networks with TensorFlow's TFLiteConverter)",
            path.display()
        )
    })
}

/// "CONV_2D v3 x35, ..." in first-use order.
fn op_list(model: &Model) -> String {
    let mut counts: BTreeMap<(usize, &str, i32), usize> = BTreeMap::new();
    let mut first: BTreeMap<(&str, i32), usize> = BTreeMap::new();
    for op in model.operators() {
        let op = op.expect("operator table reads");
        let key = (op.name(), op.version);
        let at = *first.entry(key).or_insert(op.index);
        *counts.entry((at, key.0, key.1)).or_default() += 1;
    }
    counts
        .iter()
        .map(|((_, name, v), n)| format!("{name} v{v} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `model` in kdruntime on each sample (one input each); returns outputs per sample.
fn run_kdruntime(name: &str, model: &Model, samples: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    let size = model
        .arena_size()
        .unwrap_or_else(|e| panic!("{name}: kdruntime cannot plan the model: {e}"));
    let mut arena = vec![0u8; size];
    let mut interp = Interpreter::new(model, &mut arena)
        .unwrap_or_else(|e| panic!("{name}: kdruntime rejects the model: {e}"));
    samples
        .iter()
        .map(|x| {
            let dst = interp.input_mut(0).expect("input 0");
            assert_eq!(dst.len(), x.len(), "{name}: input size");
            dst.copy_from_slice(x);
            interp
                .invoke()
                .unwrap_or_else(|e| panic!("{name}: kdruntime invoke failed: {e}"));
            (0..model.num_outputs())
                .map(|o| interp.output(o).expect("output").to_vec())
                .collect()
        })
        .collect()
}

#[test]
fn tf_converter_models_match_builtin_ref_bit_for_bit() {
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for (i, &(name, res)) in MODELS.iter().enumerate() {
        let bytes = load_model(name);
        let model = Model::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("{name}: kdruntime cannot read the model: {e}"));
        println!(
            "{name}: {} operators: {}",
            model.num_operators(),
            op_list(&model)
        );
        assert_eq!(model.num_inputs(), 1, "{name}: one image input");

        let mut samples: Vec<Vec<u8>> = PHOTOS
            .iter()
            .map(|p| load_photo(p, res).unwrap_or_else(|e| panic!("{name}: {e}")))
            .collect();
        let mut rng = Rng::new(0x7f_c0de + i as u64);
        samples.extend((0..RANDOM_INPUTS).map(|_| rng.bytes(res * res * 3)));
        let runs: Vec<[&Vec<u8>; 1]> = samples.iter().map(|s| [s]).collect();

        let want = reference::run_samples(&bytes, Backend::TfliteRef, &runs, RunOptions::default())
            .unwrap_or_else(|e| panic!("{name}: BUILTIN_REF failed: {e}"));
        assert_eq!(
            want.input_info[0].dtype, "uint8",
            "{name}: converter input type"
        );
        let got = run_kdruntime(name, &model, &samples);
        assert_eq!(want.runs.len(), samples.len(), "{name}: reference runs");

        let mut values = 0;
        let mut differ = 0;
        for (s, (g, w)) in got.iter().zip(&want.runs).enumerate() {
            assert_eq!(g.len(), w.len(), "{name}: output count");
            for (o, (go, wo)) in g.iter().zip(w).enumerate() {
                let d = go.iter().zip(wo).filter(|(a, b)| a != b).count();
                if go.len() != wo.len() || d > 0 {
                    failures.push(format!(
                        "{name} sample {s} output {o}: {d} of {} bytes differ (lengths {} / {})",
                        wo.len(),
                        go.len(),
                        wo.len()
                    ));
                }
                differ += d;
                values += wo.len() / want.output_info[o].elem_size().expect("dtype");
            }
        }
        let tflm = reference::run(&bytes, Backend::Tflm, &[&samples[0]])
            .unwrap_or_else(|e| panic!("{name}: TFLite Micro failed: {e}"));
        // TFLite Micro is not the oracle (its kernels differ from BUILTIN_REF in places, e.g. on
        // EfficientNetB0), so its disagreement is reported, not asserted.
        let tflm_differ: usize = tflm
            .outputs
            .iter()
            .zip(&want.runs[0])
            .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
            .sum();
        println!(
            "{name}: TFLite Micro differs from BUILTIN_REF in {tflm_differ} bytes of sample 0"
        );
        let tflm_arena = tflm.tflm_arena_bytes.expect("TFLM reports its arena");
        let kd_arena = model.arena_size().expect("planned above");
        println!(
            "{name}: {} samples ({} photos, {RANDOM_INPUTS} random), {values} values compared, \
             {differ} differ; arena kdruntime {kd_arena} B, TFLite Micro {tflm_arena} B",
            samples.len(),
            PHOTOS.len()
        );
        table.push((name, bytes.len(), values, differ, kd_arena, tflm_arena));
    }
    println!(
        "{:<22} {:>9} {:>7} {:>6} {:>12} {:>12}",
        "model", "bytes", "values", "differ", "kdruntime B", "TFLM B"
    );
    for (name, size, values, differ, kd, tflm) in &table {
        println!("{name:<22} {size:>9} {values:>7} {differ:>6} {kd:>12} {tflm:>12}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
