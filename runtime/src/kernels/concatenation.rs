//! int8 CONCATENATION (TFLite `concatenation.cc` + `reference_ops::Concatenation`).
//!
//! TFLite's int8 kernel does not requantise: its Prepare rejects inputs whose scale or zero point
//! differs from the output's ("no re-scaling needed for Int8 quantized kernel"), and the fused
//! activation is not applied to quantised data. So this is a byte copy along `axis`, and
//! [`prepare`] enforces the same equal-quantisation rule.

/// Highest rank accepted.
pub const MAX_RANK: usize = 6;

/// Precomputed state of one CONCATENATION.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcatParams {
    /// Product of the dimensions before `axis`.
    pub outer: usize,
    /// Product of the dimensions after `axis`.
    pub inner: usize,
    /// Size of `axis` in the output.
    pub output_axis: usize,
}

/// Validates shapes (equal everywhere but `axis`, which may be negative) and quantisation
/// (`(scale, zero point)` of every input equal to the output's).
pub fn prepare(
    input_shapes: &[&[usize]],
    input_quant: &[(f32, i32)],
    output_shape: &[usize],
    output_quant: (f32, i32),
    axis: i32,
) -> Result<ConcatParams, &'static str> {
    let rank = output_shape.len();
    if rank == 0 || rank > MAX_RANK {
        return Err("CONCATENATION: output rank must be 1..=6");
    }
    if input_shapes.is_empty() || input_shapes.len() != input_quant.len() {
        return Err("CONCATENATION: needs at least one input, each with a quantisation");
    }
    let axis = if axis < 0 { axis + rank as i32 } else { axis };
    if !(0..rank as i32).contains(&axis) {
        return Err("CONCATENATION: axis out of range");
    }
    let axis = axis as usize;
    super::activations::check_quant(
        output_quant.0,
        output_quant.1,
        "CONCATENATION: output scale must be positive and finite, zero point in [-128, 127]",
    )?;
    let mut total = 0usize;
    for (shape, &q) in input_shapes.iter().zip(input_quant) {
        if shape.len() != rank {
            return Err("CONCATENATION: every input must have the output's rank");
        }
        for d in 0..rank {
            if d != axis && shape[d] != output_shape[d] {
                return Err("CONCATENATION: inputs differ from the output outside the axis");
            }
        }
        if q != output_quant {
            return Err("CONCATENATION: int8 inputs must have the output's scale and zero point (TFLite does not requantise)");
        }
        total = total
            .checked_add(shape[axis])
            .ok_or("CONCATENATION: too large")?;
    }
    if total != output_shape[axis] {
        return Err("CONCATENATION: output axis size must be the sum of the inputs'");
    }
    let outer = output_shape[..axis]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let inner = output_shape[axis + 1..]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let (Some(outer), Some(inner)) = (outer, inner) else {
        return Err("CONCATENATION: too large");
    };
    if outer
        .checked_mul(inner)
        .and_then(|x| x.checked_mul(total))
        .is_none()
    {
        return Err("CONCATENATION: too large");
    }
    Ok(ConcatParams {
        outer,
        inner,
        output_axis: total,
    })
}

/// Concatenates `inputs` (each `outer * axis_i * inner` long) into `output`. Does nothing if
/// the lengths disagree with the prepared shapes.
pub fn eval(params: &ConcatParams, inputs: &[&[i8]], output: &mut [i8]) {
    let (outer, inner) = (params.outer, params.inner);
    let ok = output.len() == outer * params.output_axis * inner
        && inputs
            .iter()
            .all(|x| outer * inner > 0 && x.len() % (outer * inner) == 0)
        && inputs.iter().map(|x| x.len()).sum::<usize>() == output.len();
    debug_assert!(
        ok,
        "CONCATENATION: slice lengths disagree with the prepared shapes"
    );
    if !ok {
        return;
    }
    let mut dst = 0usize;
    for o in 0..outer {
        for x in inputs {
            let chunk = x.len() / outer;
            output[dst..dst + chunk].copy_from_slice(&x[o * chunk..(o + 1) * chunk]);
            dst += chunk;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenates_along_the_middle_axis() {
        // [2,1,2] ++ [2,2,2] on axis 1 (given as -2) -> [2,3,2].
        let q = (0.5, 3);
        let p = prepare(&[&[2, 1, 2], &[2, 2, 2]], &[q, q], &[2, 3, 2], q, -2).unwrap();
        let mut out = [0i8; 12];
        eval(
            &p,
            &[&[1, 2, 3, 4], &[10, 11, 12, 13, 14, 15, 16, 17]],
            &mut out,
        );
        assert_eq!(out, [1, 2, 10, 11, 12, 13, 3, 4, 14, 15, 16, 17]);
    }

    #[test]
    fn rejects_mismatches() {
        let q = (0.5, 3);
        assert!(prepare(&[&[2, 1]], &[(0.25, 3)], &[2, 1], q, 1).is_err());
        assert!(prepare(&[&[2, 1]], &[q], &[2, 2], q, 1).is_err());
        assert!(prepare(&[&[2, 1]], &[q], &[2, 1], q, 2).is_err());
        assert!(prepare(&[&[3, 1]], &[q], &[2, 1], q, 1).is_err());
    }
}
