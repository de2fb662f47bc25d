//! CONV_2D as a matrix product: each output pixel's receptive field (an im2col row of
//! `KH * KW * C` bytes, the filter's OHWI row order) against every output channel's filter row,
//! in tiles of 4 pixels x 4 output channels.
//!
//! 1x1 convolutions read their rows in place from the input; other shapes copy 4 rows at a time
//! into a stack panel, writing the input zero point for padded taps. The input offset is applied
//! after the products: `sum((x + off) * w) = sum(x * w) + off * sum(w)`, exact in wrapping int32,
//! and a padded tap (x = zero point = -off) contributes `(-off + off) * w = 0`, as the reference,
//! which skips it.

use super::dot::{block, row_sum, Mac, Smull};
use super::requant::{narrow8, Requant};
use crate::kernels::conv::{bias_at, ConvParams};
use core::arch::aarch64::*;

/// Bytes of the im2col panel (4 rows): convolutions with `KH * KW * C > MAX_PANEL / 4` that are
/// not 1x1 are left to the reference kernel.
pub(super) const MAX_PANEL: usize = 16 * 1024;
/// Output channels whose filter sums fit on the stack (only needed for a non-zero input offset).
pub(super) const MAX_OC: usize = 2048;

/// How the rows are read, decided by [`check`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Rows {
    /// 1x1 filter, no padding, every window inside the image: rows are input pixels.
    InPlace,
    /// Rows gathered into the stack panel.
    Panel,
}

/// `Some` when this kernel handles `p` with these slices (sizes as the interpreter guarantees,
/// parameters in the ranges `conv::prepare` produces, stack scratch within bounds); `None` sends
/// the call to the reference kernel.
pub(super) fn check(
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &[i8],
) -> Option<Rows> {
    let dims = [
        p.batches, p.in_h, p.in_w, p.in_c, p.filter_h, p.filter_w, p.out_h, p.out_w, p.out_c,
    ];
    if dims.contains(&0) || !(-127..=128).contains(&p.input_offset) || p.act_min > p.act_max {
        return None;
    }
    let k = p.filter_h.checked_mul(p.filter_w)?.checked_mul(p.in_c)?;
    let pixels = p.batches.checked_mul(p.out_h)?.checked_mul(p.out_w)?;
    let in_len = p
        .batches
        .checked_mul(p.in_h)?
        .checked_mul(p.in_w)?
        .checked_mul(p.in_c)?;
    if input.len() < in_len
        || filter.len() < p.out_c.checked_mul(k)?
        || output.len() < pixels.checked_mul(p.out_c)?
        || multipliers.len() < p.out_c
        || shifts.len() < p.out_c
        || bias.is_some_and(|b| b.len() / 4 < p.out_c)
    {
        return None;
    }
    // The farthest window position, as the reference computes it (signed, in isize).
    let reach = |out: usize, stride: usize, f: usize, dil: usize| {
        (out - 1)
            .checked_mul(stride)?
            .checked_add((f - 1).checked_mul(dil)?)
            .filter(|&r| r <= isize::MAX as usize)
    };
    let reach_h = reach(p.out_h, p.stride_h, p.filter_h, p.dilation_h)?;
    let reach_w = reach(p.out_w, p.stride_w, p.filter_w, p.dilation_w)?;
    if p.input_offset != 0 && p.out_c > MAX_OC {
        return None;
    }
    if p.filter_h == 1
        && p.filter_w == 1
        && p.pad_top == 0
        && p.pad_left == 0
        && reach_h < p.in_h
        && reach_w < p.in_w
    {
        Some(Rows::InPlace)
    } else if k <= MAX_PANEL / 4 {
        Some(Rows::Panel)
    } else {
        None
    }
}

/// The convolution with `sdot`.
///
/// # Safety
/// `check` returned `rows` for these arguments, and the CPU has FEAT_DotProd.
#[target_feature(enable = "dotprod")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run_dotprod(
    rows: Rows,
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    run::<super::dot::Sdot>(rows, p, multipliers, shifts, input, filter, bias, output)
}

