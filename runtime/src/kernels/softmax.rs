//! int8 SOFTMAX over the last dimension, as TFLite's BUILTIN_REF resolver runs it
//! (`activations.cc` SoftmaxPrepare for `kReference` + `reference_ops::Softmax`, gemmlowp
//! fixed point).
//!
//! Facts measured against ai-edge-litert 2.3.0: the optimised resolvers use a `float` exp table
//! (`PopulateSoftmaxLookupTable`) and differ from BUILTIN_REF by one step on rare values (e.g.
//! input scale 0.01901309, beta 1.1434307, row [53, -114, -34, -34, -21]: optimised 40, reference
//! 39 for the first element). The reference path is:
//! - Prepare: `PreprocessSoftmaxScaling(beta, input_scale, 5)`: the real multiplier
//!   `min(beta * input_scale * 2^26, 2^31 - 1)` (in `double`) through
//!   `QuantizeMultiplierGreaterThanOne`; `diff_min = -floor(31 * 2^26 / 2^left_shift)`.
//! - Eval per row: `diff = x - max`; taps with `diff < diff_min` give -128 and are left out of
//!   the sum. Otherwise `exp_on_negative_values` of the rescaled difference (Q5.26 -> Q0.31),
//!   summed in Q12.19, reciprocal by `GetReciprocal` (Newton-Raphson), and
//!   `out = RoundingDivideByPOT(recip * exp, num_bits_over_unit + 23) - 128`, clamped.

use crate::quant::{
    rounding_divide_by_pot, saturating_rounding_doubling_high_mul as srdhm, QuantizedMultiplier,
};

/// Integer bits of the rescaled input differences (Q5.26).
const SCALED_DIFF_INTEGER_BITS: i32 = 5;
/// Integer bits of the sum of exponentials (Q12.19).
const ACCUMULATION_INTEGER_BITS: i32 = 12;

/// Precomputed state of one int8 SOFTMAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxParams {
    /// Q31 multiplier of `beta * input_scale * 2^26`.
    pub input_multiplier: i32,
    /// Its left shift (>= 0).
    pub input_left_shift: i32,
    /// Differences from the row maximum below this give probability 0.
    pub diff_min: i32,
    /// Number of rows (product of all dimensions but the last).
    pub outer: usize,
    /// Row length (the last dimension).
    pub depth: usize,
}

/// Validates quantisation and shape (rank >= 1) and precomputes the input scaling.
pub fn prepare(
    input_scale: f32,
    beta: f32,
    output_scale: f32,
    output_zero_point: i32,
    shape: &[usize],
) -> Result<SoftmaxParams, &'static str> {
    if !(input_scale.is_finite() && input_scale > 0.0) {
        return Err("SOFTMAX: input scale must be positive and finite");
    }
    if !(beta.is_finite() && beta > 0.0) {
        return Err("SOFTMAX: beta must be positive and finite");
    }
    if output_zero_point != -128
        || (output_scale - 1.0 / 256.0).abs() > 0.001 / 256.0
        || output_scale.is_nan()
    {
        return Err("SOFTMAX: int8 output must have zero point -128 and scale 1/256");
    }
    let (&depth, rest) = shape
        .split_last()
        .ok_or("SOFTMAX: input must have rank >= 1")?;
    let outer = rest
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("SOFTMAX: too large")?;
    if outer.checked_mul(depth).is_none() {
        return Err("SOFTMAX: too large");
    }
    let real =
        (beta as f64 * input_scale as f64 * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64)
            .min((1i64 << 31) as f64 - 1.0);
    if real <= 1.0 {
        // QuantizeMultiplierGreaterThanOne would abort TFLite.
        return Err("SOFTMAX: beta * input_scale too small (must exceed 2^-26)");
    }
    let q = QuantizedMultiplier::from_f64(real);
    if q.shift < 0 {
        return Err("SOFTMAX: input multiplier out of range");
    }
    // CalculateInputRadius(5, left_shift): floor((2^5 - 1) * 2^26 / 2^left_shift), exact here.
    let radius = ((((1i64 << SCALED_DIFF_INTEGER_BITS) - 1) << (31 - SCALED_DIFF_INTEGER_BITS))
        >> q.shift.min(62)) as i32;
    Ok(SoftmaxParams {
        input_multiplier: q.multiplier,
        input_left_shift: q.shift,
        diff_min: -radius,
        outer,
        depth,
    })
}

