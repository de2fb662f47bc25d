//! The writer's models load and run in every real interpreter, carry the quantisation that was
//! written, and compute what an independent float calculation says they should.

use kdruntime::tflite::writer::*;
use kdtests::reference::{self, Backend, RunOptions, TempDir};
use kdtests::rng::Rng;

const H: usize = 8;
const W: usize = 8;
const CIN: usize = 3;
const COUT: usize = 4;
const K: usize = 3;
const CLASSES: usize = 10;
const SAMPLES: usize = 16;

const IN_SCALE: f32 = 0.01;
const IN_ZP: i64 = 128;
const CONV_SCALE: f32 = 0.03;
const CONV_ZP: i64 = -128; // ReLU output: the whole int8 range is >= 0
const MEAN_SCALE: f32 = 0.015;
const MEAN_ZP: i64 = -128; // a mean of ReLU outputs is >= 0 too
const OUT_SCALE: f32 = 0.1;
const OUT_ZP: i64 = 5;

struct Net {
    model: Vec<u8>,
    w_conv: Vec<i8>,
    s_conv: Vec<f32>,
    b_conv: Vec<i32>,
    w_fc: Vec<i8>,
    s_fc: f32,
    b_fc: Vec<i32>,
}

/// QUANTIZE(u8->i8) -> CONV_2D(3x3, SAME, ReLU, per-channel) -> MEAN(H, W) -> FULLY_CONNECTED.
fn build() -> Net {
    let mut r = Rng::new(42);
    let mut b = ModelBuilder::new();
    let x = b.add_tensor(TensorSpec::activation(
        "image",
        &[1, H as i32, W as i32, CIN as i32],
        DType::U8,
        Quant::per_tensor(IN_SCALE, IN_ZP),
    ));
    let xq = b.add_tensor(TensorSpec::activation(
        "image_i8",
        &[1, H as i32, W as i32, CIN as i32],
        DType::I8,
        Quant::per_tensor(IN_SCALE, 0),
    ));
    b.add_op(Op::Quantize, &[x], &[xq]);

    let s_conv: Vec<f32> = (0..COUT).map(|c| 0.002 * (1.0 + c as f32 * 0.5)).collect();
    let w_conv = r.i8s(COUT * K * K * CIN, -127, 127);
    let b_conv: Vec<i32> = (0..COUT).map(|_| r.range(-2000, 2000) as i32).collect();
    let wt = b.add_tensor(TensorSpec::const_i8(
        "conv/w",
        &[COUT as i32, K as i32, K as i32, CIN as i32],
        &w_conv,
        Quant::per_channel(s_conv.clone(), vec![0; COUT], 0),
    ));
    let bias_scales: Vec<f32> = s_conv.iter().map(|s| s * IN_SCALE).collect();
    let bt = b.add_tensor(TensorSpec::const_i32(
        "conv/b",
        &[COUT as i32],
        &b_conv,
        Some(Quant::per_channel(bias_scales, vec![0; COUT], 0)),
    ));
    let conv = b.add_tensor(TensorSpec::activation(
        "conv",
        &[1, H as i32, W as i32, COUT as i32],
        DType::I8,
        Quant::per_tensor(CONV_SCALE, CONV_ZP),
    ));
    let conv_op = Op::Conv2d {
        padding: Padding::Same,
        stride_w: 1,
        stride_h: 1,
        dilation_w: 1,
        dilation_h: 1,
        activation: Activation::Relu,
    };
    b.add_op(conv_op, &[xq, wt, bt], &[conv]);

    let axes = b.add_tensor(TensorSpec::const_i32("mean/axes", &[2], &[1, 2], None));
    let mean = b.add_tensor(TensorSpec::activation(
        "mean",
        &[1, COUT as i32],
        DType::I8,
        Quant::per_tensor(MEAN_SCALE, MEAN_ZP),
    ));
    b.add_op(Op::Mean { keep_dims: false }, &[conv, axes], &[mean]);

    let s_fc = 0.01;
    let w_fc = r.i8s(CLASSES * COUT, -127, 127);
    let b_fc: Vec<i32> = (0..CLASSES).map(|_| r.range(-3000, 3000) as i32).collect();
    let ft = b.add_tensor(TensorSpec::const_i8(
        "fc/w",
        &[CLASSES as i32, COUT as i32],
        &w_fc,
        Quant::per_tensor(s_fc, 0),
    ));
    let fb = b.add_tensor(TensorSpec::const_i32(
        "fc/b",
        &[CLASSES as i32],
        &b_fc,
        Some(Quant::per_tensor(s_fc * MEAN_SCALE, 0)),
    ));
    let y = b.add_tensor(TensorSpec::activation(
        "logits",
        &[1, CLASSES as i32],
        DType::I8,
        Quant::per_tensor(OUT_SCALE, OUT_ZP),
    ));
    b.add_op(
        Op::FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
        },
        &[mean, ft, fb],
        &[y],
    );
    b.set_inputs(&[x]);
    b.set_outputs(&[y]);
    Net {
        model: b.finish().expect("valid model"),
        w_conv,
        s_conv,
        b_conv,
        w_fc,
        s_fc,
        b_fc,
    }
}

