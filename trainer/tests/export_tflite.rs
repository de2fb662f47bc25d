//! The exported TFLite model against the real interpreters: kdruntime equals TFLite's
//! reference kernels (BUILTIN_REF) bit for bit, and the file loads and runs under the optimised
//! builtin kernels, XNNPACK and TFLite Micro (which may differ from the reference by 1 LSB).
//! Inputs: the real photos of data/raw/photos (each whole and as four quadrant crops),
//! letterboxed by kdruntime. The net: see export_net/mod.rs.

mod export_net;

use export_net::{kdruntime_outputs, mobilenet_like, photo_inputs};
use kdtests::reference::{self, Backend, RunOptions};
use kdtrainer::export::{check_graph, tflite};
use kdtrainer::quant::graph::IntOp;

const SIZE: usize = 50;

fn setup(classes: usize, seed: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let inputs: Vec<Vec<u8>> = photo_inputs(SIZE).into_iter().map(|(_, b)| b).collect();
    assert_eq!(inputs.len(), 35, "7 photos x 5 crops");
    let g = mobilenet_like(SIZE, classes, seed, &inputs);
    check_graph(&g).unwrap();
    let model = tflite::write(&g, "export test").unwrap();
    (model, inputs)
}

fn op_names(model: &[u8]) -> Vec<&'static str> {
    let m = kdruntime::Model::from_bytes(model).unwrap();
    m.operators().map(|o| o.unwrap().name()).collect()
}

#[test]
fn kdruntime_equals_builtin_ref_bit_for_bit() {
    for (classes, seed) in [(10, 1), (100, 2)] {
        let (model, inputs) = setup(classes, seed);
        // Explicit pads became PAD + VALID exactly where SAME differs (first conv on 50, the
        // (0,1,0,1) conv on 13); the strided depthwise conv on 25 is SAME itself.
        assert_eq!(
            op_names(&model),
            [
                "QUANTIZE",
                "PAD",
                "CONV_2D",
                "DEPTHWISE_CONV_2D",
                "CONV_2D",
                "ADD",
                "DEPTHWISE_CONV_2D",
                "CONV_2D",
                "PAD",
                "CONV_2D",
                "CONV_2D",
                "MEAN",
                "FULLY_CONNECTED"
            ]
        );
        let ours = kdruntime_outputs(&model, &inputs);
        let r = reference::run_samples(
            &model,
            Backend::TfliteRef,
            &inputs.iter().map(|x| [x]).collect::<Vec<_>>(),
            RunOptions::default(),
        )
        .unwrap();
        assert_eq!(r.output_info[0].dtype, "int8");
        assert_eq!(r.output_info[0].shape, [1, classes as i64]);
        assert_eq!(r.input_info[0].dtype, "uint8");
        assert_eq!(r.input_info[0].shape, [1, SIZE as i64, SIZE as i64, 3]);
        assert_eq!(r.runs.len(), inputs.len());
        for (i, (run, o)) in r.runs.iter().zip(&ours).enumerate() {
            assert_eq!(
                &run[0], o,
                "seed {seed}: input {i} differs from BUILTIN_REF"
            );
        }
        // The outputs carry information (calibrated ranges, not saturated): many distinct values.
        let mut distinct: Vec<u8> = ours.concat();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() >= 40,
            "only {} distinct output values",
            distinct.len()
        );
        eprintln!(
            "seed {seed}: {} inputs x {classes} outputs equal to BUILTIN_REF, {} distinct values",
            inputs.len(),
            distinct.len()
        );
    }
}

#[test]
fn loads_and_runs_in_every_tflite_backend() {
    let (model, inputs) = setup(10, 1);
    let ours = kdruntime_outputs(&model, &inputs).concat();
    let samples: Vec<[&Vec<u8>; 1]> = inputs.iter().map(|x| [x]).collect();
    for backend in [Backend::TfliteBuiltin, Backend::Xnnpack, Backend::Tflm] {
        let r = reference::run_samples(&model, backend, &samples, RunOptions::default())
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let theirs: Vec<u8> = r.runs.iter().flat_map(|run| run[0].clone()).collect();
        assert_eq!(theirs.len(), ours.len(), "{backend:?}");
        let diffs: Vec<i32> = theirs
            .iter()
            .zip(&ours)
            .map(|(&a, &b)| (a as i8 as i32 - b as i8 as i32).abs())
            .collect();
        let max = diffs.iter().copied().max().unwrap();
        let unequal = diffs.iter().filter(|&&d| d != 0).count();
        eprintln!(
            "{backend:?}: {unequal} of {} outputs differ from kdruntime, max {max} LSB",
            diffs.len()
        );
        assert!(max <= 1, "{backend:?}: an output differs by {max} LSB");
        if backend == Backend::Tflm {
            assert!(
                r.tflm_arena_bytes.unwrap_or(0) > 0,
                "TFLM reported no arena"
            );
        }
    }
}

#[test]
fn export_is_deterministic_and_bad_graphs_are_named() {
    let inputs: Vec<Vec<u8>> = photo_inputs(SIZE)
        .into_iter()
        .take(5)
        .map(|(_, b)| b)
        .collect();
    let g = mobilenet_like(SIZE, 10, 3, &inputs);
    assert_eq!(
        tflite::write(&g, "d").unwrap(),
        tflite::write(&g, "d").unwrap()
    );
    assert_eq!(
        kdtrainer::export::onnx::write(&g).unwrap(),
        kdtrainer::export::onnx::write(&g).unwrap()
    );

    let mut bad = g.clone();
    if let IntOp::Conv { weights, .. } = &mut bad.ops[1] {
        weights.values.pop();
    }
    let e = tflite::write(&bad, "d").unwrap_err().to_string();
    assert!(
        e.contains("operator 1 (Conv): 647 weight values for shape [8, 3, 3, 3] (648)")
            || e.contains("operator 1 (Conv)") && e.contains("weight values"),
        "{e}"
    );

    let mut bad = g.clone();
    if let IntOp::Conv { pads, .. } = &mut bad.ops[1] {
        *pads = [0, 0, 0, 0];
    }
    let e = tflite::write(&bad, "d").unwrap_err().to_string();
    assert!(
        e.contains("operator 1 (Conv)") && e.contains("do not give the output 't2' 25x25"),
        "{e}"
    );

    let mut bad = g.clone();
    bad.tensors[3].q.zero_point = 300;
    let e = kdtrainer::export::onnx::write(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tensor 3 't3': zero point 300 is outside -128..=127"),
        "{e}"
    );

    let mut bad = g.clone();
    if let IntOp::Add { b, .. } = &mut bad.ops[4] {
        *b = 7; // computed later
    }
    let e = tflite::write(&bad, "d").unwrap_err().to_string();
    assert!(
        e.contains("operator 4 (Add): reads 't7' before it is computed"),
        "{e}"
    );
}
