//! MEAN over int8 tensors, as TFLite's reference kernel computes it (ai-edge-litert 2.3.0,
//! `reduce.cc` `EvalQuantizedMean` -> `reference_ops::QuantizedMeanOrSum`, integer version), for
//! every axis set:
//! 1. `multiplier, shift = QuantizeMultiplier(double(in_scale) / double(out_scale))`;
//! 2. the `1 / n` of the mean is folded in: `s = min(floor(log2 n), 32, 31 + shift)`,
//!    `multiplier = (int64(multiplier) << s) / n` (truncating), `shift -= s`;
//! 3. per output: `MultiplyByQuantizedMultiplier(sum(x) - zp_in * n, multiplier, shift) + zp_out`,
//!    clamped to int8.
//!
//! Older TFLite releases had three different arithmetics (a 4-D spatial special case, a
//! truncating division when quantisation is unchanged, and a float path); the parity fixtures
//! `mean_*` cover all three of those cases and match this single integer path bit-exactly.

use crate::model::MAX_RANK;
use crate::quant::{is_positive_scale, multiply_by_quantized_multiplier, QuantizedMultiplier};

/// Validated parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanParams {
    /// Input dims.
    pub dims: [usize; MAX_RANK],
    /// Input rank.
    pub rank: usize,
    /// Bit `d` set when dimension `d` is reduced.
    pub reduced: u32,
    /// Elements averaged per output.
    pub count: usize,
    /// Input zero point.
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// Requantisation with `1 / count` folded in.
    pub multiplier: QuantizedMultiplier,
}

/// Plain-number description of a MEAN.
#[derive(Clone, Copy, Debug)]
pub struct MeanSpec<'s> {
    /// Input dims.
    pub input_dims: &'s [i32],
    /// Axis values as stored in the (constant) axis tensor.
    pub axes: &'s [i32],
    /// `keep_dims` option.
    pub keep_dims: bool,
    /// Output dims as declared.
    pub output_dims: &'s [i32],
    /// Input scale.
    pub input_scale: f32,
    /// Input zero point.
    pub input_zero_point: i64,
    /// Output scale.
    pub output_scale: f32,
    /// Output zero point.
    pub output_zero_point: i64,
}

/// Resolves axes, checks the output shape and picks TFLite's arithmetic.
pub fn prepare(spec: &MeanSpec) -> Result<MeanParams, &'static str> {
    let rank = spec.input_dims.len();
    if rank > MAX_RANK {
        return Err("rank above 6");
    }
    let mut reduced = 0u32;
    for &a in spec.axes {
        let r = if a < 0 {
            a as i64 + rank as i64
        } else {
            a as i64
        };
        if r < 0 || r >= rank as i64 {
            return Err("axis out of range");
        }
        reduced |= 1 << r;
    }
    let mut dims = [0usize; MAX_RANK];
    let mut expected = [0i32; MAX_RANK];
    let mut out_rank = 0;
    let mut count = 1usize;
    for (d, &n) in spec.input_dims.iter().enumerate() {
        if n <= 0 {
            return Err("empty input dimension");
        }
        dims[d] = n as usize;
        if reduced & (1 << d) != 0 {
            count = count
                .checked_mul(n as usize)
                .ok_or("element count overflows")?;
            if spec.keep_dims {
                expected[out_rank] = 1;
                out_rank += 1;
            }
        } else {
            expected[out_rank] = n;
            out_rank += 1;
        }
    }
    if spec.output_dims != &expected[..out_rank] {
        return Err("output shape does not match the reduced input shape");
    }
    let zp = |z: i64| {
        if (-128..=127).contains(&z) {
            Ok(z as i32)
        } else {
            Err("zero point outside the int8 range")
        }
    };
    let input_zero_point = zp(spec.input_zero_point)?;
    let output_zero_point = zp(spec.output_zero_point)?;
    if !is_positive_scale(spec.output_scale) || !is_positive_scale(spec.input_scale) {
        return Err("scales must be positive");
    }
    let mut m = QuantizedMultiplier::from_f64(spec.input_scale as f64 / spec.output_scale as f64);
    // Fold 1/count into the multiplier exactly as TFLite does (the shift keeps the mantissa in
    // range; the clamps keep the final shift >= -31).
    let log2 = 63 - (count as u64).leading_zeros() as i32;
    let s = log2.min(32).min(31 + m.shift);
    if s > 0 {
        m.multiplier = (((m.multiplier as i64) << s) / count as i64) as i32;
        m.shift -= s;
    } else if s < 0 {
        return Err("scale ratio too small to requantise");
    }
    Ok(MeanParams {
        dims,
        rank,
        reduced,
        count,
        input_zero_point,
        output_zero_point,
        multiplier: m,
    })
}

