//! `kdrun run|raw --backend ort` against kdruntime and against ONNX Runtime's own Python run.
//!
//! The model pair: a one-convolution int8 network (uint8 image -> QUANTIZE -> CONV_2D 3x3/2 SAME,
//! per-channel weights) written as TFLite by the kdruntime writer, and its ONNX twin written by
//! `tools/refharness.py onnx-conv` with the `onnx` package (QuantizeLinear, QLinearConv) from the
//! same numbers. ONNX Runtime requantises with a float multiplier and rounds half to even where
//! TFLite uses a fixed-point multiplier, so the two may differ by one step on rare values: the
//! bound checked here. The Rust and Python runs load the same library and must agree exactly.
#![cfg(feature = "ort")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kdruntime::tflite::writer::{Activation, DType, ModelBuilder, Op, Padding, Quant, TensorSpec};
use kdtests::reference::{self, Backend, RunOptions, TempDir};
use kdtests::rng::Rng;
use serde_json::{json, Value};

const H: usize = 24;
const C: usize = 3;
const O: usize = 8;
const K: usize = 3;
const STRIDE: usize = 2;
const OUT_HW: usize = H / STRIDE;
const IN_SCALE: f32 = 1.0 / 128.0;
const IN_ZP: i64 = 128;
const OUT_ZP: i64 = -5;

fn root() -> PathBuf {
    kdtests::workspace_root()
}

fn kdrun(args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kdrun"));
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        cmd.env(
            "ORT_DYLIB_PATH",
            root()
                .join(".cache/onnxruntime")
                .join(std::env::consts::ARCH)
                .join("libonnxruntime.so"),
        );
    }
    cmd.args(args).output().expect("kdrun runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "kdrun failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn photo(name: &str) -> PathBuf {
    root().join("data/raw/photos").join(name)
}

/// The TFLite model, the ONNX spec (same numbers) and the folder holding both.
struct Pair {
    dir: TempDir,
    tflite: PathBuf,
    onnx: PathBuf,
    spec: Value,
}

/// Builds the pair in a fresh folder; the output scale is calibrated on `chelsea.png` so the
/// outputs use most of the int8 range.
fn conv_pair() -> Pair {
    let mut r = Rng::new(0x6f72_7431);
    let weights = r.i8s(O * K * K * C, -127, 127);
    let w_scales: Vec<f32> = (0..O).map(|_| r.log_uniform(0.002, 0.02) as f32).collect();
    let bias: Vec<i32> = (0..O).map(|_| r.range_i32(-3000, 3000)).collect();

    // Real-valued convolution on the calibration photo fixes the output scale.
    let x = kdtests::nets::load_photo("chelsea.png", H).expect("photo");
    let pad = ((OUT_HW - 1) * STRIDE + K).saturating_sub(H) / 2;
    let mut max_abs = 0f64;
    for oy in 0..OUT_HW {
        for ox in 0..OUT_HW {
            for o in 0..O {
                let mut acc = f64::from(bias[o]);
                for ky in 0..K {
                    for kx in 0..K {
                        let (iy, ix) = (
                            (oy * STRIDE + ky) as isize - pad as isize,
                            (ox * STRIDE + kx) as isize - pad as isize,
                        );
                        if iy < 0 || ix < 0 || iy >= H as isize || ix >= H as isize {
                            continue;
                        }
                        for c in 0..C {
                            let xv = i32::from(x[(iy as usize * H + ix as usize) * C + c])
                                - IN_ZP as i32;
                            acc +=
                                f64::from(xv * i32::from(weights[((o * K + ky) * K + kx) * C + c]));
                        }
                    }
                }
                max_abs = max_abs.max((acc * f64::from(IN_SCALE) * f64::from(w_scales[o])).abs());
            }
        }
    }
    let out_scale = (max_abs / 110.0) as f32;

    let mut b = ModelBuilder::new();
    let input = b.add_tensor(TensorSpec::activation(
        "image",
        &[1, H as i32, H as i32, C as i32],
        DType::U8,
        Quant::per_tensor(IN_SCALE, IN_ZP),
    ));
    let q = b.add_tensor(TensorSpec::activation(
        "image_int8",
        &[1, H as i32, H as i32, C as i32],
        DType::I8,
        Quant::per_tensor(IN_SCALE, IN_ZP - 128),
    ));
    let w = b.add_tensor(TensorSpec::const_i8(
        "weights",
        &[O as i32, K as i32, K as i32, C as i32],
        &weights,
        Quant::per_channel(w_scales.clone(), vec![0; O], 0),
    ));
    let bias_t = b.add_tensor(TensorSpec::const_i32(
        "bias",
        &[O as i32],
        &bias,
        Some(Quant::per_channel(
            w_scales.iter().map(|s| s * IN_SCALE).collect(),
            vec![0; O],
            0,
        )),
    ));
    let out = b.add_tensor(TensorSpec::activation(
        "output",
        &[1, OUT_HW as i32, OUT_HW as i32, O as i32],
        DType::I8,
        Quant::per_tensor(out_scale, OUT_ZP),
    ));
    b.add_op(Op::Quantize, &[input], &[q]);
    b.add_op(
        Op::Conv2d {
            padding: Padding::Same,
            stride_w: STRIDE as i32,
            stride_h: STRIDE as i32,
            dilation_w: 1,
            dilation_h: 1,
            activation: Activation::None,
        },
        &[q, w, bias_t],
        &[out],
    );
    b.set_inputs(&[input]);
    b.set_outputs(&[out]);
    let model = b.finish().expect("model written");

    let spec = json!({
        "height": H, "width": H, "channels": C, "input_scale": IN_SCALE, "input_zero_point": IN_ZP,
        "kernel": K, "stride": STRIDE, "padding": "same", "out_channels": O,
        "weights": weights, "weight_scales": w_scales, "bias": bias,
        "output_scale": out_scale, "output_zero_point": OUT_ZP,
    });
    let dir = TempDir::new("ort-pair").expect("temp dir");
    let tflite = dir.write("conv.tflite", &model).expect("tflite written");
    let onnx = dir.path().join("conv.onnx");
    write_onnx(&dir, &spec, &onnx);
    Pair {
        dir,
        tflite,
        onnx,
        spec,
    }
}

fn write_onnx(dir: &TempDir, spec: &Value, out: &Path) {
    let spec_path = dir
        .write("spec.json", spec.to_string().as_bytes())
        .expect("spec written");
    reference::harness(&[
        "onnx-conv".as_ref(),
        "--spec".as_ref(),
        spec_path.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .expect("ONNX twin written by the harness");
}

/// Largest |a - b| over int8 bytes, and how many differ.
fn diff(a: &[u8], b: &[u8]) -> (i32, usize) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0, 0), |(m, n), (&x, &y)| {
        let d = (i32::from(x as i8) - i32::from(y as i8)).abs();
        (m.max(d), n + usize::from(d != 0))
    })
}

