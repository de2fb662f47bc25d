//! STRIDED_SLICE with constant begin/end/strides, one entry per input dimension, and
//! `begin_mask`, `end_mask` and `shrink_axis_mask` (numpy-style `x[b:e:s]`, an index for a
//! shrunk axis). `ellipsis_mask`, `new_axis_mask` and `offset` are rejected by the interpreter.
//! A pure data move, so any element type works.
//!
//! Per axis of size `n` (TFLite's `strided_slice::StartForAxis` / `StopForAxis`): a masked begin
//! is the first element in the direction of travel; a negative index counts from the end; the
//! start is clamped to `[0, n]` going forward and `[-1, n - 1]` going backward. A shrunk axis
//! stops at `start + 1`; a masked end is the last element in the direction of travel; the stop
//! is clamped like the start.

/// Most input dimensions (TFLite's `kMaxDim`).
pub const MAX_DIMS: usize = 5;

/// Validated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StridedSliceParams {
    /// Input rank.
    pub(crate) rank: usize,
    /// Resolved first index per axis.
    pub(crate) start: [i64; MAX_DIMS],
    /// Step per axis (non-zero).
    pub(crate) stride: [i64; MAX_DIMS],
    /// Elements taken per axis.
    pub(crate) count: [usize; MAX_DIMS],
    /// Input elements between consecutive indices of each axis.
    pub(crate) in_step: [usize; MAX_DIMS],
    /// Bytes per element.
    pub(crate) elem: usize,
}

/// The mask bits and constant index vectors of one STRIDED_SLICE.
#[derive(Clone, Copy, Debug)]
pub struct SliceSpec<'s> {
    /// `begin[i]` per input axis.
    pub begin: &'s [i32],
    /// `end[i]` per input axis.
    pub end: &'s [i32],
    /// `strides[i]` per input axis.
    pub strides: &'s [i32],
    /// Bit `i` set: ignore `begin[i]`.
    pub begin_mask: i32,
    /// Bit `i` set: ignore `end[i]`.
    pub end_mask: i32,
    /// Bit `i` set: take the one element at `begin[i]` and drop the axis.
    pub shrink_axis_mask: i32,
}

fn bit(mask: i32, axis: usize) -> bool {
    mask & (1 << axis) != 0
}

/// Resolves start, stop and count per axis and checks them against the declared output shape.
pub fn prepare(
    input_dims: &[usize],
    spec: &SliceSpec,
    output_dims: &[usize],
    elem: usize,
) -> Result<StridedSliceParams, &'static str> {
    let rank = input_dims.len();
    if rank > MAX_DIMS {
        return Err("input rank above 5");
    }
    if spec.begin.len() != rank || spec.end.len() != rank || spec.strides.len() != rank {
        return Err("begin, end and strides need one entry per input dimension");
    }
    let mut p = StridedSliceParams {
        rank,
        start: [0; MAX_DIMS],
        stride: [1; MAX_DIMS],
        count: [1; MAX_DIMS],
        in_step: [1; MAX_DIMS],
        elem,
    };
    let mut out = [0usize; MAX_DIMS];
    let mut out_rank = 0;
    let mut step = 1usize;
    for axis in (0..rank).rev() {
        p.in_step[axis] = step;
        step = step
            .checked_mul(input_dims[axis])
            .ok_or("shape overflows")?;
    }
    for (axis, &dim) in input_dims.iter().enumerate() {
        let n = i64::try_from(dim).map_err(|_| "dimension too large")?;
        let s = i64::from(spec.strides[axis]);
        if s == 0 {
            return Err("stride 0");
        }
        let clamp = |v: i64| {
            if s > 0 {
                v.clamp(0, n)
            } else {
                v.clamp(-1, n - 1)
            }
        };
        let from_end = |v: i64| if v < 0 { v + n } else { v };
        let start = if bit(spec.begin_mask, axis) {
            if s > 0 {
                0
            } else {
                n - 1
            }
        } else {
            clamp(from_end(i64::from(spec.begin[axis])))
        };
        let shrink = bit(spec.shrink_axis_mask, axis);
        let stop = if shrink {
            start + 1
        } else if bit(spec.end_mask, axis) {
            if s > 0 {
                n
            } else {
                -1
            }
        } else {
            clamp(from_end(i64::from(spec.end[axis])))
        };
        let span = if s > 0 { stop - start } else { start - stop };
        let count = if span <= 0 {
            0
        } else {
            (span + s.abs() - 1) / s.abs()
        };
        if shrink && (count != 1 || start < 0 || start >= n) {
            return Err("shrunk axis index outside the input");
        }
        p.start[axis] = start;
        p.stride[axis] = s;
        p.count[axis] = usize::try_from(count).map_err(|_| "slice too large")?;
        if !shrink {
            out[out_rank] = p.count[axis];
            out_rank += 1;
        }
    }
    if output_dims != &out[..out_rank] {
        return Err("output shape differs from the slice's shape");
    }
    Ok(p)
}