/// gemmlowp `SaturatingRoundingMultiplyByPOT<exponent>` for a left shift (exponent > 0).
fn sat_shift_left(x: i32, exponent: i32) -> i32 {
    let threshold = (1i32 << (31 - exponent)) - 1;
    if x > threshold {
        i32::MAX
    } else if x < -threshold {
        i32::MIN
    } else {
        x << exponent
    }
}

/// gemmlowp `exp_on_interval_between_negative_one_quarter_and_0_excl` (Q0.31 in and out).
fn exp_on_interval(a: i32) -> i32 {
    const CONSTANT_TERM: i32 = 1_895_147_668; // exp(-1/8)
    const ONE_THIRD: i32 = 715_827_883;
    let x = a.wrapping_add(1 << 28); // a + 1/8
    let x2 = srdhm(x, x);
    let x3 = srdhm(x2, x);
    let x4 = srdhm(x2, x2);
    let x4_over_4 = rounding_divide_by_pot(x4, 2);
    let poly = rounding_divide_by_pot(
        srdhm(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        1,
    );
    CONSTANT_TERM.wrapping_add(srdhm(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// gemmlowp `exp_on_negative_values` for a Q5.26 input, Q0.31 output.
fn exp_on_negative_values(a: i32) -> i32 {
    const FRACTIONAL_BITS: i32 = 31 - SCALED_DIFF_INTEGER_BITS;
    let one_quarter = 1i32 << (FRACTIONAL_BITS - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    // Rescale Q5.26 -> Q0.31 (a left shift by 5, saturating).
    let mut result = exp_on_interval(sat_shift_left(
        a_mod_quarter_minus_one_quarter,
        SCALED_DIFF_INTEGER_BITS,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    // exp(-2^k) for k = -2..=4 in Q0.31, applied for each set bit of the remainder.
    const BARREL: [(i32, i32); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    for (exponent, multiplier) in BARREL {
        if remainder & (1 << (FRACTIONAL_BITS + exponent)) != 0 {
            result = srdhm(result, multiplier);
        }
    }
    if a == 0 {
        i32::MAX // FixedPoint<0>::One()
    } else {
        result
    }
}

/// gemmlowp `one_over_one_plus_x_for_x_in_0_1` (Q0.31 in and out).
fn one_over_one_plus_x(a: i32) -> i32 {
    // RoundingHalfSum(a, One()).
    let sum = a as i64 + i32::MAX as i64;
    let half_denominator = ((sum + if sum >= 0 { 1 } else { -1 }) / 2) as i32;
    // Newton-Raphson in Q2.29.
    const C48_OVER_17: i32 = 1_515_870_810;
    const CNEG32_OVER_17: i32 = -1_010_580_540;
    const ONE_Q2: i32 = 1 << 29;
    let mut x = C48_OVER_17.wrapping_add(srdhm(half_denominator, CNEG32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = srdhm(half_denominator, x);
        let one_minus = ONE_Q2.wrapping_sub(half_denominator_times_x);
        // Q2 * Q2 = Q4, rescaled to Q2 by a saturating left shift of 2.
        x = x.wrapping_add(sat_shift_left(srdhm(x, one_minus), 2));
    }
    // ExactMulByPot<-1> (Q2 -> Q1, same raw), then Rescale to Q0: saturating left shift by 1.
    sat_shift_left(x, 1)
}

/// TFLite's `GetReciprocal`: `1 / x` for a Q(integer_digits) sum, as a Q0.31 value and a count
/// of bits above one.
fn get_reciprocal(x: i32, integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = integer_digits - headroom_plus_one;
    let shifted_sum_minus_one =
        ((x as u32).wrapping_shl(headroom_plus_one as u32)).wrapping_sub(1u32 << 31) as i32;
    (
        one_over_one_plus_x(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

/// The rescaled difference `MultiplyByQuantizedMultiplierGreaterThanOne(diff)`.
#[inline]
fn rescale_diff(p: &SoftmaxParams, diff: i32) -> i32 {
    srdhm(
        diff.wrapping_mul(1i32.wrapping_shl(p.input_left_shift as u32)),
        p.input_multiplier,
    )
}

/// Computes the softmax of every row. Does nothing if a slice length disagrees with the shape.
pub fn eval(params: &SoftmaxParams, input: &[i8], output: &mut [i8]) {
    let n = params.outer * params.depth;
    debug_assert!(input.len() == n && output.len() == n);
    if input.len() != n || output.len() != n || params.depth == 0 {
        return;
    }
    for (row, out_row) in input
        .chunks_exact(params.depth)
        .zip(output.chunks_exact_mut(params.depth))
    {
        let max = row.iter().copied().max().unwrap_or(i8::MIN) as i32;
        let mut sum: i32 = 0;
        for &x in row {
            let diff = x as i32 - max;
            if diff >= params.diff_min {
                let e = exp_on_negative_values(rescale_diff(params, diff));
                sum = sum.wrapping_add(rounding_divide_by_pot(e, ACCUMULATION_INTEGER_BITS));
            }
        }
        let (shifted_scale, num_bits_over_unit) = get_reciprocal(sum, ACCUMULATION_INTEGER_BITS);
        let shift = (num_bits_over_unit + 31 - 8).clamp(0, 31);
        for (o, &x) in out_row.iter_mut().zip(row) {
            let diff = x as i32 - max;
            *o = if diff >= params.diff_min {
                let e = exp_on_negative_values(rescale_diff(params, diff));
                let v = rounding_divide_by_pot(srdhm(shifted_scale, e), shift) + i8::MIN as i32;
                v.clamp(i8::MIN as i32, i8::MAX as i32) as i8
            } else {
                i8::MIN
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_helpers_by_hand() {
        // exp(0) is One(); exp(-1) * 2^31 = 790015084.6; the fixed-point polynomial and the
        // three barrel products are accurate to about 3e-7 relative.
        assert_eq!(exp_on_negative_values(0), i32::MAX);
        let e1 = exp_on_negative_values(-(1 << 26));
        assert!((e1 - 790_015_085).abs() <= 400, "{e1}");
        // 1 / (1 + 0.5) = 2/3 in Q0.31 ~ 1431655765.
        let r = one_over_one_plus_x(1 << 30);
        assert!((r - 1_431_655_765).abs() <= 4, "{r}");
    }

    #[test]
    fn equal_inputs_share_probability() {
        // Four equal logits: 1/4 each -> 64 on scale 1/256 -> 64 - 128 = -64.
        let p = prepare(0.1, 1.0, 1.0 / 256.0, -128, &[1, 4]).unwrap();
        let mut out = [0i8; 4];
        eval(&p, &[7, 7, 7, 7], &mut out);
        assert_eq!(out, [-64; 4]);
        // One logit: probability 1 -> 256 - 128 = 128, clamped to 127.
        let p = prepare(0.1, 1.0, 1.0 / 256.0, -128, &[1]).unwrap();
        eval(&p, &[-3], &mut out[..1]);
        assert_eq!(out[0], 127);
    }

    #[test]
    fn two_logits_by_hand() {
        // Scale ln(3): logits 1 and 0 -> exp ratio 3:1 -> probabilities 0.75, 0.25
        // -> 192 and 64 on scale 1/256 -> 64 and -64.
        let p = prepare(1.098_612_3, 1.0, 1.0 / 256.0, -128, &[2]).unwrap();
        let mut out = [0i8; 2];
        eval(&p, &[1, 0], &mut out);
        assert_eq!(out, [64, -64]);
    }

    #[test]
    fn rejects_other_output_quantisation() {
        assert!(prepare(0.1, 1.0, 1.0 / 128.0, -128, &[4]).is_err());
        assert!(prepare(0.1, 1.0, 1.0 / 256.0, 0, &[4]).is_err());
        assert!(prepare(0.1, 1.0, 1.0 / 256.0, -128, &[]).is_err());
        assert!(prepare(1e-9, 1.0, 1.0 / 256.0, -128, &[4]).is_err());
    }
}
