//! PACK: stacks `N` tensors of one shape along a new axis (`tf.stack`). A pure data move, so any
//! element type works; the interpreter checks that int8/uint8 inputs share the output's
//! quantisation, so the bytes keep their meaning.

/// Validated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackParams {
    /// Product of the input dimensions before the axis.
    pub(crate) outer: usize,
    /// Bytes of one input's slice after the axis.
    pub(crate) inner_bytes: usize,
    /// Number of inputs.
    pub(crate) count: usize,
}

/// Checks the axis (negative counts from the end of the output's rank) and that the output
/// shape is the input shape with `count` inserted at the axis.
pub fn prepare(
    input_dims: &[usize],
    count: usize,
    axis: i32,
    output_dims: &[usize],
    elem: usize,
) -> Result<PackParams, &'static str> {
    if count == 0 {
        return Err("PACK needs at least one input");
    }
    let out_rank = input_dims.len() + 1;
    let axis = if axis < 0 {
        i64::from(axis) + out_rank as i64
    } else {
        i64::from(axis)
    };
    let axis = usize::try_from(axis)
        .ok()
        .filter(|&a| a < out_rank)
        .ok_or("axis outside the output's rank")?;
    let (before, after) = input_dims.split_at(axis);
    let shape_ok = output_dims.len() == out_rank
        && output_dims[..axis] == *before
        && output_dims[axis] == count
        && output_dims[axis + 1..] == *after;
    if !shape_ok {
        return Err("output shape is not the input shape with the input count inserted at axis");
    }
    let outer = before
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let inner_bytes = after
        .iter()
        .try_fold(elem, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    Ok(PackParams {
        outer,
        inner_bytes,
        count,
    })
}

/// Interleaves the inputs' slices: for each outer index, input 0's slice, input 1's, ...
pub fn eval(p: &PackParams, inputs: &[&[u8]], output: &mut [u8]) {
    let n = p.inner_bytes;
    if n == 0 {
        return;
    }
    let mut out = output.chunks_exact_mut(n);
    for o in 0..p.outer {
        for x in inputs.iter().take(p.count) {
            if let (Some(dst), Some(src)) = (out.next(), x.get(o * n..(o + 1) * n)) {
                dst.copy_from_slice(src);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_scalars_and_matrices() {
        // Three int32 scalars -> [3] (the converter's PACK of a dynamic batch with constants).
        let p = prepare(&[], 3, 0, &[3], 4).unwrap();
        let (a, b, c) = (
            7i32.to_le_bytes(),
            (-1i32).to_le_bytes(),
            9i32.to_le_bytes(),
        );
        let mut out = [0u8; 12];
        eval(&p, &[&a, &b, &c], &mut out);
        assert_eq!(out[..4], a);
        assert_eq!(out[4..8], b);
        assert_eq!(out[8..], c);
        // Two [2, 2] int8 tensors on axis 1 -> [2, 2, 2]: out[i][k][j] = in_k[i][j].
        let p = prepare(&[2, 2], 2, -2, &[2, 2, 2], 1).unwrap();
        let mut out = [0u8; 8];
        eval(&p, &[&[1, 2, 3, 4], &[5, 6, 7, 8]], &mut out);
        assert_eq!(out, [1, 2, 5, 6, 3, 4, 7, 8]);
        // Axis 2 (last): out[i][j][k] = in_k[i][j].
        let p = prepare(&[2, 2], 2, 2, &[2, 2, 2], 1).unwrap();
        eval(&p, &[&[1, 2, 3, 4], &[5, 6, 7, 8]], &mut out);
        assert_eq!(out, [1, 5, 2, 6, 3, 7, 4, 8]);
    }

    #[test]
    fn rejects_bad_shapes_and_axes() {
        assert!(prepare(&[2], 2, 2, &[2, 2], 1).is_err());
        assert!(prepare(&[2], 2, -3, &[2, 2], 1).is_err());
        assert!(prepare(&[2], 3, 0, &[2, 2], 1).is_err());
        assert!(prepare(&[2], 0, 0, &[0, 2], 1).is_err());
    }
}
