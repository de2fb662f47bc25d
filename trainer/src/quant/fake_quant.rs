//! Quantisation arithmetic shared by the fake-quantised forward pass ([`super::qnet`]) and the
//! lowering to the integer graph ([`super::lower`]): both call these functions on the same
//! tensors, so the integers written into [`IntGraph`](super::graph::IntGraph) are the ones the
//! fake-quantised network computed with.
//!
//! Rounding is half away from zero (`sign(x) * floor(|x| + 0.5)`), TFLite's rule for its
//! requantisation (`RoundingDivideByPOT`) rather than libtorch's half-to-even `round`.
//!
//! Gradients are straight-through estimators: the quantised value's gradient is the identity
//! where the unclamped integer lies inside the representable range and zero outside (Bengio et
//! al. 2013; PyTorch's `fake_quantize_per_tensor_affine`). Scales and zero points receive no
//! gradient (they come from observers or from the weights' range).

use tch::{Kind, Tensor};

use super::graph::QParams;

/// Smallest int8 value of an activation.
pub const I8_MIN: i64 = -128;
/// Largest int8 value.
pub const I8_MAX: i64 = 127;
/// Weights use the symmetric range `[-127, 127]` (TFLite's int8 weight rule; -128 unused).
pub const W_MAX: i64 = 127;
/// Largest magnitude of an int32 bias.
pub const BIAS_MAX: f64 = i32::MAX as f64;

/// Rounds half away from zero, element-wise.
pub fn round_half_away(x: &Tensor) -> Tensor {
    x.sign() * (x.abs() + 0.5).floor()
}

/// Per-tensor asymmetric int8 parameters for the real range `[min, max]`, first widened to
/// include 0 (so that real 0, the padding value, is exact): `scale = (max - min) / 255`,
/// `zero_point = round(-128 - min / scale)` clamped to `[-128, 127]`. A range of width 0 (a
/// tensor that was always 0) gets scale `1/255`, i.e. the range `[0, 1]`, since a scale must be
/// positive.
pub fn activation_qparams(min: f32, max: f32) -> QParams {
    let lo = f64::from(min.min(0.0));
    let hi = f64::from(max.max(0.0));
    let scale = if hi > lo {
        ((hi - lo) / 255.0) as f32
    } else {
        (1.0 / 255.0) as f32
    };
    let z = (-128.0 - lo / f64::from(scale)).round();
    QParams {
        scale,
        zero_point: z.clamp(I8_MIN as f64, I8_MAX as f64) as i32,
    }
}

/// The integers `clamp(round(x / scale) + zero_point, lo, hi)` (as float values) and the STE
/// mask (1 where the unclamped integer is in `[lo, hi]`). `scale` and `zero_point` broadcast
/// against `x`.
fn to_grid(x: &Tensor, scale: &Tensor, zero_point: &Tensor, lo: i64, hi: i64) -> (Tensor, Tensor) {
    let t = round_half_away(&(x.detach() / scale)) + zero_point;
    let mask = t.ge(lo).logical_and(&t.le(hi)).to_kind(x.kind());
    (t.clamp(lo, hi), mask)
}

/// `value` in the forward pass, `x`'s gradient times `mask` in the backward pass.
fn straight_through(x: &Tensor, value: &Tensor, mask: &Tensor) -> Tensor {
    let pass = x * mask;
    &pass + (value - &pass).detach()
}

/// Per-tensor fake quantisation onto the int8 grid of `q` with an STE gradient: returns the
/// dequantised values `scale * (clamp(round(x / scale) + zp, -128, 127) - zp)`.
pub fn fake_quant(x: &Tensor, q: QParams) -> Tensor {
    let (s, z) = scalars(x, q);
    let (grid, mask) = to_grid(x, &s, &z, I8_MIN, I8_MAX);
    straight_through(x, &((grid - &z) * &s), &mask)
}

