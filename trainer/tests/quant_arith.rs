//! Quantisation arithmetic by hand: weight and bias quantisation, activation parameters, fake
//! quantisation and its straight-through gradient, observers, BatchNorm and input folding.

use kdtrainer::pipeline::Normalization;
use kdtrainer::quant::fake_quant::{
    activation_qparams, fake_quant, fake_quant_weights, quantize_bias, quantize_weights,
    round_half_away, weight_scales,
};
use kdtrainer::quant::fold::{fold_batch_norm, InputQuant};
use kdtrainer::quant::graph::QParams;
use kdtrainer::quant::observer::{Observer, Update};
use tch::{nn, Device, Kind, Tensor};

fn v(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "element {i}: {x} vs {y} (tol {tol})");
    }
}

#[test]
fn rounding_is_half_away_from_zero() {
    let x = Tensor::from_slice(&[0.5f32, -0.5, 1.5, 2.5, -2.5, 0.49, -0.51]);
    assert_eq!(
        v(&round_half_away(&x)),
        [1.0, -1.0, 2.0, 3.0, -3.0, 0.0, -1.0]
    );
}

#[test]
fn per_channel_weights_by_hand() {
    // Channel 0: max |w| 1.27 -> scale 0.01; channel 1 all zero -> scale 1/127;
    // channel 2: max 2.54 -> scale 0.02.
    let w = Tensor::from_slice(&[0.5f32, -1.27, 0.3, 0.0, 0.0, 0.0, 2.54, 1.0, -0.066])
        .reshape([3, 3, 1, 1]);
    let s = weight_scales(&w);
    close(&v(&s), &[0.01, 1.0 / 127.0, 0.02], 1e-7);
    let q = quantize_weights(&w, &s);
    // 0.5/0.01 = 50, -127, 30 | 0, 0, 0 | 127, 1.0/0.02 = 50, -0.066/0.02 = -3.3 -> -3.
    assert_eq!(
        v(&q),
        [50.0, -127.0, 30.0, 0.0, 0.0, 0.0, 127.0, 50.0, -3.0]
    );
    let fq = fake_quant_weights(&w, &s, Kind::Float);
    close(
        &v(&fq),
        &[0.5, -1.27, 0.3, 0.0, 0.0, 0.0, 2.54, 1.0, -0.06],
        1e-6,
    );
}

#[test]
fn bias_is_quantised_with_input_times_weight_scale() {
    let b = Tensor::from_slice(&[0.1f32, -0.25, 0.0123]);
    let sw = Tensor::from_slice(&[0.01f32, 0.1, 0.001]);
    // 0.1 / (0.5 * 0.01) = 20; -0.25 / 0.05 = -5; 0.0123 / 0.0005 = 24.6 -> 25.
    assert_eq!(v(&quantize_bias(&b, 0.5, &sw)), [20.0, -5.0, 25.0]);
}

#[test]
fn activation_parameters_by_hand() {
    // [-1, 3]: scale 4/255, zero point round(-128 + 1 / (4/255)) = round(-64.25) = -64.
    let q = activation_qparams(-1.0, 3.0);
    assert_eq!(q.zero_point, -64);
    assert!((q.scale - 4.0 / 255.0).abs() < 1e-8);
    // Ranges are widened to include 0.
    let q = activation_qparams(0.5, 2.0);
    assert_eq!((q.zero_point, q.scale), (-128, (2.0f64 / 255.0) as f32));
    let q = activation_qparams(-3.0, -1.0);
    assert_eq!((q.zero_point, q.scale), (127, (3.0f64 / 255.0) as f32));
    // A constant-zero tensor still gets a positive scale.
    let q = activation_qparams(0.0, 0.0);
    assert_eq!((q.zero_point, q.scale), (-128, (1.0f64 / 255.0) as f32));
}

