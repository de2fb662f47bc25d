//! c-examples/classify.c, built with the system C compiler against the installed C library
//! (libkdruntime.a and, through pkg-config, libkdruntime.so), classifies real photos with a
//! MobileNetV2 model; its raw int8 outputs must equal `kdrun run --json`'s and those of
//! kdruntime's Rust API on the same pixels, and its top-k the same classes and values as kdrun.

use std::path::{Path, PathBuf};
use std::process::Command;

use kdrt::letterbox::{letterbox, Image, OutputFormat, PixelFormat};
use kdrt::tflite::writer::{Activation, DType, ModelBuilder, Op, Padding, Quant, TensorSpec};
use kdrt::{Interpreter, Model};
use kdtests::nets::{mobilenet_v2_with, Options, INPUT_SCALE, INPUT_ZERO_POINT};

fn root() -> PathBuf {
    kdtests::workspace_root()
}

/// target/<profile> of this test binary (target/debug/deps/c_example-* -> target/debug).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds kdrun and the C library (same profile and target dir as this test) and installs the
/// library with scripts/capi.sh into `prefix`. Returns the kdrun binary.
fn build(prefix: &Path) -> PathBuf {
    let dir = profile_dir();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(p) => p.to_string(),
        None => panic!("unexpected test binary location {}", dir.display()),
    };
    let target = dir.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo)
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "-j", "2", "-p", "kdrun", "--profile", &profile]));
    run(Command::new("bash")
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO", &cargo)
        .arg("scripts/capi.sh")
        .arg(prefix)
        .arg(&profile));
    dir.join("kdrun")
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = run(Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .args(args)
        .arg("kdruntime"));
    out.split_whitespace().map(str::to_string).collect()
}

/// Compiles classify.c twice: against libkdruntime.a and against libkdruntime.so.
fn compile(prefix: &Path, out_dir: &Path) -> [PathBuf; 2] {
    let src = root().join("c-examples/classify.c");
    let flags = [
        "-std=c99",
        "-O1",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
    ];
    let cflags = pkg_config(prefix, &["--cflags"]);
    let static_exe = out_dir.join("classify-static");
    let mut private = pkg_config(prefix, &["--libs-only-l", "--static"]);
    private.retain(|l| l != "-lkdruntime");
    run(Command::new("cc")
        .args(flags)
        .args(&cflags)
        .arg("-o")
        .arg(&static_exe)
        .arg(&src)
        .arg(prefix.join("lib/libkdruntime.a"))
        .args(&private));
    let shared_exe = out_dir.join("classify-shared");
    let libdir = pkg_config(prefix, &["--variable=libdir"]);
    run(Command::new("cc")
        .args(flags)
        .args(&cflags)
        .arg("-o")
        .arg(&shared_exe)
        .arg(&src)
        .args(pkg_config(prefix, &["--libs"]))
        .arg(format!("-Wl,-rpath,{}", libdir[0])));
    [static_exe, shared_exe]
}

/// Writes a photo as binary PPM (colour) or PGM (grey) and returns (pixels, h, w, format).
fn write_pnm(photo: &str, grey: bool, path: &Path) -> (Vec<u8>, usize, usize, PixelFormat) {
    let img = image::open(root().join("data/raw/photos").join(photo)).unwrap();
    let (px, w, h, magic, fmt) = if grey {
        let g = img.to_luma8();
        let (w, h) = g.dimensions();
        (g.into_raw(), w, h, "P5", PixelFormat::Gray)
    } else {
        let c = img.to_rgb8();
        let (w, h) = c.dimensions();
        (c.into_raw(), w, h, "P6", PixelFormat::Rgb)
    };
    let mut bytes = format!("{magic}\n# {photo}\n{w} {h}\n255\n").into_bytes();
    bytes.extend_from_slice(&px);
    std::fs::write(path, bytes).unwrap();
    (px, h as usize, w as usize, fmt)
}

