//! Restructured forms of reference kernels that any target runs faster (plain Rust the compiler
//! vectorises), used on every optimised path.

use crate::kernels::mean::{self, MeanParams};
use crate::kernels::quantize::{self, QuantizeParams};

/// Outputs summed per chunk of the innermost kept dimension (a stack accumulator).
const MEAN_CHUNK: usize = 64;

/// MEAN over one contiguous run of axes (e.g. H and W of NHWC, the global average pool):
/// sums rows of the inner dimension in order, which gives the reference's sums exactly (the
/// same wrapping i32 additions, merely reordered). False for other axis sets.
pub fn mean(p: &MeanParams, input: &[i8], output: &mut [i8]) -> bool {
    let (red, rank) = (p.reduced, p.rank);
    if red == 0 {
        return false;
    }
    let (first, end) = (
        red.trailing_zeros() as usize,
        32 - red.leading_zeros() as usize,
    );
    // One contiguous run of reduced axes (mask bits first..end all set).
    let run = ((1u64 << end) - (1u64 << first)) as u32;
    if red != run || end > rank {
        return false;
    }
    let prod = |d: &[usize]| d.iter().product::<usize>();
    let outer = prod(&p.dims[..first]);
    let reduced = prod(&p.dims[first..end]);
    let inner = prod(&p.dims[end..rank]);
    if input.len() != outer * reduced * inner || output.len() != outer * inner {
        return false;
    }
    for o in 0..outer {
        for i0 in (0..inner).step_by(MEAN_CHUNK) {
            let w = MEAN_CHUNK.min(inner - i0);
            let mut acc = [0i32; MEAN_CHUNK];
            for k in 0..reduced {
                let at = (o * reduced + k) * inner + i0;
                for (a, &x) in acc[..w].iter_mut().zip(&input[at..at + w]) {
                    *a = a.wrapping_add(x as i32);
                }
            }
            let out = &mut output[o * inner + i0..o * inner + i0 + w];
            for (y, &sum) in out.iter_mut().zip(&acc[..w]) {
                *y = mean::finish(p, sum);
            }
        }
    }
    true
}

/// QUANTIZE between 8-bit types through a 256-entry table that the reference kernel fills (one
/// call per possible input byte), so every output equals the reference's. False for float input.
pub fn quantize(p: &QuantizeParams, input: &[u8], output: &mut [u8]) -> bool {
    if !matches!(p, QuantizeParams::Requantize { .. }) || input.len() != output.len() {
        return false;
    }
    let mut table = [0u8; 256];
    for (v, t) in table.iter_mut().enumerate() {
        let mut one = [0u8];
        quantize::eval(p, &[v as u8], &mut one);
        *t = one[0];
    }
    for (y, &x) in output.iter_mut().zip(input) {
        *y = table[x as usize];
    }
    true
}