/// Advances a row-major multi-index over the dimensions selected by `mask`; false when done.
fn next_index(
    idx: &mut [usize; MAX_RANK],
    dims: &[usize; MAX_RANK],
    rank: usize,
    mask: u32,
) -> bool {
    for d in (0..rank).rev() {
        if mask & (1 << d) == 0 {
            continue;
        }
        idx[d] += 1;
        if idx[d] < dims[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

/// One output from the sum of its `count` inputs: zero point removed, scaled by
/// `in_scale / (out_scale * count)`, zero point added, clamped.
#[inline]
pub(crate) fn finish(p: &MeanParams, sum: i32) -> i8 {
    let n = p.count as i32;
    let acc = sum.wrapping_sub(p.input_zero_point.wrapping_mul(n));
    let m = p.multiplier;
    multiply_by_quantized_multiplier(acc, m.multiplier, m.shift.clamp(-31, 30))
        .saturating_add(p.output_zero_point)
        .clamp(-128, 127) as i8
}

/// Computes the means; outputs are produced in row-major order of the kept dimensions.
pub fn eval(p: &MeanParams, input: &[i8], output: &mut [i8]) {
    let rank = p.rank;
    let all = (1u32 << rank) - 1;
    let kept = all & !p.reduced;
    let mut strides = [0usize; MAX_RANK];
    let mut s = 1;
    for d in (0..rank).rev() {
        strides[d] = s;
        s *= p.dims[d];
    }
    let mut out_idx = [0usize; MAX_RANK];
    let mut o = 0;
    loop {
        // Sum over the reduced dimensions for this output position.
        let mut red_idx = out_idx;
        let mut sum: i32 = 0;
        loop {
            let off: usize = (0..rank).map(|d| red_idx[d] * strides[d]).sum();
            sum = sum.wrapping_add(input.get(off).copied().unwrap_or(0) as i32);
            if !next_index(&mut red_idx, &p.dims, rank, p.reduced) {
                break;
            }
        }
        if let Some(slot) = output.get_mut(o) {
            *slot = finish(p, sum);
        }
        o += 1;
        if !next_index(&mut out_idx, &p.dims, rank, kept) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'s>(dims: &'s [i32], axes: &'s [i32], keep: bool, out: &'s [i32]) -> MeanSpec<'s> {
        MeanSpec {
            input_dims: dims,
            axes,
            keep_dims: keep,
            output_dims: out,
            input_scale: 1.0,
            input_zero_point: 0,
            output_scale: 1.0,
            output_zero_point: 0,
        }
    }

    #[test]
    fn folded_multiplier_by_hand() {
        // Ratio 1.0 -> QuantizeMultiplier gives (2^30, 1); n = 10 -> s = 3,
        // multiplier = 2^33 / 10 = 858993459, shift = -2.
        let p = prepare(&spec(&[1, 10], &[1], false, &[1])).unwrap();
        assert_eq!(
            p.multiplier,
            QuantizedMultiplier {
                multiplier: 858_993_459,
                shift: -2
            }
        );
        // sum 134: high-mul gives 134 * 0.39999999991 = 53.6 -> 54, then 54 / 4 = 13.5 -> 14.
        // (The true mean 13.4 rounds up: TFLite's double rounding, reproduced.)
        let mut out = [0i8; 1];
        eval(&p, &[13, 13, 13, 13, 14, 14, 14, 14, 13, 13], &mut out);
        assert_eq!(out, [14]);
    }

    #[test]
    fn spatial_mean_with_zero_points_by_hand() {
        // 1x2x2x2, ratio 2 (QuantizeMultiplier(2.0) = (2^30, 2)), n = 4 -> s = 2,
        // multiplier = 2^32 / 4 = 2^30, shift = 0: result = round(acc / 2) via the high-mul.
        let mut s = spec(&[1, 2, 2, 2], &[1, 2], true, &[1, 1, 1, 2]);
        s.input_zero_point = 1;
        s.output_scale = 0.5;
        let p = prepare(&s).unwrap();
        assert_eq!(
            p.multiplier,
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 0
            }
        );
        let mut out = [0i8; 2];
        eval(&p, &[1, -4, 2, -4, 3, -4, 5, -3], &mut out);
        // ch0: 11 - 4 = 7 -> 3.5 -> 4 ; ch1: -15 - 4 = -19 -> -9.5 -> -9 (negative halves go
        // toward zero in SaturatingRoundingDoublingHighMul)
        assert_eq!(out, [4, -9]);
    }

    #[test]
    fn rejects_bad_axes_and_shapes() {
        assert!(prepare(&spec(&[1, 2], &[2], false, &[1])).is_err());
        assert!(prepare(&spec(&[1, 2], &[1], true, &[1])).is_err());
        assert!(prepare(&spec(&[1, 2], &[1, -1], true, &[1, 1])).is_ok());
    }
}