#[test]
fn raw_on_ort_equals_python_onnxruntime_and_kdruntime_within_one_step() {
    let pair = conv_pair();
    // Three real photos and two random images, back to back.
    let mut input = Vec::new();
    for p in ["chelsea.png", "coffee.png", "astronaut.png"] {
        input.extend(kdtests::nets::load_photo(p, H).expect("photo"));
    }
    input.extend(Rng::new(17).bytes(2 * H * H * C));
    let inp = pair.dir.write("input.u8", &input).expect("input");
    let (out_ort, out_kd) = (
        pair.dir.path().join("ort.i8"),
        pair.dir.path().join("kd.i8"),
    );
    ok(&kdrun(&[
        "raw".as_ref(),
        "--backend".as_ref(),
        "ort".as_ref(),
        pair.onnx.as_os_str(),
        inp.as_os_str(),
        out_ort.as_os_str(),
    ]));
    ok(&kdrun(&[
        "raw".as_ref(),
        pair.tflite.as_os_str(),
        inp.as_os_str(),
        out_kd.as_os_str(),
    ]));
    let ort = std::fs::read(&out_ort).unwrap();
    let kd = std::fs::read(&out_kd).unwrap();
    assert_eq!(ort.len(), 5 * OUT_HW * OUT_HW * O);

    let py = reference::run_files(
        &pair.onnx,
        Backend::Onnx,
        &inp,
        &pair.dir,
        RunOptions::default(),
    )
    .expect("ONNX Runtime (Python) ran");
    let py: Vec<u8> = py.runs.concat().concat();
    assert_eq!(ort, py, "Rust and Python ONNX Runtime runs differ");

    let (max, n) = diff(&ort, &kd);
    println!(
        "ONNX Runtime vs kdruntime: {n} of {} values differ, max {max} step",
        ort.len()
    );
    assert!(max <= 1, "ONNX Runtime and kdruntime differ by {max} steps");
    // The comparison means something only if the outputs spread over the range.
    let distinct: std::collections::BTreeSet<u8> = kd.iter().copied().collect();
    assert!(
        distinct.len() > 100,
        "only {} distinct outputs",
        distinct.len()
    );
}

