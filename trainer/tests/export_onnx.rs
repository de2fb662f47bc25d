//! The exported ONNX model: onnx.checker accepts it, it uses the QOperator form, and ONNX
//! Runtime (CPU, 1 thread) reproduces kdruntime's int8 outputs within 1 LSB.
//!
//! ORT requantises with a float32 multiplier and one rounding (half to even); TFLite's
//! reference kernels (which kdruntime equals bit for bit, see export_tflite.rs) use a Q31
//! fixed-point multiplier with two roundings (`SaturatingRoundingDoublingHighMul`, then
//! `RoundingDivideByPOT`), which differs from one exact rounding on about `2^-(shift + 1)` of
//! the values, `shift` being the final right shift. Measured on these nets, operator by
//! operator with identical int8 inputs: QUANTIZE, QLinearAdd and QGemm agree exactly; the
//! convolutions differ on 0.03 % to 0.6 % of values and the pooling (TFLite MEAN folds 1/n into
//! its multiplier, small shift) on about 3 % of its few values, 0.136 % over all of them, always
//! by 1 LSB. Through a whole network those differences propagate, so end to end the final
//! outputs stayed within 1 LSB but only about 80 % are exactly equal. Both figures are printed;
//! the 99.9 % exact equality is NOT reached by this rounding difference (see the report).
//! Inputs: the real photos of data/raw/photos, whole and as quadrant crops, letterboxed by
//! kdruntime; the same uint8 NHWC bytes go to every interpreter.
//!
//! The model's metadata (read back by the `onnx` package) carries the graph's input and output
//! quantisation, and kdrun's ONNX Runtime backend classifies photos with the exported model
//! alone in its folder, reading that metadata instead of the `.tflite` sibling.

mod export_net;

use std::collections::BTreeMap;
use std::path::PathBuf;

use export_net::{kdruntime_outputs, mobilenet_like, per_op, photo_inputs, repo};
use kdrun::config::InferenceConfig;
use kdrun::image_input::{self, InputSpec, InputType};
use kdrun::ort_backend::{OrtModel, OrtOptions};
use kdrun::report::{self, OutputQuant};
use kdtests::reference::{self, Backend, RunOptions, TempDir};
use kdtrainer::export::{onnx, tflite};
use kdtrainer::quant::graph::IntGraph;

const SIZE: usize = 50;

/// Runs onnx.checker (full check) and prints the sorted op types, domains and opsets, then the
/// metadata_props as JSON.
fn check(model: &[u8]) -> String {
    let (python, _) = reference::harness_paths().unwrap();
    let dir = TempDir::new("onnx-check").unwrap();
    let path = dir.write("model.onnx", model).unwrap();
    let script = "import sys, onnx\n\
        m = onnx.load(sys.argv[1])\n\
        onnx.checker.check_model(m, full_check=True)\n\
        print(' '.join(sorted({(n.domain + ':' if n.domain else '') + n.op_type for n in m.graph.node})))\n\
        print(m.ir_version, sorted((o.domain, o.version) for o in m.opset_import))\n\
        import json\n\
        print(json.dumps({p.key: p.value for p in m.metadata_props}))\n";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnx.checker: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn onnx_passes_the_checker_and_matches_kdruntime_within_one_lsb() {
    let inputs: Vec<Vec<u8>> = photo_inputs(SIZE).into_iter().map(|(_, b)| b).collect();
    let samples: Vec<[&Vec<u8>; 1]> = inputs.iter().map(|x| [x]).collect();
    let (mut total, mut equal) = (0usize, 0usize);
    for (classes, seed) in [(10, 1), (100, 2), (100, 4)] {
        let g = mobilenet_like(SIZE, classes, seed, &inputs);
        let model = onnx::write(&g).unwrap();
        let report = check(&model);
        assert_eq!(
            report.lines().next().unwrap(),
            "Clip DequantizeLinear QLinearConv QuantizeLinear Reshape Transpose \
             com.microsoft:QGemm com.microsoft:QLinearAdd com.microsoft:QLinearGlobalAveragePool",
            "{report}"
        );
        assert!(
            report.contains("8 [('', 13), ('com.microsoft', 1)]"),
            "{report}"
        );
        check_metadata(&g, report.lines().nth(2).unwrap());

        let ours = kdruntime_outputs(&tflite::write(&g, "t").unwrap(), &inputs).concat();
        let r =
            reference::run_samples(&model, Backend::Onnx, &samples, RunOptions::default()).unwrap();
        assert_eq!(r.input_info[0].dtype, "uint8");
        assert_eq!(r.input_info[0].shape, [1, SIZE as i64, SIZE as i64, 3]);
        assert_eq!(r.output_info[0].dtype, "int8");
        assert_eq!(r.output_info[0].shape, [1, classes as i64]);
        let theirs: Vec<u8> = r.runs.iter().flat_map(|run| run[0].clone()).collect();
        assert_eq!(theirs.len(), ours.len());
        let mut same = 0;
        for (i, (&a, &b)) in theirs.iter().zip(&ours).enumerate() {
            let d = (a as i8 as i32 - b as i8 as i32).abs();
            assert!(
                d <= 1,
                "seed {seed}: output {i} differs by {d} LSB (ORT {a}, kdruntime {b})"
            );
            same += usize::from(d == 0);
        }
        eprintln!(
            "seed {seed}: ORT equals kdruntime on {same} of {} outputs",
            ours.len()
        );
        total += ours.len();
        equal += same;
    }
    eprintln!(
        "end to end: ORT equals kdruntime on {equal} of {total} final outputs ({:.2} %), all within 1 LSB",
        100.0 * equal as f64 / total as f64
    );
}

/// The metadata as the `onnx` package read it (`json`) holds the graph's input and output
/// quantisation; each scale parses (float64, as kdrun reads it) back to the graph's float32.
fn check_metadata(g: &IntGraph, json: &str) {
    let meta: BTreeMap<String, String> = serde_json::from_str(json).unwrap();
    let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "kdedge.input_scale",
            "kdedge.input_zero_point",
            "kdedge.output_scale",
            "kdedge.output_softmax",
            "kdedge.output_zero_point",
        ]
    );
    for (side, t) in [("input", g.input), ("output", g.output)] {
        let q = g.tensors[t].q;
        let scale: f64 = meta[&format!("kdedge.{side}_scale")].parse().unwrap();
        assert_eq!((scale as f32).to_bits(), q.scale.to_bits(), "{side} scale");
        assert_eq!(
            meta[&format!("kdedge.{side}_zero_point")],
            q.zero_point.to_string()
        );
    }
    // The graph ends in logits; kdrun applies the task's softmax or sigmoid itself.
    assert_eq!(meta["kdedge.output_softmax"], "false");
}