/// The float network: dequantised input and weights, no intermediate rounding; only the final
/// logits are quantised (round half away from zero, clamped).
fn float_reference(n: &Net, image: &[u8]) -> Vec<i8> {
    let x = |h: i64, w: i64, c: usize| -> f64 {
        if h < 0 || w < 0 || h >= H as i64 || w >= W as i64 {
            return 0.0; // SAME padding pads with real zero
        }
        (image[(h as usize * W + w as usize) * CIN + c] as f64 - IN_ZP as f64) * IN_SCALE as f64
    };
    let mut mean = [0f64; COUT];
    for (o, m) in mean.iter_mut().enumerate() {
        for oh in 0..H as i64 {
            for ow in 0..W as i64 {
                // SAME with a 3x3 window and stride 1: one pixel of padding on each side.
                let mut acc = n.b_conv[o] as f64 * (n.s_conv[o] * IN_SCALE) as f64;
                for kh in 0..K {
                    for kw in 0..K {
                        for c in 0..CIN {
                            let wv = n.w_conv[((o * K + kh) * K + kw) * CIN + c] as f64
                                * n.s_conv[o] as f64;
                            acc += wv * x(oh + kh as i64 - 1, ow + kw as i64 - 1, c);
                        }
                    }
                }
                // The tolerance below assumes no int8 saturation inside the network.
                assert!(
                    acc < CONV_SCALE as f64 * 255.0,
                    "conv value {acc} would saturate; pick other scales"
                );
                *m += acc.max(0.0);
            }
        }
        *m /= (H * W) as f64;
        assert!(
            *m < MEAN_SCALE as f64 * 255.0,
            "mean value {m} would saturate; pick other scales"
        );
    }
    (0..CLASSES)
        .map(|k| {
            let mut acc = n.b_fc[k] as f64 * (n.s_fc * MEAN_SCALE) as f64;
            for (c, m) in mean.iter().enumerate() {
                acc += n.w_fc[k * COUT + c] as f64 * n.s_fc as f64 * m;
            }
            let q = (acc / OUT_SCALE as f64).round() + OUT_ZP as f64;
            q.clamp(-128.0, 127.0) as i8
        })
        .collect()
}

/// Worst-case distance (in output LSB) between the integer pipeline and the float one, from the
/// roundings the integer pipeline adds: each requantisation is within 1 LSB of its own float
/// value (0.5 for round-to-nearest plus up to 0.5 for the fixed-point multiplier and TFLite's
/// double rounding). Conv values are off by <= 1 conv LSB, so their mean is too; MEAN adds 1 of
/// its own LSB; FC multiplies that input error by sum|w| * s_fc; the final rounding adds 1.
fn tolerance_lsb(n: &Net) -> Vec<f64> {
    let mean_err = CONV_SCALE as f64 + MEAN_SCALE as f64;
    (0..CLASSES)
        .map(|k| {
            let l1: f64 = (0..COUT).map(|c| (n.w_fc[k * COUT + c] as f64).abs()).sum();
            1.0 + l1 * n.s_fc as f64 * mean_err / OUT_SCALE as f64
        })
        .collect()
}

