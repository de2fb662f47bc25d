//! Activation clamping shared by every kernel with a fused activation, and the standalone int8
//! RELU / RELU6 operators.
//!
//! TFLite facts matched here:
//! - `CalculateActivationRangeQuantized` turns a fused activation into `[act_min, act_max]` with
//!   `zero_point + (int32)roundf(f / scale)` computed in `float` and clamped to `[-128, 127]`.
//! - Standalone RELU / RELU6 (`ReluPrepare` + `QuantizedReluX`) requantise with
//!   `QuantizeMultiplier((double)(input_scale / output_scale))` (the division is in `float`),
//!   then `output_zp + MultiplyByQuantizedMultiplier(x - input_zp)` clamped to the same kind of
//!   bounds; RELU has no upper bound other than 127.

use super::float_math::{f32_to_i32_x86, roundf};
use crate::quant::QuantizedMultiplier;
use crate::tflite::schema::activation;

/// A fused activation as TFLite's `ActivationFunctionType` names it (the int8 kernels support
/// these; TANH and SIGN_BIT are not fused activations of any int8 reference kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedActivation {
    /// No clamp beyond the int8 range.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `clamp(x, -1, 1)`.
    ReluN1To1,
    /// `clamp(x, 0, 6)`.
    Relu6,
}

impl FusedActivation {
    /// Maps the schema's `ActivationFunctionType` byte.
    pub fn from_schema(code: i8) -> Result<Self, &'static str> {
        match code {
            activation::NONE => Ok(Self::None),
            activation::RELU => Ok(Self::Relu),
            activation::RELU_N1_TO_1 => Ok(Self::ReluN1To1),
            activation::RELU6 => Ok(Self::Relu6),
            _ => Err("unsupported fused activation function (int8 kernels take NONE, RELU, RELU_N1_TO_1, RELU6)"),
        }
    }
}

/// `zero_point + static_cast<int32_t>(TfLiteRound(f / scale))` as TFLite computes it (float
/// division, `roundf`, x86 conversion, wrapping add).
fn quantize_bound(f: f32, scale: f32, zero_point: i32) -> i32 {
    zero_point.wrapping_add(f32_to_i32_x86(roundf(f / scale)))
}

/// TFLite's `CalculateActivationRangeQuantized` for an int8 output: the clamp bounds
/// `(act_min, act_max)` that implement `act` on the output's quantisation.
pub fn activation_range_quantized(act: FusedActivation, scale: f32, zero_point: i32) -> (i32, i32) {
    let (qmin, qmax) = (i8::MIN as i32, i8::MAX as i32);
    match act {
        FusedActivation::None => (qmin, qmax),
        FusedActivation::Relu => (qmin.max(quantize_bound(0.0, scale, zero_point)), qmax),
        FusedActivation::Relu6 => (
            qmin.max(quantize_bound(0.0, scale, zero_point)),
            qmax.min(quantize_bound(6.0, scale, zero_point)),
        ),
        FusedActivation::ReluN1To1 => (
            qmin.max(quantize_bound(-1.0, scale, zero_point)),
            qmax.min(quantize_bound(1.0, scale, zero_point)),
        ),
    }
}

/// Checks a tensor's quantisation: a positive, finite scale and an int8 zero point.
pub fn check_quant(scale: f32, zero_point: i32, what: &'static str) -> Result<(), &'static str> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(what);
    }
    if !(i8::MIN as i32..=i8::MAX as i32).contains(&zero_point) {
        return Err(what);
    }
    Ok(())
}

/// Which standalone activation operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReluKind {
    /// RELU: `[0, inf)`.
    Relu,
    /// RELU_N1_TO_1: `[-1, 1]`.
    ReluN1To1,
    /// RELU6: `[0, 6]`.
    Relu6,
}

/// Precomputed state of a standalone int8 RELU / RELU_N1_TO_1 / RELU6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReluParams {
    /// Input zero point.
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// `input_scale / output_scale`.
    pub multiplier: QuantizedMultiplier,
    /// Lower clamp bound on the output.
    pub act_min: i32,
    /// Upper clamp bound on the output.
    pub act_max: i32,
}