/// The convolution with base NEON.
///
/// # Safety
/// `check` returned `rows` for these arguments.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run_neon(
    rows: Rows,
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    run::<Smull>(rows, p, multipliers, shifts, input, filter, bias, output)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn run<M: Mac>(
    rows: Rows,
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    let k = p.filter_h * p.filter_w * p.in_c;
    let mut wsum = [0i32; MAX_OC];
    if p.input_offset != 0 {
        for (oc, s) in wsum.iter_mut().enumerate().take(p.out_c) {
            *s = row_sum(filter.as_ptr().add(oc * k), k);
        }
    }
    let ctx = Ctx {
        p,
        k,
        multipliers,
        shifts,
        filter,
        bias,
        wsum: &wsum,
    };
    let x = input.as_ptr();
    match rows {
        Rows::InPlace => tiles::<M>(&ctx, output, |q0, n| {
            let at = |q: usize| {
                let (b, rest) = (q / (p.out_h * p.out_w), q % (p.out_h * p.out_w));
                let (oy, ox) = (rest / p.out_w, rest % p.out_w);
                x.add(((b * p.in_h + oy * p.stride_h) * p.in_w + ox * p.stride_w) * p.in_c)
            };
            [
                at(q0),
                at(q0 + 1.min(n - 1)),
                at(q0 + 2.min(n - 1)),
                at(q0 + 3.min(n - 1)),
            ]
        }),
        Rows::Panel => {
            let mut panel = [0i8; MAX_PANEL];
            let fill = (-p.input_offset) as i8; // the input zero point
            let base = panel.as_mut_ptr();
            tiles::<M>(&ctx, output, |q0, n| {
                for i in 0..n {
                    im2col_row(p, x, q0 + i, fill, base.add(i * k));
                }
                let row = |i: usize| base.add(i.min(n - 1) * k) as *const i8;
                [row(0), row(1), row(2), row(3)]
            })
        }
    }
}

/// What every tile needs besides its rows.
struct Ctx<'a> {
    p: &'a ConvParams,
    k: usize,
    multipliers: &'a [i32],
    shifts: &'a [i32],
    filter: &'a [i8],
    bias: Option<&'a [u8]>,
    wsum: &'a [i32; MAX_OC],
}

/// Writes output pixel `q`'s receptive field (`KH * KW * C` bytes, OHWI order) at `dst`.
#[inline(always)]
unsafe fn im2col_row(p: &ConvParams, x: *const i8, q: usize, fill: i8, dst: *mut i8) {
    let (b, rest) = (q / (p.out_h * p.out_w), q % (p.out_h * p.out_w));
    let (oy, ox) = (rest / p.out_w, rest % p.out_w);
    let c = p.in_c;
    let mut d = dst;
    for fy in 0..p.filter_h {
        let iy = (oy * p.stride_h + fy * p.dilation_h) as isize - p.pad_top as isize;
        let row_ok = iy >= 0 && iy < p.in_h as isize;
        for fx in 0..p.filter_w {
            let ix = (ox * p.stride_w + fx * p.dilation_w) as isize - p.pad_left as isize;
            if row_ok && ix >= 0 && ix < p.in_w as isize {
                let src = x.add(((b * p.in_h + iy as usize) * p.in_w + ix as usize) * c);
                core::ptr::copy_nonoverlapping(src, d, c);
            } else {
                core::ptr::write_bytes(d, fill as u8, c);
            }
            d = d.add(c);
        }
    }
}

/// Runs every 4-pixel x 4-channel tile; `rows(q0, n)` gives the rows of pixels `q0..q0 + n`
/// (`n` in 1..=4; positions past `n` repeat the last row and their sums are dropped).
#[inline(always)]
unsafe fn tiles<M: Mac>(
    ctx: &Ctx,
    output: &mut [i8],
    mut rows: impl FnMut(usize, usize) -> [*const i8; 4],
) {
    let p = ctx.p;
    let (k, out_c) = (ctx.k, p.out_c);
    let pixels = p.batches * p.out_h * p.out_w;
    let off = p.input_offset;
    let (out_off, lo, hi) = (
        vdupq_n_s32(p.output_offset),
        vdupq_n_s32(p.act_min),
        vdupq_n_s32(p.act_max),
    );
    let f = ctx.filter.as_ptr();
    let mut q0 = 0;
    while q0 < pixels {
        let n = (pixels - q0).min(4);
        let r = rows(q0, n);
        let mut c0 = 0;
        while c0 < out_c {
            let nc = (out_c - c0).min(4);
            let col = |j: usize| f.add((c0 + j.min(nc - 1)) * k);
            let sums = block::<M, 4>(&r, &[col(0), col(1), col(2), col(3)], k);
            let (mut m, mut s, mut add) = ([0i32; 4], [0i32; 4], [0i32; 4]);
            for j in 0..nc {
                m[j] = ctx.multipliers[c0 + j];
                // conv::eval clamps the shift to -31..=30 before requantising.
                s[j] = ctx.shifts[c0 + j].clamp(-31, 30);
                add[j] = bias_at(ctx.bias, c0 + j).wrapping_add(off.wrapping_mul(ctx.wsum[c0 + j]));
            }
            let rq = Requant::load(m.as_ptr(), s.as_ptr());
            let add = vld1q_s32(add.as_ptr());
            for (i, &sum) in sums.iter().enumerate().take(n) {
                let v = vqaddq_s32(rq.apply(vaddq_s32(sum, add)), out_off);
                let v = vminq_s32(vmaxq_s32(v, lo), hi);
                let mut bytes = [0i8; 8];
                vst1_s8(bytes.as_mut_ptr(), narrow8(v, v));
                let at = (q0 + i) * out_c + c0;
                output[at..at + nc].copy_from_slice(&bytes[..nc]);
            }
            c0 += 4;
        }
        q0 += 4;
    }
}
