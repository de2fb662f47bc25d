//! TFLite's fixed-point requantisation arithmetic, exactly as its reference kernels compute it
//! (gemmlowp's `SaturatingRoundingDoublingHighMul` and `RoundingDivideByPOT`, and TFLite's
//! `QuantizeMultiplier`, double-rounding variant). Every integer kernel requantises through here.

/// `(a * b * 2) >> 32` with round-half-away-from-zero, saturating the single overflow case
/// `i32::MIN * i32::MIN`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == b && a == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Integer division truncates toward zero, as in C++.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent` rounded half away from zero (`exponent` in 0..=31).
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    debug_assert!((0..=31).contains(&exponent));
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// `x * multiplier * 2^shift` where `multiplier` is a Q31 fixed-point value in [0.5, 1):
/// TFLite's `MultiplyByQuantizedMultiplier` (a left shift first, then the high multiply, then a
/// rounding right shift: two roundings).
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let (left_shift, right_shift) = split_shift(shift);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x.wrapping_mul(1i32 << left_shift), multiplier),
        right_shift,
    )
}

/// `MultiplyByQuantizedMultiplier`'s shift as the left shift applied before the high multiply
/// and the rounding right shift after it, each clamped to 0..=31 (so no value can make either
/// shift panic; TFLite's C++ is undefined behaviour outside that range).
#[inline]
pub fn split_shift(shift: i32) -> (i32, i32) {
    (shift.clamp(0, 31), shift.saturating_neg().clamp(0, 31))
}

/// Largest left shift a convolution's per-channel multiplier may have (`real < 2^30`): larger
/// ones overflow TFLite's `x * (1 << shift)` in C++ (undefined behaviour), so models with them
/// are rejected.
pub const MAX_LEFT_SHIFT: i32 = 30;

/// A real multiplier as TFLite stores it: `real ~= multiplier * 2^(shift - 31)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuantizedMultiplier {
    /// Q31 mantissa in [2^30, 2^31), or 0 for a zero multiplier.
    pub multiplier: i32,
    /// Power-of-two exponent; positive means a left shift.
    pub shift: i32,
}

impl QuantizedMultiplier {
    /// TFLite's `QuantizeMultiplier(double)`: split into a Q31 mantissa (rounded half away from
    /// zero) and an exponent, with the same edge handling (round-up to 2^31, tiny values to zero).
    pub fn from_f64(real: f64) -> Self {
        if real == 0.0 || !real.is_finite() {
            return Self::default();
        }
        let (q, mut shift) = frexp(real);
        let mut q_fixed = round_half_away(q * (1u64 << 31) as f64) as i64;
        debug_assert!(q_fixed <= 1i64 << 31);
        if q_fixed == 1i64 << 31 {
            q_fixed /= 2;
            shift += 1;
        }
        if shift < -31 {
            shift = 0;
            q_fixed = 0;
        }
        Self {
            multiplier: q_fixed as i32,
            shift,
        }
    }

    /// Applies the multiplier to an accumulator.
    #[inline]
    pub fn apply(self, x: i32) -> i32 {
        multiply_by_quantized_multiplier(x, self.multiplier, self.shift)
    }
}

/// `std::frexp` for finite non-zero values: `x = m * 2^e` with `|m|` in [0.5, 1).
pub fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    if exp_bits == 0 {
        // Subnormal: scale into the normal range first.
        let (m, e) = frexp(x * (1u64 << 54) as f64);
        return (m, e - 54);
    }
    let e = exp_bits - 1022;
    let m_bits = (bits & !(0x7ffu64 << 52)) | (1022u64 << 52);
    (f64::from_bits(m_bits), e)
}

