//! MEAN over int8 tensors. TFLite's reference kernel (`reduce.cc`, `EvalMeanReferenceOps`)
//! picks one of three arithmetics, and kdruntime follows the same choice:
//! 1. `keep_dims`, rank 4, axes exactly `[1, 2]` or `[2, 1]` (raw values, negatives do not
//!    count): `reference_integer_ops::Mean` — integer sum of `x - zp_in`, then
//!    `MultiplyByQuantizedMultiplier(in_scale / out_scale)`, then division by the element count
//!    rounded half away from zero, then `+ zp_out`.
//! 2. otherwise, input and output scale and zero point equal: `reference_ops::Mean`, the raw
//!    integer sum divided by the count with C++ truncation.
//! 3. otherwise: `reference_ops::QuantizedMeanOrSum`, in float32:
//!    `round(float(sum) / float(n) * s + (-zp_in * s)) + zp_out` with `s = in_scale / out_scale`.

use crate::model::MAX_RANK;
use crate::quant::{
    is_positive_scale, multiply_by_quantized_multiplier, round_half_away, QuantizedMultiplier,
};

/// Which of TFLite's three int8 MEAN arithmetics applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MeanPath {
    /// Integer, fixed-point multiplier then rounded division (4-D, axes [1, 2], keep_dims).
    Spatial4d(QuantizedMultiplier),
    /// Same input and output quantisation: truncating integer division.
    SameQuant,
    /// Float requantisation: `scale = in/out` and `bias = -zp_in * scale`, both f32.
    Float {
        /// `in_scale / out_scale` in f32.
        scale: f32,
        /// `-zp_in * scale` in f32.
        bias: f32,
    },
}

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
    /// Arithmetic.
    pub path: MeanPath,
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
    let spatial = spec.keep_dims && rank == 4 && matches!(spec.axes, [1, 2] | [2, 1]);
    let path = if spatial {
        // reduce.cc PrepareMeanOrSum: QuantizeMultiplier(double(in_scale) / double(out_scale)).
        count = dims[1] * dims[2];
        MeanPath::Spatial4d(QuantizedMultiplier::from_f64(
            spec.input_scale as f64 / spec.output_scale as f64,
        ))
    } else if input_zero_point == output_zero_point && spec.input_scale == spec.output_scale {
        MeanPath::SameQuant
    } else {
        let scale = spec.input_scale / spec.output_scale;
        MeanPath::Float {
            scale,
            bias: -(input_zero_point as f32) * scale,
        }
    };
    Ok(MeanParams {
        dims,
        rank,
        reduced,
        count,
        input_zero_point,
        output_zero_point,
        path,
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
        let n = p.count.max(1) as i32;
        let v: i32 = match p.path {
            MeanPath::Spatial4d(m) => {
                let acc = sum.wrapping_sub(p.input_zero_point.wrapping_mul(n));
                let acc =
                    multiply_by_quantized_multiplier(acc, m.multiplier, m.shift.clamp(-31, 30));
                let acc = if acc > 0 {
                    acc.saturating_add(n / 2) / n
                } else {
                    acc.saturating_sub(n / 2) / n
                };
                acc.saturating_add(p.output_zero_point).clamp(-128, 127)
            }
            MeanPath::SameQuant => (sum / n).clamp(-128, 127),
            MeanPath::Float { scale, bias } => {
                let mean = sum as f32 / p.count as f32;
                let r = round_half_away((mean * scale + bias) as f64) as f32
                    + p.output_zero_point as f32;
                r.clamp(-128.0, 127.0) as i32
            }
        };
        if let Some(slot) = output.get_mut(o) {
            *slot = v as i8;
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
    fn spatial_path_by_hand() {
        // 1x2x2x2, channel 0 = [1, 2, 3, 5] (sum 11, zp 1 -> 7), channel 1 = [-4, -4, -4, -3].
        let mut s = spec(&[1, 2, 2, 2], &[1, 2], true, &[1, 1, 1, 2]);
        s.input_zero_point = 1;
        s.output_scale = 0.5; // ratio 2
        let p = prepare(&s).unwrap();
        assert!(matches!(p.path, MeanPath::Spatial4d(_)));
        let mut out = [0i8; 2];
        eval(&p, &[1, -4, 2, -4, 3, -4, 5, -3], &mut out);
        // ch0: (11 - 4) * 2 = 14, 14/4 = 3.5 -> (14 + 2) / 4 = 4
        // ch1: (-15 - 4) * 2 = -38, (-38 - 2) / 4 = -10
        assert_eq!(out, [4, -10]);
    }

    #[test]
    fn same_quant_path_truncates() {
        // No keep_dims: not the spatial path; equal quantisation: truncating division.
        let p = prepare(&spec(&[1, 2, 2, 1], &[1, 2], false, &[1, 1])).unwrap();
        assert_eq!(p.path, MeanPath::SameQuant);
        let mut out = [0i8; 1];
        eval(&p, &[-1, -2, -2, -2], &mut out); // -7 / 4 = -1.75 -> -1
        assert_eq!(out, [-1]);
    }

    #[test]
    fn float_path_by_hand() {
        let mut s = spec(&[2, 3], &[-1], false, &[2]);
        s.input_zero_point = 2;
        s.output_scale = 2.0; // scale 0.5, bias -1
        let p = prepare(&s).unwrap();
        let mut out = [0i8; 2];
        eval(&p, &[1, 2, 4, -3, -3, -4], &mut out);
        // row0: mean 7/3 * 0.5 - 1 = 0.1667 -> 0 ; row1: -10/3 * 0.5 - 1 = -2.667 -> -3
        assert_eq!(out, [0, -3]);
    }

    #[test]
    fn rejects_bad_axes_and_shapes() {
        assert!(prepare(&spec(&[1, 2], &[2], false, &[1])).is_err());
        assert!(prepare(&spec(&[1, 2], &[1], true, &[1])).is_err());
        assert!(prepare(&spec(&[1, 2], &[1, -1], true, &[1, 1])).is_ok());
    }
}