/// Validates the quantisation and precomputes the requantisation and clamp bounds.
pub fn prepare_relu(
    kind: ReluKind,
    input_scale: f32,
    input_zero_point: i32,
    output_scale: f32,
    output_zero_point: i32,
) -> Result<ReluParams, &'static str> {
    check_quant(
        input_scale,
        input_zero_point,
        "RELU: input scale must be positive and finite, zero point in [-128, 127]",
    )?;
    check_quant(
        output_scale,
        output_zero_point,
        "RELU: output scale must be positive and finite, zero point in [-128, 127]",
    )?;
    // Float division first, widened afterwards: ReluPrepare divides the two float scales.
    let multiplier = QuantizedMultiplier::from_f64((input_scale / output_scale) as f64);
    let (lo, hi) = match kind {
        ReluKind::Relu => (0.0, None),
        ReluKind::ReluN1To1 => (-1.0, Some(1.0)),
        ReluKind::Relu6 => (0.0, Some(6.0)),
    };
    let act_min = (i8::MIN as i32).max(quantize_bound(lo, output_scale, output_zero_point));
    let act_max = match hi {
        None => i8::MAX as i32,
        Some(h) => (i8::MAX as i32).min(quantize_bound(h, output_scale, output_zero_point)),
    };
    Ok(ReluParams {
        input_zero_point,
        output_zero_point,
        multiplier,
        act_min,
        act_max,
    })
}

/// `output[i] = clamp(output_zp + M * (input[i] - input_zp))` over `min(len)` elements.
pub fn eval_relu(params: &ReluParams, input: &[i8], output: &mut [i8]) {
    debug_assert_eq!(input.len(), output.len());
    for (o, &x) in output.iter_mut().zip(input) {
        let v = params
            .output_zero_point
            .wrapping_add(params.multiplier.apply(x as i32 - params.input_zero_point));
        *o = v.max(params.act_min).min(params.act_max) as i8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_ranges_by_hand() {
        // scale 0.1, zp -10: 0.0 -> -10, 6.0 -> -10 + 60 = 50.
        assert_eq!(
            activation_range_quantized(FusedActivation::Relu6, 0.1, -10),
            (-10, 50)
        );
        assert_eq!(
            activation_range_quantized(FusedActivation::Relu, 0.1, -10),
            (-10, 127)
        );
        assert_eq!(
            activation_range_quantized(FusedActivation::None, 0.1, -10),
            (-128, 127)
        );
        // -1.0 / 0.1 = -10 -> -20; 1.0 -> 0.
        assert_eq!(
            activation_range_quantized(FusedActivation::ReluN1To1, 0.1, -10),
            (-20, 0)
        );
        // 6 / 0.01 = 600 saturates at 127.
        assert_eq!(
            activation_range_quantized(FusedActivation::Relu6, 0.01, 0),
            (0, 127)
        );
        // zero point -128 and RELU: the bound stays at -128.
        assert_eq!(
            activation_range_quantized(FusedActivation::Relu, 1.0, -128),
            (-128, 127)
        );
        // 6 / 0.48 = 12.5 rounds away from zero to 13.
        assert_eq!(
            activation_range_quantized(FusedActivation::Relu6, 0.48, 0),
            (0, 13)
        );
    }

    #[test]
    fn relu6_requantises_and_clamps() {
        // input scale 0.5 zp 0 -> output scale 0.25 zp -100: x -> -100 + 2x, clamp to [-100, -76].
        let p = prepare_relu(ReluKind::Relu6, 0.5, 0, 0.25, -100).unwrap();
        assert_eq!((p.act_min, p.act_max), (-100, -76));
        let mut out = [0i8; 5];
        eval_relu(&p, &[-5, 0, 3, 12, 13], &mut out);
        assert_eq!(out, [-100, -100, -94, -76, -76]);
    }

    #[test]
    fn relu_rejects_bad_quantisation() {
        assert!(prepare_relu(ReluKind::Relu, 0.0, 0, 1.0, 0).is_err());
        assert!(prepare_relu(ReluKind::Relu, 1.0, 0, f32::NAN, 0).is_err());
        assert!(prepare_relu(ReluKind::Relu, 1.0, 200, 1.0, 0).is_err());
        assert!(FusedActivation::from_schema(activation::TANH).is_err());
    }
}
