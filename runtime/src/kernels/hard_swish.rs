//! int8 HARD_SWISH (TFLite `activations.cc` HardSwishPrepare + `reference_ops::HardSwish`),
//! `x * relu6(x + 3) / 6` in 16-bit fixed point.
//!
//! Prepare (all in `float`, then `QuantizeMultiplier` on the widened value, then rounded to 16
//! bits by `DownScaleInt32ToInt16Multiplier`): `hires_input_scale = input_scale / 128`,
//! output multiplier `hires_input_scale / output_scale` (its exponent must be <= 0, as TFLite
//! requires), "reluish" multiplier `hires_input_scale / (3 / 32768)`. Eval follows the reference
//! step by step in int16 arithmetic, including gemmlowp's int16 rounding helpers and the
//! truncating `SaturatingDoublingHighMul` for the final product.

use super::activations::check_quant;
use crate::quant::QuantizedMultiplier;

/// Precomputed state of one int8 HARD_SWISH (TFLite's `HardSwishParams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardSwishParams {
    /// Input zero point.
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// Q15 output multiplier.
    pub output_multiplier: i16,
    /// Its exponent (<= 0).
    pub output_exponent: i32,
    /// Q15 "reluish" multiplier.
    pub reluish_multiplier: i16,
    /// Its exponent.
    pub reluish_exponent: i32,
}

/// TFLite's `DownScaleInt32ToInt16Multiplier`: round a Q31 multiplier to Q15.
fn downscale(m: i32) -> i16 {
    const ROUND: i32 = 1 << 15;
    if m >= i32::MAX - ROUND {
        i16::MAX
    } else {
        ((m + ROUND) >> 16) as i16
    }
}

/// Validates quantisation and precomputes the two 16-bit multipliers.
pub fn prepare(
    input_scale: f32,
    input_zero_point: i32,
    output_scale: f32,
    output_zero_point: i32,
) -> Result<HardSwishParams, &'static str> {
    check_quant(
        input_scale,
        input_zero_point,
        "HARD_SWISH: input scale must be positive and finite, zero point in [-128, 127]",
    )?;
    check_quant(
        output_scale,
        output_zero_point,
        "HARD_SWISH: output scale must be positive and finite, zero point in [-128, 127]",
    )?;
    let hires_input_scale = (1.0f32 / 128.0f32) * input_scale;
    let reluish_scale = 3.0f32 / 32768.0f32;
    let out = QuantizedMultiplier::from_f64((hires_input_scale / output_scale) as f64);
    if out.shift > 0 {
        return Err(
            "HARD_SWISH: output scale too small (input_scale / 128 / output_scale must be below 1)",
        );
    }
    let reluish = QuantizedMultiplier::from_f64((hires_input_scale / reluish_scale) as f64);
    Ok(HardSwishParams {
        input_zero_point,
        output_zero_point,
        output_multiplier: downscale(out.multiplier),
        output_exponent: out.shift,
        reluish_multiplier: downscale(reluish.multiplier),
        reluish_exponent: reluish.shift,
    })
}

/// gemmlowp `SaturatingRoundingDoublingHighMul` on int16.
fn srdhm16(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    let ab = a as i32 * b as i32;
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

/// TFLite's `SaturatingDoublingHighMul` on int16 (truncating, like ARM's SQDMULH).
fn sdhm16(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    ((a as i32 * b as i32) / (1 << 15)) as i16
}

/// gemmlowp `RoundingDivideByPOT` on int16, with its int16 mask arithmetic (for exponents of
/// 16 and above the mask truncates to -1, which gemmlowp's code then uses as is).
fn rdbpot16(x: i16, exponent: i32) -> i16 {
    let e = exponent.clamp(0, 31);
    let mask = ((1i64 << e) - 1) as i16;
    let remainder = x & mask;
    let threshold = ((mask >> 1) as i32 + i32::from(x < 0)) as i16;
    let shifted = ((x as i32) >> e) as i16;
    (shifted as i32 + i32::from(remainder > threshold)) as i16
}

/// TFLite's `SaturatingLeftShift` on int16.
fn sat_lshift16(x: i16, amount: i32) -> i16 {
    let r = (x as i64) << amount.clamp(0, 40);
    r.clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// One element of the reference algorithm.
fn hard_swish_one(p: &HardSwishParams, x: i8) -> i8 {
    let input_value = (x as i32 - p.input_zero_point) as i16;
    let hires = (input_value as i32 * (1 << 7)) as i16;
    let preshift_output = srdhm16(hires, p.output_multiplier);
    let mut reluish = hires;
    if p.reluish_exponent > 0 {
        reluish = sat_lshift16(reluish, p.reluish_exponent - 1);
    }
    reluish = srdhm16(reluish, p.reluish_multiplier);
    if p.reluish_exponent > 0 {
        reluish = sat_lshift16(reluish, 1);
    }
    if p.reluish_exponent < 0 {
        reluish = rdbpot16(reluish, -p.reluish_exponent);
    }
    // From [-1, 1] to [0, 1] in Q15.
    let reluish = ((reluish as i32 + (1 << 15)) >> 1) as i16;
    let preshift_out = sdhm16(reluish, preshift_output);
    let out = (rdbpot16(preshift_out, -p.output_exponent) as i32 + p.output_zero_point) as i16;
    (out as i32).clamp(i8::MIN as i32, i8::MAX as i32) as i8
}

/// Applies hard-swish elementwise. Does nothing if the lengths differ.
pub fn eval(params: &HardSwishParams, input: &[i8], output: &mut [i8]) {
    debug_assert_eq!(input.len(), output.len());
    if input.len() != output.len() {
        return;
    }
    for (o, &x) in output.iter_mut().zip(input) {
        *o = hard_swish_one(params, x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int16_helpers_by_hand() {
        // 0.5 * 0.5 in Q15 = 0.25.
        assert_eq!(srdhm16(1 << 14, 1 << 14), 1 << 13);
        assert_eq!(srdhm16(i16::MIN, i16::MIN), i16::MAX);
        // 3 * 2^14 / 2^15 = 1.5: rounding gives 2, truncation 1; negative -1.5 -> -1 both.
        assert_eq!(srdhm16(3, 1 << 14), 2);
        assert_eq!(sdhm16(3, 1 << 14), 1);
        assert_eq!(sdhm16(-3, 1 << 14), -1);
        assert_eq!(rdbpot16(5, 1), 3);
        assert_eq!(rdbpot16(-5, 1), -3);
        assert_eq!(sat_lshift16(20000, 1), i16::MAX);
        assert_eq!(downscale(1 << 30), 1 << 14);
        assert_eq!(downscale(i32::MAX), i16::MAX);
    }

    #[test]
    fn hand_values() {
        // Input and output scale 0.25, zero points 0: hard_swish(0) = 0; large x -> x;
        // x = -4 (real -1) -> -1 * 2 / 6 = -1/3 -> -1.33 on scale 0.25 -> -1.
        let p = prepare(0.25, 0, 0.25, 0).unwrap();
        let mut out = [0i8; 4];
        eval(&p, &[0, 40, -4, -40], &mut out);
        assert_eq!(out, [0, 40, -1, 0]);
    }

    #[test]
    fn rejects_too_small_output_scale() {
        assert!(prepare(1.0, 0, 1.0 / 256.0, 0).is_err());
        assert!(prepare(1.0, 0, 0.1, 0).is_ok());
    }
}
