//! DEPTHWISE_CONV_2D with depth multiplier 1: channels along the vector, 16 (then 8) at a time,
//! for any filter size, stride, dilation and padding. Per tap, `x - zero_point` (int16, exact:
//! |x - zp| <= 255) times the widened weight accumulates into int32 with `smlal`; padded taps are
//! skipped as in the reference. The last `C % 8` channels run the reference arithmetic scalar.

use super::requant::{narrow16, narrow8, Requant};
use crate::kernels::depthwise_conv::DepthwiseConvParams;
use crate::quant::QuantizedMultiplier;
use core::arch::aarch64::*;

/// Filter taps (`KH * KW`) whose offsets fit in the per-pixel table; larger filters are left to
/// the reference kernel.
pub(super) const MAX_TAPS: usize = 64;

/// True when this kernel handles the call: the slice sizes `depthwise_conv::eval_split` accepts
/// (it computes nothing otherwise), depth multiplier 1, an int8 input zero point.
pub(super) fn check(
    p: &DepthwiseConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &[i8],
) -> bool {
    let [n, h, w, c] = p.input_shape;
    let [_, kh, kw, oc] = p.filter_shape;
    let [_, oh, ow, _] = p.output_shape;
    let size = |d: &[usize]| d.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    let (Some(in_len), Some(f_len), Some(out_len)) = (
        size(&[n, h, w, c]),
        size(&[kh, kw, oc]),
        size(&[n, oh, ow, oc]),
    ) else {
        return false;
    };
    // The farthest window position must not overflow (the reference computes it in usize).
    let reach = |o: usize, s: usize, k: usize, d: usize| {
        o.checked_sub(1)
            .and_then(|o| o.checked_mul(s))
            .zip(k.checked_sub(1).and_then(|k| k.checked_mul(d)))
            .and_then(|(a, b)| a.checked_add(b))
            .is_some()
    };
    p.depth_multiplier == 1
        && oc == c
        && in_len > 0
        && out_len > 0
        && kh * kw <= MAX_TAPS
        && (-128..=127).contains(&p.input_zero_point)
        && reach(oh, p.stride[0], kh, p.dilation[0])
        && reach(ow, p.stride[1], kw, p.dilation[1])
        && multipliers.len() == oc
        && shifts.len() == oc
        && bias.is_none_or(|b| b.len() == 4 * oc)
        && input.len() == in_len
        && filter.len() == f_len
        && output.len() == out_len
}

