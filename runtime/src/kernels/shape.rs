//! SHAPE: writes the input's dimensions as a 1-D int32 or int64 tensor. Shapes are static in
//! kdruntime, so `prepare` records them and `eval` only stores them (the output lives in the
//! arena, which other tensors reuse between invokes).

use crate::model::MAX_RANK;

/// Validated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeParams {
    /// The input's dimensions; the first `rank` are meaningful.
    pub(crate) dims: [i32; MAX_RANK],
    /// The input's rank (the output's length).
    pub(crate) rank: usize,
    /// Bytes per output element: 4 (int32) or 8 (int64).
    pub(crate) elem: usize,
}

/// Checks that the output holds one `elem`-byte integer per input dimension.
pub fn prepare(
    input_dims: &[usize],
    output_dims: &[usize],
    elem: usize,
) -> Result<ShapeParams, &'static str> {
    if elem != 4 && elem != 8 {
        return Err("output must be int32 or int64");
    }
    let rank = input_dims.len();
    if rank > MAX_RANK {
        return Err("input rank too high");
    }
    if output_dims != [rank] {
        return Err("output must be 1-D with one element per input dimension");
    }
    let mut dims = [0i32; MAX_RANK];
    for (d, &s) in dims.iter_mut().zip(input_dims) {
        *d = i32::try_from(s).map_err(|_| "input dimension does not fit int32")?;
    }
    Ok(ShapeParams { dims, rank, elem })
}

/// Stores the dimensions (little-endian, as TFLite tensors are laid out).
pub fn eval(p: &ShapeParams, output: &mut [u8]) {
    for (d, o) in p.dims[..p.rank].iter().zip(output.chunks_exact_mut(p.elem)) {
        if p.elem == 4 {
            o.copy_from_slice(&d.to_le_bytes());
        } else {
            o.copy_from_slice(&i64::from(*d).to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_int32_and_int64_dims() {
        let p = prepare(&[1, 7, 7, 96], &[4], 4).unwrap();
        let mut out = [0u8; 16];
        eval(&p, &mut out);
        let want: Vec<u8> = [1i32, 7, 7, 96]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(out.to_vec(), want);
        let p = prepare(&[3, 2], &[2], 8).unwrap();
        let mut out = [0u8; 16];
        eval(&p, &mut out);
        let want: Vec<u8> = [3i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(out.to_vec(), want);
    }

    #[test]
    fn rejects_bad_outputs() {
        assert!(prepare(&[1, 2], &[3], 4).is_err());
        assert!(prepare(&[1, 2], &[2], 1).is_err());
        assert!(prepare(&[1, 2], &[1, 2], 4).is_err());
        // A scalar input has shape [] and its SHAPE is an empty vector.
        assert!(prepare(&[], &[0], 4).is_ok());
    }
}