#[test]
fn writer_model_matches_float_in_every_interpreter() {
    let net = build();
    let mut r = Rng::new(7);
    let images: Vec<Vec<u8>> = (0..SAMPLES).map(|_| r.bytes(H * W * CIN)).collect();
    let samples: Vec<[&[u8]; 1]> = images.iter().map(|i| [i.as_slice()]).collect();
    let expected: Vec<Vec<i8>> = images.iter().map(|i| float_reference(&net, i)).collect();
    let distinct: std::collections::BTreeSet<i8> = expected.iter().flatten().copied().collect();
    assert!(
        distinct.len() >= 15 && !distinct.contains(&-128) && !distinct.contains(&127),
        "logits too degenerate: {distinct:?}"
    );
    let tol = tolerance_lsb(&net);
    let max_tol = tol.iter().cloned().fold(0.0, f64::max);
    assert!(
        max_tol <= 4.0,
        "the tolerance bound {max_tol} LSB would make the comparison weak"
    );

    let mut per_backend = Vec::new();
    for backend in Backend::TFLITE {
        let res = reference::run_samples(
            &net.model,
            backend,
            &samples,
            RunOptions {
                repeat: 3,
                warmup: 1,
                min_time_ms: 0,
            },
        )
        .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        // Tensor types and quantisation as the interpreter reads them back.
        let i = &res.input_info[0];
        assert_eq!(
            (i.dtype.as_str(), i.shape.as_slice()),
            ("uint8", &[1, H as i64, W as i64, CIN as i64][..]),
            "{backend:?}"
        );
        assert_eq!(
            (i.scales.as_slice(), i.zero_points.as_slice()),
            (&[IN_SCALE as f64][..], &[IN_ZP][..]),
            "{backend:?}"
        );
        let o = &res.output_info[0];
        assert_eq!(
            (o.dtype.as_str(), o.shape.as_slice()),
            ("int8", &[1, CLASSES as i64][..]),
            "{backend:?}"
        );
        assert_eq!(
            (o.scales.as_slice(), o.zero_points.as_slice()),
            (&[OUT_SCALE as f64][..], &[OUT_ZP][..]),
            "{backend:?}"
        );
        assert_eq!(res.runs.len(), SAMPLES);

        let mut worst = 0.0f64;
        for (s, run) in res.runs.iter().enumerate() {
            for (k, (&got, &want)) in run[0].iter().zip(&expected[s]).enumerate() {
                let d = (got as i8 as f64 - want as f64).abs();
                assert!(
                    d <= tol[k].floor(),
                    "{backend:?} sample {s} class {k}: got {} want {want} (bound {:.2})",
                    got as i8,
                    tol[k]
                );
                worst = worst.max(d);
            }
        }
        println!(
            "{backend:?}: {} values within the float bound (worst {worst} LSB, bound {max_tol:.2}), median {:.1} us, tflm arena {:?}",
            SAMPLES * CLASSES,
            res.timing.median_us.unwrap_or(f64::NAN),
            res.tflm_arena_bytes
        );
        assert_eq!(res.timing.latencies_us.len(), 3 * SAMPLES);
        if backend == Backend::Xnnpack {
            assert_eq!(
                res.report["xnnpack_delegate_applied"].as_bool(),
                Some(true),
                "XNNPACK was not applied"
            );
        }
        if backend == Backend::Tflm {
            let arena = res.tflm_arena_bytes.expect("TFLM reports its arena");
            // At least the conv activations (8*8*4) and the int8 input copy (8*8*3) live in it.
            assert!(
                arena as usize >= H * W * (COUT + CIN),
                "TFLM arena {arena} B is implausibly small"
            );
        }
        per_backend.push((backend, res));
    }

    let reff = &per_backend[0].1;
    let tflm = &per_backend
        .iter()
        .find(|(b, _)| *b == Backend::Tflm)
        .expect("tflm ran")
        .1;
    let mut differ = 0;
    for (a, b) in reff.runs.iter().zip(&tflm.runs) {
        for (&x, &y) in a[0].iter().zip(&b[0]) {
            let d = (x as i8 as i32 - y as i8 as i32).abs();
            assert!(d <= 1, "BUILTIN_REF {} vs TFLM {}", x as i8, y as i8);
            differ += usize::from(d != 0);
        }
    }
    println!(
        "BUILTIN_REF vs TFLM: {} values, {differ} differ by 1 LSB",
        SAMPLES * CLASSES
    );
}

#[test]
fn harness_runs_onnx_in_onnx_runtime() {
    let dir = TempDir::new("onnx").expect("temp dir");
    let model = dir.path().join("fixture.onnx");
    reference::harness(&["onnx-fixture".as_ref(), "--out".as_ref(), model.as_os_str()])
        .expect("fixture written");
    // All 256 uint8 values, 8 per run.
    let all: Vec<u8> = (0..=255).collect();
    let input = dir.write("input.bin", &all).expect("input written");
    let res = reference::run_files(&model, Backend::Onnx, &input, &dir, RunOptions::default())
        .expect("ONNX Runtime ran");
    assert_eq!(res.runs.len(), 32);
    assert_eq!(res.input_info[0].dtype, "uint8");
    assert_eq!(res.output_info[0].dtype, "int8");
    let got: Vec<i8> = res
        .runs
        .iter()
        .flat_map(|r| r[0].iter().map(|&b| b as i8))
        .collect();
    // DequantizeLinear(0.5, 128) -> Relu -> QuantizeLinear(0.25, -3): 2 * max(x - 128, 0) - 3,
    // exact in float, so no rounding question arises.
    let want: Vec<i8> = all
        .iter()
        .map(|&x| (2 * (x as i32 - 128).max(0) - 3).clamp(-128, 127) as i8)
        .collect();
    assert_eq!(got, want);
    println!(
        "ONNX Runtime: {} values equal to the hand formula",
        got.len()
    );
    assert_eq!(
        res.report["resolver"]
            .as_str()
            .map(|s| s.contains("ORT_ENABLE_BASIC")),
        Some(true)
    );
}

#[test]
fn harness_reports_size_mismatch_and_missing_model() {
    let net = build();
    let err = reference::run(&net.model, Backend::TfliteRef, &[vec![0u8; 5]])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds 5 bytes, not a positive multiple of the 192 bytes"),
        "{err}"
    );
    let dir = TempDir::new("missing").expect("temp dir");
    let input = dir.write("in.bin", &[0]).expect("write");
    let err = reference::run_files(
        &dir.path().join("nope.tflite"),
        Backend::TfliteRef,
        &input,
        &dir,
        RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("model file not found"), "{err}");
}