/// `std::round` (half away from zero) without libm, for values that fit in i64.
#[inline]
pub fn round_half_away(x: f64) -> f64 {
    let t = x as i64 as f64; // truncation toward zero
    let frac = x - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// True for a usable quantisation scale: finite and strictly positive (NaN is rejected).
#[inline]
pub fn is_positive_scale(scale: f32) -> bool {
    scale.is_finite() && scale > 0.0
}

/// TFLite's `MultiplyByQuantizedMultiplier` as built with `TFLITE_SINGLE_ROUNDING`: one 64-bit
/// product and a single round-half-up shift (`shift` in -31..=30).
#[inline]
pub fn multiply_by_quantized_multiplier_single_rounding(
    x: i32,
    multiplier: i32,
    shift: i32,
) -> i32 {
    let total_shift = (31 - shift).clamp(1, 62);
    let round = 1i64 << (total_shift - 1);
    let result = (x as i64 * multiplier as i64 + round) >> total_shift;
    result.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// TFLite's `CalculateActivationRangeQuantized` for a fused activation (schema enum value):
/// the clamp bounds in the output's quantised domain `[qmin, qmax]`. `None` for activations
/// that have no quantised range (TANH, SIGN_BIT, unknown values).
pub fn activation_range_quantized(
    activation: i8,
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
) -> Option<(i32, i32)> {
    use crate::tflite::schema::activation as a;
    // TFLite quantises the bound as zero_point + (int)round(f / scale), in float.
    let q = |f: f32| -> i32 {
        let v = round_half_away((f / scale) as f64);
        let v = if v.is_finite() {
            v.clamp(i32::MIN as f64, i32::MAX as f64)
        } else {
            0.0
        };
        zero_point.saturating_add(v as i32)
    };
    match activation {
        a::NONE => Some((qmin, qmax)),
        a::RELU => Some((qmin.max(q(0.0)), qmax)),
        a::RELU6 => Some((qmin.max(q(0.0)), qmax.min(q(6.0)))),
        a::RELU_N1_TO_1 => Some((qmin.max(q(-1.0)), qmax.min(q(1.0)))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_mul_matches_hand_values() {
        // 2^30 * 2^30 * 2 / 2^32 = 2^29
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        // 3 * 2^30 * 2 / 2^32 = 1.5 -> 2; the negative nudge is 1 - 2^30, one short of a half,
        // so -1.5 -> -1 (gemmlowp's rule, which TFLite inherits).
        assert_eq!(saturating_rounding_doubling_high_mul(3, 1 << 30), 2);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 30), -1);
        assert_eq!(saturating_rounding_doubling_high_mul(-5, 1 << 30), -2); // -2.5 -> -2
    }

    #[test]
    fn divide_by_pot_rounds_half_away() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3); // 2.5 -> 3
        assert_eq!(rounding_divide_by_pot(-5, 1), -3); // -2.5 -> -3
        assert_eq!(rounding_divide_by_pot(7, 2), 2); // 1.75 -> 2
        assert_eq!(rounding_divide_by_pot(-6, 2), -2); // -1.5 -> -2
        assert_eq!(rounding_divide_by_pot(123, 0), 123);
    }

    #[test]
    fn quantize_multiplier_hand_values() {
        // 0.5 = 2^30 * 2^(0 - 31)
        assert_eq!(
            QuantizedMultiplier::from_f64(0.5),
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 0
            }
        );
        // 0.25: frexp gives (0.5, -1)
        assert_eq!(
            QuantizedMultiplier::from_f64(0.25),
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: -1
            }
        );
        // 3.0 = 0.75 * 2^2
        assert_eq!(
            QuantizedMultiplier::from_f64(3.0),
            QuantizedMultiplier {
                multiplier: 3 << 29,
                shift: 2
            }
        );
        assert_eq!(
            QuantizedMultiplier::from_f64(1e-20),
            QuantizedMultiplier::default()
        );
        // 0.999999999999 rounds its mantissa up to 2^31 and renormalises.
        assert_eq!(
            QuantizedMultiplier::from_f64(1.0 - 1e-12),
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 1
            }
        );
        // 100 * 0.25 = 25
        // Out-of-range shifts (only reachable from a kernel that failed to reject them) do not
        // panic: clamped to 31 either way.
        assert_eq!(multiply_by_quantized_multiplier(1000, 1 << 30, -200), 0);
        let _ = multiply_by_quantized_multiplier(1000, 1 << 30, 200);
        assert_eq!(QuantizedMultiplier::from_f64(0.25).apply(100), 25);
        // 10 * 0.25 = 2.5 -> 3
        assert_eq!(QuantizedMultiplier::from_f64(0.25).apply(10), 3);
    }

    #[test]
    fn frexp_matches_definition() {
        for &x in &[1.0, 0.75, 3.0, 1e-3, 123456.789, 5e-310] {
            let (m, e) = frexp(x);
            assert!((0.5..1.0).contains(&m), "{x}: {m}");
            // Scale in two steps so subnormal inputs do not underflow the check.
            assert_eq!(m * 2f64.powi(e + 60) * 2f64.powi(-60), x);
        }
    }

    #[test]
    fn single_rounding_hand_values() {
        // 10 * 0.25 = 2.5 -> 3 (half up); -10 * 0.25 = -2.5 -> -2 (half up, unlike double rounding)
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(10, 1 << 30, -1),
            3
        );
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(-10, 1 << 30, -1),
            -2
        );
        assert_eq!(multiply_by_quantized_multiplier(-10, 1 << 30, -1), -3);
        // 100 * 3.0 = 300
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(100, 3 << 29, 2),
            300
        );
    }

    #[test]
    fn activation_ranges_by_hand() {
        use crate::tflite::schema::activation as a;
        assert_eq!(
            activation_range_quantized(a::NONE, 0.1, 5, -128, 127),
            Some((-128, 127))
        );
        assert_eq!(
            activation_range_quantized(a::RELU, 0.1, 5, -128, 127),
            Some((5, 127))
        );
        // 6 / 0.1 = 60 -> 65
        assert_eq!(
            activation_range_quantized(a::RELU6, 0.1, 5, -128, 127),
            Some((5, 65))
        );
        // 6 / 0.01 = 600 -> clamped to 127
        assert_eq!(
            activation_range_quantized(a::RELU6, 0.01, -128, -128, 127),
            Some((-128, 127))
        );
        assert_eq!(activation_range_quantized(a::TANH, 0.1, 0, -128, 127), None);
    }
}
