//! int8 PAD (TFLite `pad.cc` + `reference_ops::Pad`): copies the input into the middle of the
//! output and fills the border with the output zero point (the quantised 0.0). Values are not
//! requantised; the converter gives input and output the same quantisation.

/// Highest rank accepted (TFLite's reference PAD handles up to 5-D).
pub const MAX_RANK: usize = 5;

/// Precomputed state of one PAD, dimensions padded on the left to [`MAX_RANK`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadParams {
    /// Input dimensions.
    pub input_dims: [usize; MAX_RANK],
    /// Output dimensions.
    pub output_dims: [usize; MAX_RANK],
    /// Padding before each dimension.
    pub before: [usize; MAX_RANK],
    /// The fill value: the output zero point.
    pub pad_value: i8,
}

/// Validates `paddings` (`[rank][2]` flattened, before/after, non-negative) against the shapes.
pub fn prepare(
    input_shape: &[usize],
    paddings: &[i32],
    output_shape: &[usize],
    output_zero_point: i32,
) -> Result<PadParams, &'static str> {
    let rank = input_shape.len();
    if rank > MAX_RANK {
        return Err("PAD: tensors of rank above 5 are not supported");
    }
    if output_shape.len() != rank || paddings.len() != 2 * rank {
        return Err(
            "PAD: paddings must be [rank, 2] and the output rank must equal the input rank",
        );
    }
    let pad_value = i8::try_from(output_zero_point)
        .map_err(|_| "PAD: output zero point must be in [-128, 127]")?;
    let mut p = PadParams {
        input_dims: [1; MAX_RANK],
        output_dims: [1; MAX_RANK],
        before: [0; MAX_RANK],
        pad_value,
    };
    let off = MAX_RANK - rank;
    for d in 0..rank {
        let (b, a) = (paddings[2 * d], paddings[2 * d + 1]);
        if b < 0 || a < 0 {
            return Err("PAD: paddings must be non-negative");
        }
        let total = input_shape[d]
            .checked_add(b as usize)
            .and_then(|x| x.checked_add(a as usize));
        if total != Some(output_shape[d]) {
            return Err("PAD: output shape must be input shape plus paddings");
        }
        p.input_dims[off + d] = input_shape[d];
        p.output_dims[off + d] = output_shape[d];
        p.before[off + d] = b as usize;
    }
    if p.output_dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .is_none()
    {
        return Err("PAD: output too large");
    }
    Ok(p)
}

/// Writes the padded tensor. Does nothing if a slice length disagrees with the shapes.
pub fn eval(params: &PadParams, input: &[i8], output: &mut [i8]) {
    let (di, dout, bef) = (&params.input_dims, &params.output_dims, &params.before);
    let ok = input.len() == di.iter().product::<usize>()
        && output.len() == dout.iter().product::<usize>();
    debug_assert!(ok, "PAD: slice lengths disagree with the prepared shapes");
    if !ok {
        return;
    }
    output.fill(params.pad_value);
    // Copy each input row (innermost dimension) to its place.
    let row = di[4];
    let mut src = 0usize;
    for i0 in 0..di[0] {
        for i1 in 0..di[1] {
            for i2 in 0..di[2] {
                for i3 in 0..di[3] {
                    let o = [i0 + bef[0], i1 + bef[1], i2 + bef[2], i3 + bef[3], bef[4]];
                    let dst = (((o[0] * dout[1] + o[1]) * dout[2] + o[2]) * dout[3] + o[3])
                        * dout[4]
                        + o[4];
                    output[dst..dst + row].copy_from_slice(&input[src..src + row]);
                    src += row;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_with_the_output_zero_point() {
        // [2, 2] padded by ((1, 0), (0, 2)) -> [3, 4].
        let p = prepare(&[2, 2], &[1, 0, 0, 2], &[3, 4], -7).unwrap();
        let mut out = [0i8; 12];
        eval(&p, &[1, 2, 3, 4], &mut out);
        assert_eq!(out, [-7, -7, -7, -7, 1, 2, -7, -7, 3, 4, -7, -7]);
    }

    #[test]
    fn rejects_bad_paddings() {
        assert!(prepare(&[2], &[-1, 3], &[4], 0).is_err());
        assert!(prepare(&[2], &[1, 1], &[5], 0).is_err());
        assert!(prepare(&[2], &[1], &[3], 0).is_err());
        assert!(prepare(&[2], &[1, 1], &[4], 128).is_err());
    }
}