/// Copies the selected elements in row-major order of the output.
pub fn eval(p: &StridedSliceParams, input: &[u8], output: &mut [u8]) {
    let total: usize = p.count[..p.rank].iter().product();
    let mut idx = [0usize; MAX_DIMS];
    let e = p.elem;
    for dst in output.chunks_exact_mut(e).take(total) {
        let mut at = 0i64;
        for (a, &i) in idx.iter().enumerate().take(p.rank) {
            at += (p.start[a] + i as i64 * p.stride[a]) * p.in_step[a] as i64;
        }
        let src = usize::try_from(at)
            .ok()
            .and_then(|i| input.get(i * e..(i + 1) * e));
        if let Some(src) = src {
            dst.copy_from_slice(src);
        }
        // Odometer over the output index, last axis fastest.
        for a in (0..p.rank).rev() {
            idx[a] += 1;
            if idx[a] < p.count[a] {
                break;
            }
            idx[a] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'s>(b: &'s [i32], e: &'s [i32], s: &'s [i32], masks: [i32; 3]) -> SliceSpec<'s> {
        SliceSpec {
            begin: b,
            end: e,
            strides: s,
            begin_mask: masks[0],
            end_mask: masks[1],
            shrink_axis_mask: masks[2],
        }
    }

    fn run(dims: &[usize], sp: &SliceSpec, out_dims: &[usize]) -> Vec<u8> {
        let input: Vec<u8> = (0..dims.iter().product::<usize>() as u8).collect();
        let p = prepare(dims, sp, out_dims, 1).unwrap();
        let mut out = vec![0u8; out_dims.iter().product()];
        eval(&p, &input, &mut out);
        out
    }

    #[test]
    fn converter_batch_pattern_takes_element_zero_as_a_scalar() {
        // SHAPE -> STRIDED_SLICE(begin 0, end 1, stride 1, shrink 1) -> batch size (int32).
        let shape: Vec<u8> = [1i32, 7, 7, 96]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let p = prepare(&[4], &spec(&[0], &[1], &[1], [0, 0, 1]), &[], 4).unwrap();
        let mut out = [0u8; 4];
        eval(&p, &shape, &mut out);
        assert_eq!(i32::from_le_bytes(out), 1);
    }

    #[test]
    fn numpy_slices() {
        // x = arange(24).reshape(2, 3, 4)
        // x[1, ::2, -3:] -> [[13, 14, 15], [21, 22, 23]]
        let sp = spec(&[1, 0, -3], &[0, 0, 0], &[1, 2, 1], [0b010, 0b110, 0b001]);
        assert_eq!(run(&[2, 3, 4], &sp, &[2, 3]), [13, 14, 15, 21, 22, 23]);
        // x[:, ::-1, 3] -> [[11, 7, 3], [23, 19, 15]]
        let sp = spec(&[0, 0, 3], &[0, 0, 0], &[1, -1, 1], [0b011, 0b011, 0b100]);
        assert_eq!(run(&[2, 3, 4], &sp, &[2, 3]), [11, 7, 3, 23, 19, 15]);
        // x[0, 5:100, 1:3] -> empty rows (start clamps to 3): shape [0, 2]
        let sp = spec(&[0, 5, 1], &[0, 100, 3], &[1, 1, 1], [0, 0, 0b001]);
        assert_eq!(run(&[2, 3, 4], &sp, &[0, 2]), Vec::<u8>::new());
        // x[1, 2:0:-1, 3:0:-2] -> [[23, 21], [19, 17]]
        let sp = spec(&[1, 2, 3], &[0, 0, 0], &[1, -1, -2], [0, 0, 0b001]);
        assert_eq!(run(&[2, 3, 4], &sp, &[2, 2]), [23, 21, 19, 17]);
    }

    #[test]
    fn rejects_inconsistent_specs() {
        let sp = spec(&[0], &[1], &[0], [0, 0, 0]);
        assert_eq!(prepare(&[4], &sp, &[1], 1), Err("stride 0"));
        let sp = spec(&[0], &[1], &[1], [0, 0, 0]);
        assert!(prepare(&[4], &sp, &[2], 1).is_err());
        assert!(prepare(&[4, 1], &sp, &[1], 1).is_err());
        let sp = spec(&[4], &[5], &[1], [0, 0, 1]);
        assert!(prepare(&[4], &sp, &[], 1).is_err());
    }
}
