//! FULLY_CONNECTED: input rows (batches) against the `[O, K]` filter rows, 4 output channels at
//! a time (4 batch rows at a time when there are that many, one otherwise: the common single-row
//! GEMV). The input offset is applied after the products (`off * sum(w)`, exact in wrapping
//! int32); each output is requantised by the reference's own `requantize_real` (one per `K`
//! products, so it costs nothing worth vectorising).

use super::dot::{block, row_sum, Mac, Smull};
use crate::kernels::conv::bias_at;
use crate::kernels::fully_connected::{self, FcParams};
use core::arch::aarch64::int32x4_t;
use core::arch::aarch64::vst1q_s32;

/// True when this kernel handles the call: slices as long as the reference reads (it stops
/// early on short ones), a scale per channel, parameters in `fully_connected::prepare`'s ranges.
pub(super) fn check(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &[i8],
) -> bool {
    let size = |a: usize, b: usize| a.checked_mul(b);
    p.batches > 0
        && p.accum_depth > 0
        && p.out_depth > 0
        && (-127..=128).contains(&p.input_offset)
        && p.act_min <= p.act_max
        && size(p.batches, p.accum_depth).is_some_and(|l| input.len() >= l)
        && size(p.out_depth, p.accum_depth).is_some_and(|l| filter.len() >= l)
        && size(p.batches, p.out_depth).is_some_and(|l| output.len() >= l)
        && scales.len() >= p.out_depth
        && bias.is_none_or(|b| b.len() / 4 >= p.out_depth)
}

/// The layer with `sdot`.
///
/// # Safety
/// `check` returned true for these arguments, and the CPU has FEAT_DotProd.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn run_dotprod(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    run::<super::dot::Sdot>(p, scales, input, filter, bias, output)
}

/// The layer with base NEON.
///
/// # Safety
/// `check` returned true for these arguments.
pub(super) unsafe fn run_neon(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    run::<Smull>(p, scales, input, filter, bias, output)
}

#[inline(always)]
unsafe fn run<M: Mac>(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    let (k, out_c) = (p.accum_depth, p.out_depth);
    let (x, f) = (input.as_ptr(), filter.as_ptr());
    let mut c0 = 0;
    while c0 < out_c {
        let nc = (out_c - c0).min(4);
        let col = |j: usize| f.add((c0 + j.min(nc - 1)) * k);
        let cols = [col(0), col(1), col(2), col(3)];
        let mut add = [0i32; 4];
        for (j, a) in add.iter_mut().enumerate().take(nc) {
            let wsum = if p.input_offset != 0 {
                row_sum(cols[j], k)
            } else {
                0
            };
            *a = bias_at(bias, c0 + j).wrapping_add(p.input_offset.wrapping_mul(wsum));
        }
        let mut emit = |b: usize, sums: int32x4_t| {
            let mut s = [0i32; 4];
            vst1q_s32(s.as_mut_ptr(), sums);
            for j in 0..nc {
                let acc = s[j].wrapping_add(add[j]);
                output[b * out_c + c0 + j] = fully_connected::finish(p, acc, scales[c0 + j]);
            }
        };
        let mut b0 = 0;
        while b0 + 4 <= p.batches {
            let row = |i: usize| x.add((b0 + i) * k);
            let sums = block::<M, 4>(&[row(0), row(1), row(2), row(3)], &cols, k);
            for (i, &s) in sums.iter().enumerate() {
                emit(b0 + i, s);
            }
            b0 += 4;
        }
        for b in b0..p.batches {
            let [s] = block::<M, 1>(&[x.add(b * k)], &cols, k);
            emit(b, s);
        }
        c0 += 4;
    }
}