/// The depthwise convolution.
///
/// # Safety
/// `check` returned true for these arguments.
pub(super) unsafe fn run(
    p: &DepthwiseConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    let [n, h, w, c] = p.input_shape;
    let [_, kh, kw, _] = p.filter_shape;
    let [_, oh, ow, _] = p.output_shape;
    let [sh, sw] = p.stride;
    let [dh, dw] = p.dilation;
    let [ph, pw] = p.pad;
    let zp = p.input_zero_point;
    let voff = vdupq_n_s16(-zp as i16);
    let (out_zp, lo, hi) = (
        vdupq_n_s32(p.output_zero_point),
        vdupq_n_s32(p.act_min),
        vdupq_n_s32(p.act_max),
    );
    let (x, f) = (input.as_ptr(), filter.as_ptr());
    let (m, s) = (multipliers.as_ptr(), shifts.as_ptr());
    // Bias lanes straight from the little-endian int32 bytes (the module is little-endian only).
    let b = bias.map(|b| b.as_ptr() as *const i32);
    let bias_vec = |ch: usize| b.map_or(vdupq_n_s32(0), |b| vld1q_s32(b.add(ch)));
    // (input offset, filter offset) of each tap inside the image, channel 0.
    let mut taps = [(0usize, 0usize); MAX_TAPS];
    for bi in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut nt = 0;
                for fy in 0..kh {
                    let Some(iy) = (oy * sh + fy * dh).checked_sub(ph).filter(|&y| y < h) else {
                        continue;
                    };
                    for fx in 0..kw {
                        let Some(ix) = (ox * sw + fx * dw).checked_sub(pw).filter(|&v| v < w)
                        else {
                            continue;
                        };
                        taps[nt] = (((bi * h + iy) * w + ix) * c, (fy * kw + fx) * c);
                        nt += 1;
                    }
                }
                let taps = &taps[..nt];
                let out = output.as_mut_ptr().add(((bi * oh + oy) * ow + ox) * c);
                let mut ch = 0;
                while ch + 16 <= c {
                    let mut acc = [
                        bias_vec(ch),
                        bias_vec(ch + 4),
                        bias_vec(ch + 8),
                        bias_vec(ch + 12),
                    ];
                    for &(xi, fi) in taps {
                        let xv = vld1q_s8(x.add(xi + ch));
                        let wv = vld1q_s8(f.add(fi + ch));
                        let (xl, xh) = (vaddw_s8(voff, vget_low_s8(xv)), vaddw_high_s8(voff, xv));
                        let (wl, wh) = (vmovl_s8(vget_low_s8(wv)), vmovl_high_s8(wv));
                        acc[0] = vmlal_s16(acc[0], vget_low_s16(xl), vget_low_s16(wl));
                        acc[1] = vmlal_high_s16(acc[1], xl, wl);
                        acc[2] = vmlal_s16(acc[2], vget_low_s16(xh), vget_low_s16(wh));
                        acc[3] = vmlal_high_s16(acc[3], xh, wh);
                    }
                    for (i, a) in acc.iter_mut().enumerate() {
                        let rq = Requant::load(m.add(ch + 4 * i), s.add(ch + 4 * i));
                        // The reference adds the output zero point with wrapping arithmetic.
                        let v = vaddq_s32(rq.apply(*a), out_zp);
                        *a = vminq_s32(vmaxq_s32(v, lo), hi);
                    }
                    vst1q_s8(out.add(ch), narrow16(acc));
                    ch += 16;
                }
                if ch + 8 <= c {
                    let mut acc = [bias_vec(ch), bias_vec(ch + 4)];
                    for &(xi, fi) in taps {
                        let xv = vaddw_s8(voff, vld1_s8(x.add(xi + ch)));
                        let wv = vmovl_s8(vld1_s8(f.add(fi + ch)));
                        acc[0] = vmlal_s16(acc[0], vget_low_s16(xv), vget_low_s16(wv));
                        acc[1] = vmlal_high_s16(acc[1], xv, wv);
                    }
                    for (i, a) in acc.iter_mut().enumerate() {
                        let rq = Requant::load(m.add(ch + 4 * i), s.add(ch + 4 * i));
                        let v = vaddq_s32(rq.apply(*a), out_zp);
                        *a = vminq_s32(vmaxq_s32(v, lo), hi);
                    }
                    vst1_s8(out.add(ch), narrow8(acc[0], acc[1]));
                    ch += 8;
                }
                // The remaining channels: the reference's arithmetic, one at a time.
                for ch in ch..c {
                    let mut acc: i32 = 0;
                    for &(xi, fi) in taps {
                        let xv = i32::from(*x.add(xi + ch));
                        acc = acc.wrapping_add(i32::from(*f.add(fi + ch)) * (xv - zp));
                    }
                    if let Some(b) = bias {
                        let v = [b[4 * ch], b[4 * ch + 1], b[4 * ch + 2], b[4 * ch + 3]];
                        acc = acc.wrapping_add(i32::from_le_bytes(v));
                    }
                    let q = QuantizedMultiplier {
                        multiplier: multipliers[ch],
                        shift: shifts[ch],
                    };
                    let v = q.apply(acc).wrapping_add(p.output_zero_point);
                    *out.add(ch) = v.max(p.act_min).min(p.act_max) as i8;
                }
            }
        }
    }
}