/// The int8 grid values `clamp(round(x / scale) + zp, -128, 127)` of `x` (no gradient), as a
/// float tensor of integers.
pub fn quantize(x: &Tensor, q: QParams) -> Tensor {
    let (s, z) = scalars(x, q);
    to_grid(x, &s, &z, I8_MIN, I8_MAX).0
}

fn scalars(x: &Tensor, q: QParams) -> (Tensor, Tensor) {
    let (kind, dev) = (x.kind(), x.device());
    (
        Tensor::from(f64::from(q.scale))
            .to_kind(kind)
            .to_device(dev),
        Tensor::from(f64::from(q.zero_point))
            .to_kind(kind)
            .to_device(dev),
    )
}

/// Per-output-channel symmetric weight scales `max |w[o]| / 127` of a weight tensor whose first
/// dimension is the output channel (`[O, ...]`), as a float `[O]` tensor without gradient. An
/// all-zero channel gets scale `1/127` (any positive scale represents it exactly).
pub fn weight_scales(w: &Tensor) -> Tensor {
    let o = w.size()[0];
    let amax = w
        .detach()
        .abs()
        .reshape([o, -1])
        .amax([1i64].as_slice(), false);
    let s = &amax / W_MAX as f64;
    s.where_self(&amax.gt(0.0), &s.ones_like().divide_scalar(W_MAX as f64))
        .to_kind(Kind::Float)
}

/// Shape `[O, 1, 1, ...]` of a per-channel vector for broadcasting against `w`.
fn per_channel(v: &Tensor, w: &Tensor) -> Tensor {
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1i64, w.dim() - 1));
    v.reshape(shape)
}

/// The int8 weights `clamp(round(w / scales[o]), -127, 127)` as a float tensor of integers.
pub fn quantize_weights(w: &Tensor, scales: &Tensor) -> Tensor {
    let s = per_channel(scales, w);
    to_grid(w, &s, &s.zeros_like(), -W_MAX, W_MAX).0
}

/// Per-channel symmetric fake quantisation of `w` with `scales` ([`weight_scales`]), STE
/// gradient, as a tensor of `kind`. The integers are those of [`quantize_weights`] on `w` as
/// given (the lowering's); the dequantised values `q * scale` are formed in float64 and then
/// converted to `kind` (Float for training, Double for the exact evaluation).
pub fn fake_quant_weights(w: &Tensor, scales: &Tensor, kind: Kind) -> Tensor {
    let s = per_channel(scales, w);
    let (grid, mask) = to_grid(w, &s, &s.zeros_like(), -W_MAX, W_MAX);
    let value = (grid.to_kind(Kind::Double) * s.to_kind(Kind::Double)).to_kind(kind);
    straight_through(&w.to_kind(kind), &value, &mask.to_kind(kind))
}

/// The int32 bias `round(b / (input_scale * weight_scales[o]))` as a float64 tensor of integers
/// (clamped to the int32 range; [`super::lower`] reports a clamped value as an error).
pub fn quantize_bias(b: &Tensor, input_scale: f32, weight_scales: &Tensor) -> Tensor {
    let bias_scale = weight_scales.to_kind(Kind::Double) * f64::from(input_scale);
    round_half_away(&(b.detach().to_kind(Kind::Double) / bias_scale)).clamp(-BIAS_MAX, BIAS_MAX)
}

/// The bias as the integer graph adds it, `quantize_bias(b) * input_scale * weight_scales`
/// (formed in float64, returned as `kind`), with an identity (STE) gradient.
pub fn fake_quant_bias(b: &Tensor, input_scale: f32, weight_scales: &Tensor, kind: Kind) -> Tensor {
    let q = quantize_bias(b, input_scale, weight_scales);
    let value = (q * weight_scales.to_kind(Kind::Double) * f64::from(input_scale)).to_kind(kind);
    let b = b.to_kind(kind);
    &b + (value - &b).detach()
}