fn run_json(args: &[&std::ffi::OsStr]) -> Value {
    serde_json::from_str(&ok(&kdrun(args))).expect("kdrun --json prints JSON")
}

fn raw_output(v: &Value) -> Vec<u8> {
    v["raw_output"]
        .as_array()
        .expect("raw_output")
        .iter()
        .map(|x| x.as_i64().expect("int") as i8 as u8)
        .collect()
}

#[test]
fn run_on_ort_letterboxes_and_postprocesses_like_kdruntime() {
    let pair = conv_pair();
    for p in ["china.jpg", "coffee.png"] {
        let img = photo(p);
        let kd = run_json(&[
            "run".as_ref(),
            pair.tflite.as_os_str(),
            img.as_os_str(),
            "--json".as_ref(),
        ]);
        // Quantisation from the .tflite beside the .onnx file.
        let ort = run_json(&[
            "run".as_ref(),
            "--backend".as_ref(),
            "ort".as_ref(),
            pair.onnx.as_os_str(),
            img.as_os_str(),
            "--json".as_ref(),
        ]);
        assert_eq!(ort["letterbox"], kd["letterbox"], "{p}");
        let (max, n) = diff(&raw_output(&ort), &raw_output(&kd));
        assert!(max <= 1, "{p}: {n} outputs differ, by up to {max}");
        if n == 0 {
            assert_eq!(ort["classes"], kd["classes"], "{p}");
        }
    }
}

#[test]
fn run_on_ort_reads_quantisation_from_metadata_and_says_when_there_is_none() {
    let pair = conv_pair();
    let img = photo("chelsea.png");
    let beside = run_json(&[
        "run".as_ref(),
        "--backend".as_ref(),
        "ort".as_ref(),
        pair.onnx.as_os_str(),
        img.as_os_str(),
        "--json".as_ref(),
    ]);

    // Alone in its folder, with the quantisation in the metadata.
    let alone = TempDir::new("ort-alone").unwrap();
    let mut spec = pair.spec.clone();
    spec["metadata"] = json!({
        "kdedge.output_scale": pair.spec["output_scale"].to_string(),
        "kdedge.output_zero_point": OUT_ZP.to_string(),
        "kdedge.output_softmax": "false",
    });
    let with_meta = alone.path().join("meta.onnx");
    write_onnx(&alone, &spec, &with_meta);
    let from_meta = run_json(&[
        "run".as_ref(),
        "--backend".as_ref(),
        "ort".as_ref(),
        with_meta.as_os_str(),
        img.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(from_meta, beside);

    // Neither metadata nor a .tflite beside it: a clear error (raw runs still work).
    let bare = alone.path().join("bare.onnx");
    std::fs::copy(&pair.onnx, &bare).unwrap();
    let out = kdrun(&[
        "run".as_ref(),
        "--backend".as_ref(),
        "ort".as_ref(),
        bare.as_os_str(),
        img.as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kdedge.output_scale") && err.contains("bare.tflite"),
        "{err}"
    );
}

#[test]
fn ort_errors_name_the_file_library_or_provider() {
    let pair = conv_pair();
    let img = photo("chelsea.png");
    let run = |extra: &[&std::ffi::OsStr], model: &Path| {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["run".as_ref(), "--backend".as_ref(), "ort".as_ref()];
        args.extend_from_slice(extra);
        args.push(model.as_os_str());
        args.push(img.as_os_str());
        let out = kdrun(&args);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(
        &[
            "--ort-lib".as_ref(),
            "/nonexistent/libonnxruntime.so".as_ref(),
        ],
        &pair.onnx,
    );
    assert!(
        err.contains("/nonexistent/libonnxruntime.so") && err.contains("ORT_DYLIB_PATH"),
        "{err}"
    );
    let err = run(&[], &pair.tflite);
    assert!(
        err.contains("conv.tflite") && err.contains("could not load"),
        "{err}"
    );
    // The x86_64 CPU wheel has no CUDA provider: asked for by name, that is an error.
    let err = run(&["--ort-ep".as_ref(), "cuda".as_ref()], &pair.onnx);
    assert!(err.contains("Cuda") || err.contains("CUDA"), "{err}");
    let err = run(&["--ort-threads".as_ref(), "0".as_ref()], &pair.onnx);
    assert!(err.contains("at least one thread"), "{err}");
}