/// kdruntime's Rust API on the same pixels: the raw int8 output.
fn rust_api(model: &[u8], px: &[u8], h: usize, w: usize, fmt: PixelFormat) -> Vec<i8> {
    let m = Model::from_bytes(model).unwrap();
    let mut arena = vec![0u8; m.arena_size().unwrap()];
    let mut it = Interpreter::new(&m, &mut arena).unwrap();
    let dims = it.input_info(0).unwrap().shape;
    let (rh, rw) = (dims.dim(1), dims.dim(2));
    let src = Image::packed(px, h, w, fmt).unwrap();
    letterbox(&src, rh, rw, OutputFormat::Rgb, it.input_mut(0).unwrap()).unwrap();
    it.invoke().unwrap();
    it.output(0).unwrap().iter().map(|&b| b as i8).collect()
}

/// (raw outputs, [(class, label, q, value)]) from classify's stdout.
type Parsed = (Vec<i8>, Vec<(usize, String, i8, f64)>);

fn parse_classify(out: &str) -> Parsed {
    let raw_line = out
        .lines()
        .find_map(|l| l.strip_prefix("raw:"))
        .unwrap_or_else(|| panic!("no raw line in:\n{out}"));
    let raw = raw_line
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let mut top = Vec::new();
    for l in out.lines().filter(|l| l.contains(". class ")) {
        // "1. class 3 label q -12 value 0.453125"
        let f: Vec<&str> = l.split_whitespace().collect();
        top.push((
            f[2].parse().unwrap(),
            f[3].to_string(),
            f[5].parse().unwrap(),
            f[7].parse().unwrap(),
        ));
    }
    (raw, top)
}

/// A small classifier of the operators the interpreter runs today: uint8 [1,48,48,3] ->
/// QUANTIZE -> CONV_2D 3x3/2 ReLU (8 channels, per-channel weights) -> MEAN(H,W) ->
/// FULLY_CONNECTED -> 10 int8 logits. Weights from a fixed LCG.
fn small_classifier() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % 255) as i32 - 127
    };
    let mut b = ModelBuilder::new();
    let input = b.add_tensor(TensorSpec::activation(
        "image",
        &[1, 48, 48, 3],
        DType::U8,
        Quant::per_tensor(INPUT_SCALE, i64::from(INPUT_ZERO_POINT)),
    ));
    let x = b.add_tensor(TensorSpec::activation(
        "image_int8",
        &[1, 48, 48, 3],
        DType::I8,
        Quant::per_tensor(INPUT_SCALE, 0),
    ));
    b.add_op(Op::Quantize, &[input], &[x]);
    let w_scales: Vec<f32> = (0..8).map(|c| 0.008 + 0.001 * c as f32).collect();
    let w: Vec<i8> = (0..8 * 27).map(|_| next() as i8).collect();
    let filter = b.add_tensor(TensorSpec::const_i8(
        "conv/w",
        &[8, 3, 3, 3],
        &w,
        Quant::per_channel(w_scales.clone(), vec![0; 8], 0),
    ));
    let bias_q: Vec<i32> = (0..8).map(|_| next() * 40).collect();
    let bias = b.add_tensor(TensorSpec::const_i32(
        "conv/b",
        &[8],
        &bias_q,
        Some(Quant::per_channel(
            w_scales.iter().map(|s| s * INPUT_SCALE).collect(),
            vec![0; 8],
            0,
        )),
    ));
    let conv = b.add_tensor(TensorSpec::activation(
        "conv",
        &[1, 24, 24, 8],
        DType::I8,
        Quant::per_tensor(0.05, -128),
    ));
    let conv_op = Op::Conv2d {
        padding: Padding::Same,
        stride_w: 2,
        stride_h: 2,
        dilation_w: 1,
        dilation_h: 1,
        activation: Activation::Relu,
    };
    b.add_op(conv_op, &[x, filter, bias], &[conv]);
    let axes = b.add_tensor(TensorSpec::const_i32("axes", &[2], &[1, 2], None));
    let pooled = b.add_tensor(TensorSpec::activation(
        "pooled",
        &[1, 8],
        DType::I8,
        Quant::per_tensor(0.02, -128),
    ));
    b.add_op(Op::Mean { keep_dims: false }, &[conv, axes], &[pooled]);
    let fc_w: Vec<i8> = (0..80).map(|_| next() as i8).collect();
    let fc_filter = b.add_tensor(TensorSpec::const_i8(
        "fc/w",
        &[10, 8],
        &fc_w,
        Quant::per_tensor(0.01, 0),
    ));
    let logits = b.add_tensor(TensorSpec::activation(
        "logits",
        &[1, 10],
        DType::I8,
        Quant::per_tensor(0.05, 0),
    ));
    let fc = Op::FullyConnected {
        activation: Activation::None,
        keep_num_dims: false,
    };
    b.add_op(fc, &[pooled, fc_filter], &[logits]);
    b.set_inputs(&[input]);
    b.set_outputs(&[logits]);
    b.finish().expect("the small classifier is a valid model")
}