/// The ONNX Runtime library the tests load (as kdrun finds it: `ORT_DYLIB_PATH`, else the one
/// `make setup` installs).
fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo()
                .join(".cache/onnxruntime")
                .join(std::env::consts::ARCH)
                .join("libonnxruntime.so")
        })
}

/// `kdrun run --backend ort` on the exported model with no `.tflite` beside it: the input spec
/// and output quantisation it reads from the metadata are the TFLite model's (as kdruntime
/// reports them), so its classification of real photos (kdrun's letterbox, dequantisation,
/// softmax, top-3) is what the TFLite model's quantisation gives for ORT's raw output, and that
/// raw output is within 1 LSB of kdruntime's.
#[test]
fn kdrun_ort_backend_runs_the_exported_model_alone_from_its_metadata() {
    let inputs: Vec<Vec<u8>> = photo_inputs(SIZE).into_iter().map(|(_, b)| b).collect();
    let g = mobilenet_like(SIZE, 10, 1, &inputs);
    let dir = TempDir::new("onnx-alone").unwrap();
    let onnx_path = dir.write("model.onnx", &onnx::write(&g).unwrap()).unwrap();
    assert!(!onnx_path.with_extension("tflite").exists());
    let opts = OrtOptions {
        library: Some(ort_library()),
        ..OrtOptions::default()
    };
    let mut ort = OrtModel::load(&onnx_path, &opts).unwrap();

    let tfl = tflite::write(&g, "t").unwrap();
    let m = kdruntime::Model::from_bytes(&tfl).unwrap();
    let mut arena = vec![0u8; m.arena_size().unwrap()];
    let mut interp = kdruntime::Interpreter::new(&m, &mut arena).unwrap();
    let quant = ort.output_quant().unwrap();
    let tflite_quant = OutputQuant::of_interpreter(&interp).unwrap();
    assert_eq!(quant, tflite_quant);
    let spec = ort.input_spec().unwrap();
    assert_eq!(spec, InputSpec::of_interpreter(&interp).unwrap());
    assert_eq!(spec.dtype, InputType::UInt8);

    let cfg = InferenceConfig::default();
    let photos = repo().join("data/raw/photos");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&photos)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "only {} photos", names.len());
    let (mut equal, mut total) = (0, 0);
    for image in &names {
        let prepared = image_input::prepare(image, &spec, &cfg).unwrap();
        let raw: Vec<i8> = ort.run(&[&prepared.bytes]).unwrap()[0]
            .iter()
            .map(|&b| b as i8)
            .collect();
        let theirs = report::classify_raw(raw.clone(), &quant, &cfg, None, 3).unwrap();
        let expected = report::classify_raw(raw.clone(), &tflite_quant, &cfg, None, 3).unwrap();
        assert_eq!(theirs.to_json(), expected.to_json());

        image_input::fill(&mut interp, image, &cfg).unwrap();
        interp.invoke().unwrap();
        let kd: Vec<i8> = interp.output(0).unwrap().iter().map(|&b| b as i8).collect();
        assert_eq!(kd.len(), raw.len());
        for (a, b) in raw.iter().zip(&kd) {
            let d = (i32::from(*a) - i32::from(*b)).abs();
            assert!(
                d <= 1,
                "{}: ORT {raw:?} vs kdruntime {kd:?}",
                image.display()
            );
            equal += usize::from(d == 0);
        }
        total += kd.len();
    }
    eprintln!("kdrun ORT backend vs kdruntime on the photos: {equal} of {total} outputs equal");
}

#[test]
fn per_operator_ort_differs_from_the_reference_by_at_most_one_lsb() {
    let inputs: Vec<Vec<u8>> = photo_inputs(SIZE).into_iter().map(|(_, b)| b).collect();
    let (mut differ, mut total) = (0, 0);
    for (classes, seed) in [(10, 1), (100, 2), (100, 4)] {
        let g = mobilenet_like(SIZE, classes, seed, &inputs);
        for (i, (t, [d, n, max])) in per_op(&g, &inputs).into_iter().enumerate() {
            eprintln!("seed {seed} -> {t}: {d} of {n} differ, max {max} LSB");
            assert!(max <= 1, "seed {seed}: '{t}' differs by {max} LSB");
            if i == 0 {
                // QUANTIZE (uint8 - 128) is exact in both; it would only dilute the figure.
                assert_eq!(d, 0, "QUANTIZE differs");
                continue;
            }
            differ += d;
            total += n;
        }
    }
    eprintln!(
        "per operator: {differ} of {total} values differ by 1 LSB; {:.3} % equal",
        100.0 * (1.0 - differ as f64 / total as f64)
    );
}