#[test]
fn fake_quant_values_and_straight_through_gradient() {
    let q = QParams {
        scale: (4.0f64 / 255.0) as f32,
        zero_point: -64,
    };
    let s = f64::from(q.scale);
    let x = Tensor::from_slice(&[-2.0f32, -1.0, 0.1, 2.9, 3.05, 10.0]).set_requires_grad(true);
    let y = fake_quant(&x, q);
    // -2/s = -127.5 -> -128 - 64 = -192: clamped to -128 (real -64 s), outside: gradient 0.
    // -1/s = -63.75 -> -64 - 64 = -128: inside, real -64 s.
    // 0.1/s = 6.375 -> 6: real 6 s.  2.9/s = 184.9 -> 185 (q 121): real 185 s.
    // 3.05/s = 194.4 -> q 130: clamped to 127 (real 191 s), gradient 0.  10: clamped, 0.
    close(
        &v(&y),
        &[
            -64.0 * s,
            -64.0 * s,
            6.0 * s,
            185.0 * s,
            191.0 * s,
            191.0 * s,
        ],
        1e-6,
    );
    y.sum(Kind::Float).backward();
    assert_eq!(v(&x.grad()), [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
}

#[test]
fn weight_fake_quant_gradient_is_the_identity() {
    let w = Tensor::from_slice(&[0.3f32, -0.7, 0.2, 0.9])
        .reshape([2, 2])
        .set_requires_grad(true);
    let s = weight_scales(&w);
    (fake_quant_weights(&w, &s, Kind::Float)
        * Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]))
    .sum(Kind::Float)
    .backward();
    assert_eq!(v(&w.grad()), [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn observer_rules_by_hand() {
    let vs = nn::VarStore::new(Device::Cpu);
    let o = Observer::new(&(vs.root() / "t"), "t");
    assert!(!o.is_observed());
    assert!(o
        .checked_qparams()
        .unwrap_err()
        .to_string()
        .contains("activation t"));
    let b1 = Tensor::from_slice(&[-1.0f32, 0.5, 2.0]);
    let b2 = Tensor::from_slice(&[0.0f32, 4.0]);
    // EMA: the first batch sets the range, then min += 0.1 (0 - -1) = -0.9, max += 0.1 (4 - 2).
    o.update(&b1, Update::Ema { momentum: 0.1 });
    assert_eq!(o.range(), (-1.0, 2.0));
    o.update(&b2, Update::Ema { momentum: 0.1 });
    let (lo, hi) = o.range();
    assert!(
        (lo + 0.9).abs() < 1e-6 && (hi - 2.2).abs() < 1e-6,
        "{lo} {hi}"
    );
    o.update(&Tensor::from_slice(&[-50.0f32]), Update::Frozen);
    assert_eq!(o.range(), (lo, hi));
    // Min/max: the plain extremes.
    o.reset();
    o.update(&b1, Update::MinMax);
    o.update(&b2, Update::MinMax);
    assert_eq!(o.range(), (-1.0, 4.0));
    assert_eq!(o.qparams(), activation_qparams(-1.0, 4.0));
    // The buffers are var-store variables (saved with checkpoints), not trainable.
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(names.contains(&"t.obs.min".to_string()) && names.contains(&"t.obs.max".to_string()));
    assert!(vs.trainable_variables().is_empty());
}

#[test]
fn folded_batch_norm_equals_conv_then_batch_norm() {
    tch::manual_seed(1);
    let x = Tensor::randn([2, 4, 6, 6], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([5, 4, 3, 3], (Kind::Float, Device::Cpu));
    let gamma = Tensor::from_slice(&[0.5f32, 1.5, -0.7, 2.0, 1.0]);
    let beta = Tensor::from_slice(&[0.1f32, -0.2, 0.3, 0.0, 1.0]);
    let mean = Tensor::from_slice(&[0.2f32, -1.0, 0.0, 3.0, 0.5]);
    let var = Tensor::from_slice(&[1.0f32, 0.25, 4.0, 0.01, 2.0]);
    let conv = |w: &Tensor, b: Option<&Tensor>| x.conv2d(w, b, [1, 1], [1, 1], [1, 1], 1);
    let reference = conv(&w, None).batch_norm(
        Some(&gamma),
        Some(&beta),
        Some(&mean),
        Some(&var),
        false,
        0.1,
        1e-5,
        false,
    );
    let (wf, bf) = fold_batch_norm(&w, None, &gamma, &beta, &mean, &var, 1e-5);
    // By hand for channel 3: factor 2 / sqrt(0.01 + 1e-5), bias 0 - 3 * factor.
    let f3 = 2.0 / (0.01f64 + 1e-5).sqrt();
    close(&v(&bf.get(3)), &[-3.0 * f3], 1e-3);
    close(&v(&wf.get(3)), &v(&(w.get(3) * f3)), 1e-4);
    // Outputs reach ~100 in magnitude; float32 rounding of two routes stays far below 1e-3.
    close(&v(&conv(&wf, Some(&bf))), &v(&reference), 1e-3);
}

#[test]
fn student_input_is_exactly_the_uint8_bytes() {
    let iq = InputQuant::for_normalization(&Normalization::STUDENT);
    assert_eq!(
        iq.q,
        QParams {
            scale: 1.0 / 128.0,
            zero_point: 127
        }
    );
    assert_eq!(
        iq.int8(),
        QParams {
            scale: 1.0 / 128.0,
            zero_point: -1
        }
    );
    assert!(iq.is_identity());
    // Every byte p: (p - 127) / 128 (the network's input) == scale * (p - zero_point).
    for p in 0..=255u8 {
        let x = (f32::from(p) - 127.0) / 128.0;
        assert_eq!(x, iq.q.scale * (i32::from(p) - iq.q.zero_point) as f32);
    }
}

#[test]
fn per_channel_normalisation_is_absorbed_by_the_first_convolution() {
    let n = Normalization::IMAGENET;
    let iq = InputQuant::for_normalization(&n);
    assert!(!iq.is_identity());
    // zero point: round((123.675 + 116.28 + 103.53) / 3) = round(114.495) = 114.
    assert_eq!(iq.q.zero_point, 114);
    tch::manual_seed(2);
    let bytes = Tensor::randint(256, [1, 3, 7, 7], (Kind::Float, Device::Cpu));
    let mean = Tensor::from_slice(&n.mean).reshape([1, 3, 1, 1]);
    let std = Tensor::from_slice(&n.std).reshape([1, 3, 1, 1]);
    let x = (&bytes - mean) / std;
    let r = (&bytes - f64::from(iq.q.zero_point)) * f64::from(iq.q.scale);
    let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
    let cs = Tensor::from_slice(&iq.channel_scale).reshape([1, 3, 1, 1]);
    let sh = Tensor::from_slice(&iq.channel_shift).reshape([1, 3, 1, 1]);
    let folded_b = (&w * sh).sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float);
    // Valid convolution (no padding): the fold is exact there (see InputQuant's docs).
    let a = x.conv2d(&w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
    let b = r.conv2d(&(&w * cs), Some(&folded_b), [1, 1], [0, 0], [1, 1], 1);
    close(&v(&a), &v(&b), 1e-4);
}