#[test]
fn classify_c_equals_kdrun_and_rust_api() {
    let tmp = std::env::temp_dir().join(format!("kdruntime-c-example-{}", std::process::id()));
    let prefix = tmp.join("prefix");
    std::fs::create_dir_all(&prefix).unwrap();
    let kdrun = build(&prefix);
    let exes = compile(&prefix, &tmp);

    let opts = Options {
        softmax: true,
        ..Options::default()
    };
    let net = mobilenet_v2_with(0.35, 96, 10, 21, &opts).unwrap();
    let models = vec![
        ("small", small_classifier()),
        ("mobilenet_v2_0.35_96_softmax", net.model),
    ];
    let labels: Vec<String> = (0..10).map(|i| format!("label{i}")).collect();
    let labels_path = tmp.join("labels.txt");
    std::fs::write(&labels_path, labels.join("\n") + "\n").unwrap();

    let mut checked = 0;
    for (name, model) in &models {
        let model_path = tmp.join(format!("{name}.tflite"));
        std::fs::write(&model_path, model).unwrap();
        for (photo, grey) in [("china.jpg", false), ("rocket.jpg", true)] {
            let image_path = tmp.join(if grey { "photo.pgm" } else { "photo.ppm" });
            let (px, h, w, fmt) = write_pnm(photo, grey, &image_path);
            let want = rust_api(model, &px, h, w, fmt);
            let out_q = {
                let m = Model::from_bytes(model).unwrap();
                let t = m.tensor(m.output_tensor_index(0).unwrap()).unwrap();
                (t.scale(), t.zero_point() as i32)
            };
            // A classifier whose outputs do not depend on the image would prove little.
            assert!(
                want.iter().any(|&v| v != want[0]),
                "{name} on {photo}: constant output {want:?}"
            );

            let kd: serde_json::Value = serde_json::from_str(&run(Command::new(&kdrun)
                .arg("run")
                .arg(&model_path)
                .arg(&image_path)
                .arg("--labels")
                .arg(&labels_path)
                .args(["--top-k", "10", "--json"])))
            .unwrap();
            let kd_raw: Vec<i8> = kd["raw_output"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as i8)
                .collect();
            assert_eq!(kd_raw, want, "{photo}: kdrun vs Rust API");

            for exe in &exes {
                let out = run(Command::new(exe)
                    .arg(&model_path)
                    .arg(&image_path)
                    .arg(&labels_path)
                    .arg("10"));
                let (raw, top) = parse_classify(&out);
                assert_eq!(raw, want, "{photo}: {} vs Rust API", exe.display());
                let kd_classes = kd["classes"].as_array().unwrap();
                assert_eq!(top.len(), kd_classes.len());
                for ((class, label, q, value), k) in top.iter().zip(kd_classes) {
                    assert_eq!(
                        *class as u64,
                        k["index"].as_u64().unwrap(),
                        "{photo}: rank order"
                    );
                    assert_eq!(label, k["label"].as_str().unwrap());
                    assert_eq!(*q, want[*class]);
                    // kdrun reports probabilities: the dequantised output of a SOFTMAX model,
                    // else a softmax of it; classify prints the dequantised output.
                    let deq = f64::from(out_q.0) * f64::from(i32::from(*q) - out_q.1);
                    assert!((value - deq).abs() < 1e-6, "{photo}: {value} vs {deq}");
                    if name.ends_with("softmax") {
                        let p = k["probability"].as_f64().unwrap();
                        assert!((value - p).abs() < 1e-6, "{photo}: {value} vs kdrun {p}");
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4);
    let _ = std::fs::remove_dir_all(&tmp);
}
