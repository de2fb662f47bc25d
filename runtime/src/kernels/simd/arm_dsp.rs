//! CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED on the Cortex-M DSP extension (ARMv7E-M:
//! Cortex-M4/M7/M33): two 16-bit multiply-accumulates per instruction (`SMLAD`), with int8
//! weights and activations widened to 16-bit lanes by `SXTB16`/`SXTAB16` (the latter adding the
//! input offset in the same instruction). Bit-exact with the reference kernels:
//! - every `x + input_offset` fits an int16 lane (checked), every product is exact, and int32
//!   accumulation wraps exactly like the reference's `wrapping_add` in any order;
//! - padding taps are skipped, as in the reference (they contribute nothing);
//! - requantisation is the reference's own code (`multiply_by_quantized_multiplier`, or
//!   `requantize_real` for FULLY_CONNECTED) with the same offset and clamp.
//!
//! Weights are read in place (OHWI conv filter, `[1, KH, KW, C]` depthwise filter, `[O, K]` FC
//! filter); no scratch memory, no allocation; a few dozen bytes of stack. Each kernel returns
//! `false` (the caller then runs the reference) when a slice length disagrees with the params or
//! a shape is outside what it handles (depthwise with a depth multiplier other than 1).
//!
//! Convolution blocking: two output channels by two output pixels per inner loop, so each
//! loaded input word serves two channels and each filter word two pixels (8 `SMLAD` per 4
//! loads). With dilation 1 horizontally, a filter row's taps inside the image are one contiguous
//! run of input and filter bytes, so a 3x3 conv on 3 channels is a dot product of 9.
//!
//! The DSP instructions are inline assembly on `target_arch = "arm"` with the `dsp` target
//! feature, and plain Rust elsewhere (the same helper functions, bit for bit), so that the unit
//! tests run these kernels on the host against the reference kernels.

use crate::kernels::conv::{self, bias_at, ConvParams};
use crate::kernels::depthwise_conv::{self, DepthwiseConvParams};
use crate::kernels::fully_connected::{self, FcParams};
use crate::quant::QuantizedMultiplier;

#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
use isa_asm as isa;
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
use isa_emulated as isa;

/// The DSP instructions themselves. `SMLAD`/`SMLABB`/`SMLATT` may set the sticky Q flag on
/// overflow (the result still wraps), so they do not claim to preserve flags.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
mod isa_asm {
    use core::arch::asm;

    /// `SXTB16`: bytes 0 and 2 of `x`, sign-extended into the low and high halfwords.
    #[inline(always)]
    pub fn sxtb16(x: u32) -> u32 {
        let r: u32;
        // SAFETY: a register-only instruction with no memory access or side effect.
        unsafe {
            asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// `SXTB16 ..., ROR #8`: bytes 1 and 3 of `x`, sign-extended into halfwords.
    #[inline(always)]
    pub fn sxtb16_ror8(x: u32) -> u32 {
        let r: u32;
        // SAFETY: as above.
        unsafe {
            asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// `SXTAB16`: `a`'s halfwords plus bytes 0 and 2 of `x` sign-extended (each lane mod 2^16).
    #[inline(always)]
    pub fn sxtab16(a: u32, x: u32) -> u32 {
        let r: u32;
        // SAFETY: as above (SXTAB16 does not touch the GE flags).
        unsafe {
            asm!("sxtab16 {r}, {a}, {x}", r = lateout(reg) r, a = in(reg) a, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// `SXTAB16 ..., ROR #8`: `a`'s halfwords plus bytes 1 and 3 of `x` sign-extended.
    #[inline(always)]
    pub fn sxtab16_ror8(a: u32, x: u32) -> u32 {
        let r: u32;
        // SAFETY: as above.
        unsafe {
            asm!("sxtab16 {r}, {a}, {x}, ror #8", r = lateout(reg) r, a = in(reg) a, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// `SMLAD`: `acc + lo(a) * lo(b) + hi(a) * hi(b)` (signed halfwords, wrapping).
    #[inline(always)]
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: register-only; it may set the Q flag, which nothing here reads.
        unsafe {
            asm!("smlad {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, c = in(reg) acc, options(pure, nomem, nostack))
        };
        r
    }

    /// `SMLABB`: `acc + lo(a) * lo(b)`.
    #[inline(always)]
    pub fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: as for `smlad`.
        unsafe {
            asm!("smlabb {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, c = in(reg) acc, options(pure, nomem, nostack))
        };
        r
    }

    /// `SMLATT`: `acc + hi(a) * hi(b)`.
    #[inline(always)]
    pub fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: as for `smlad`.
        unsafe {
            asm!("smlatt {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, c = in(reg) acc, options(pure, nomem, nostack))
        };
        r
    }
}

/// The same instructions in plain Rust, as the ARMv7-M Architecture Reference Manual defines
/// them (halfword lanes; additions modulo 2^16 per lane for `SXTAB16`, modulo 2^32 for the
/// multiply-accumulates).
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
mod isa_emulated {
    fn lo(x: u32) -> i32 {
        x as u16 as i16 as i32
    }

    fn hi(x: u32) -> i32 {
        (x >> 16) as u16 as i16 as i32
    }

    fn pack(lo: i32, hi: i32) -> u32 {
        (lo as u16 as u32) | (hi as u16 as u32) << 16
    }

    /// Bytes 0 and 2 of `x`, sign-extended into the low and high halfwords.
    pub fn sxtb16(x: u32) -> u32 {
        pack(x as u8 as i8 as i32, (x >> 16) as u8 as i8 as i32)
    }

    /// Bytes 1 and 3 of `x`, sign-extended into halfwords.
    pub fn sxtb16_ror8(x: u32) -> u32 {
        sxtb16(x.rotate_right(8))
    }

    /// `a`'s halfwords plus bytes 0 and 2 of `x` sign-extended (each lane mod 2^16).
    pub fn sxtab16(a: u32, x: u32) -> u32 {
        let s = sxtb16(x);
        pack(lo(a).wrapping_add(lo(s)), hi(a).wrapping_add(hi(s)))
    }

    /// `a`'s halfwords plus bytes 1 and 3 of `x` sign-extended.
    pub fn sxtab16_ror8(a: u32, x: u32) -> u32 {
        sxtab16(a, x.rotate_right(8))
    }

    /// `acc + lo(a) * lo(b) + hi(a) * hi(b)`, wrapping.
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(lo(a) * lo(b)).wrapping_add(hi(a) * hi(b))
    }

    /// `acc + lo(a) * lo(b)`, wrapping.
    pub fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(lo(a) * lo(b))
    }

    /// `acc + hi(a) * hi(b)`, wrapping.
    pub fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(hi(a) * hi(b))
    }
}

use isa::{smlabb, smlad, smlatt, sxtab16, sxtab16_ror8, sxtb16, sxtb16_ror8};

/// How input words become halfword pairs: even bytes and odd bytes, sign-extended, with the
/// input offset added (`SXTAB16`) or not (`SXTB16`, when the caller adds `offset * sum(w)`).
#[derive(Clone, Copy)]
enum Widen {
    /// Add the offset, held in both lanes (`offset_lanes`); the scalar tail adds `.1`.
    Offset(u32, i32),
    /// Plain sign extension (the offset is accounted for elsewhere).
    Plain,
}

impl Widen {
    #[inline(always)]
    fn pair(self, x: u32) -> (u32, u32) {
        match self {
            Widen::Offset(lanes, _) => (sxtab16(lanes, x), sxtab16_ror8(lanes, x)),
            Widen::Plain => (sxtb16(x), sxtb16_ror8(x)),
        }
    }

    #[inline(always)]
    fn scalar(self, x: i8) -> i32 {
        match self {
            Widen::Offset(_, offset) => x as i32 + offset,
            Widen::Plain => x as i32,
        }
    }
}

/// The input offset in both halfword lanes, or `None` when `x + offset` would not fit an int16
/// lane for some int8 `x` (never for a model's zero point, which prepare limits to int8).
fn offset_lanes(offset: i32) -> Option<u32> {
    (-32640..=32639)
        .contains(&offset)
        .then(|| (offset as u16 as u32) * 0x0001_0001)
}

/// Four int8 values as one little-endian word (a single unaligned `LDR` on ARMv7-M).
#[inline(always)]
fn word(c: &[i8]) -> u32 {
    match c.first_chunk::<4>() {
        Some(b) => u32::from_le_bytes(b.map(|v| v as u8)),
        None => 0,
    }
}

/// `acc[2 p + o] += sum_k widen(x_p[k]) * w_o[k]` for two input runs and two filter runs of
/// equal length.
#[inline(always)]
fn dot_2x2(xs: [&[i8]; 2], ws: [&[i8]; 2], widen: Widen, acc: &mut [i32; 4]) {
    let (x0, x1) = (xs[0].chunks_exact(4), xs[1].chunks_exact(4));
    let (w0, w1) = (ws[0].chunks_exact(4), ws[1].chunks_exact(4));
    let tails = (
        x0.remainder(),
        x1.remainder(),
        w0.remainder(),
        w1.remainder(),
    );
    let [mut a00, mut a01, mut a10, mut a11] = *acc;
    for ((x0, x1), (w0, w1)) in x0.zip(x1).zip(w0.zip(w1)) {
        let (x0e, x0o) = widen.pair(word(x0));
        let (w0e, w0o) = (sxtb16(word(w0)), sxtb16_ror8(word(w0)));
        a00 = smlad(x0o, w0o, smlad(x0e, w0e, a00));
        let (x1e, x1o) = widen.pair(word(x1));
        a10 = smlad(x1o, w0o, smlad(x1e, w0e, a10));
        let (w1e, w1o) = (sxtb16(word(w1)), sxtb16_ror8(word(w1)));
        a01 = smlad(x0o, w1o, smlad(x0e, w1e, a01));
        a11 = smlad(x1o, w1o, smlad(x1e, w1e, a11));
    }
    let (x0, x1, w0, w1) = tails;
    for (((&x0, &x1), &w0), &w1) in x0.iter().zip(x1).zip(w0).zip(w1) {
        let (x0, x1, w0, w1) = (widen.scalar(x0), widen.scalar(x1), w0 as i32, w1 as i32);
        a00 = a00.wrapping_add(x0 * w0);
        a01 = a01.wrapping_add(x0 * w1);
        a10 = a10.wrapping_add(x1 * w0);
        a11 = a11.wrapping_add(x1 * w1);
    }
    *acc = [a00, a01, a10, a11];
}

/// `acc[o] += sum_k widen(x[k]) * w_o[k]` for one input run and two filter runs of equal
/// length.
#[inline(always)]
fn dot_1x2(x: &[i8], ws: [&[i8]; 2], widen: Widen, acc: &mut [i32; 2]) {
    let x = x.chunks_exact(4);
    let (w0, w1) = (ws[0].chunks_exact(4), ws[1].chunks_exact(4));
    let tails = (x.remainder(), w0.remainder(), w1.remainder());
    let [mut a0, mut a1] = *acc;
    for (x, (w0, w1)) in x.zip(w0.zip(w1)) {
        let (xe, xo) = widen.pair(word(x));
        a0 = smlad(xo, sxtb16_ror8(word(w0)), smlad(xe, sxtb16(word(w0)), a0));
        a1 = smlad(xo, sxtb16_ror8(word(w1)), smlad(xe, sxtb16(word(w1)), a1));
    }
    let (x, w0, w1) = tails;
    for ((&x, &w0), &w1) in x.iter().zip(w0).zip(w1) {
        let x = widen.scalar(x);
        a0 = a0.wrapping_add(x * w0 as i32);
        a1 = a1.wrapping_add(x * w1 as i32);
    }
    *acc = [a0, a1];
}

/// `offset * sum(w)`, wrapping: what the input offset adds to a dot product with `w`.
fn offset_term(offset: i32, w: &[i8]) -> i32 {
    let sum = w.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32));
    offset.wrapping_mul(sum)
}

/// The shared core of 1x1 convolutions and fully connected layers: with `rows` rows of `k`
/// inputs in `x` and `outs` rows of `k` weights in `w`, `y[r * outs + o] =
/// out(channel(o), sum_j (x[r k + j] + offset) * w[o k + j])`. Output channels in pairs (an
/// odd last one is computed twice and stored once), rows in pairs; the offset enters once per
/// channel as `offset * sum(w_o)` (exact: wrapping integer arithmetic distributes), so the
/// inner loop only widens.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn matmul<C: Copy>(
    x: &[i8],
    rows: usize,
    w: &[i8],
    outs: usize,
    k: usize,
    offset: i32,
    y: &mut [i8],
    channel: impl Fn(usize) -> C,
    out: impl Fn(C, i32) -> i8,
) {
    for o in (0..outs).step_by(2) {
        let o1 = (o + 1).min(outs - 1);
        let ws = [window(w, o * k, k), window(w, o1 * k, k)];
        let (c0, c1) = (channel(o), channel(o1));
        let (s0, s1) = (offset_term(offset, ws[0]), offset_term(offset, ws[1]));
        let mut r = 0;
        while r + 1 < rows {
            let mut acc = [s0, s1, s0, s1];
            let xs = [window(x, r * k, k), window(x, (r + 1) * k, k)];
            dot_2x2(xs, ws, Widen::Plain, &mut acc);
            let at = r * outs;
            store(y, at + o1, out(c1, acc[1]));
            store(y, at + o, out(c0, acc[0]));
            store(y, at + outs + o1, out(c1, acc[3]));
            store(y, at + outs + o, out(c0, acc[2]));
            r += 2;
        }
        if r < rows {
            let mut acc = [s0, s1];
            dot_1x2(window(x, r * k, k), ws, Widen::Plain, &mut acc);
            store(y, r * outs + o1, out(c1, acc[1]));
            store(y, r * outs + o, out(c0, acc[0]));
        }
    }
}

/// Filter taps `f` in `0..taps` whose input coordinate `o * stride + f * dilation - pad` lies in
/// `0..size`, as a range `lo..hi` (`lo == hi` when none). `stride`, `dilation` >= 1, and the
/// caller checked with `geometry_fits` that nothing here overflows.
#[inline(always)]
fn tap_range(
    o: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    size: usize,
    taps: usize,
) -> (usize, usize) {
    let start = o * stride;
    let lo = pad.saturating_sub(start).div_ceil(dilation).min(taps);
    let hi = match (pad + size).checked_sub(start + 1) {
        Some(last) => (last / dilation + 1).min(taps),
        None => 0,
    };
    (lo, hi.max(lo))
}

/// The product of `dims`, or `None` on overflow.
fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Whether `o * stride + (taps - 1) * dilation` (every output coordinate `o < out`) and
/// `pad + size` fit a `usize`, so that `tap_range` and the index arithmetic cannot overflow.
fn geometry_fits(
    out: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    size: usize,
    taps: usize,
) -> bool {
    let reach = out
        .saturating_sub(1)
        .checked_mul(stride)
        .zip(taps.saturating_sub(1).checked_mul(dilation))
        .and_then(|(a, b)| a.checked_add(b));
    stride >= 1 && dilation >= 1 && reach.is_some() && pad.checked_add(size).is_some()
}

/// `len` elements of `s` from `start`; empty if out of range, which the kernels' length checks
/// rule out (this keeps every access panic-free without `unsafe`).
#[inline(always)]
fn window(s: &[i8], start: usize, len: usize) -> &[i8] {
    s.get(start..start.wrapping_add(len)).unwrap_or(&[])
}

/// Stores `v` at `y[i]` if in range (always, after the kernels' length checks).
#[inline(always)]
fn store(y: &mut [i8], i: usize, v: i8) {
    if let Some(o) = y.get_mut(i) {
        *o = v;
    }
}

/// One conv output channel's requantisation parameters.
#[derive(Clone, Copy)]
struct ConvChannel {
    bias: i32,
    multiplier: i32,
    shift: i32,
}

impl ConvChannel {
    fn new(multipliers: &[i32], shifts: &[i32], bias: Option<&[u8]>, oc: usize) -> Self {
        Self {
            bias: bias_at(bias, oc),
            multiplier: multipliers.get(oc).copied().unwrap_or(0),
            shift: shifts.get(oc).copied().unwrap_or(0),
        }
    }

    /// Exactly the conv reference's arithmetic after accumulation.
    #[inline(always)]
    fn output(self, acc: i32, p: &ConvParams) -> i8 {
        conv::finish(p, acc.wrapping_add(self.bias), self.multiplier, self.shift)
    }
}

/// CONV_2D for any filter size, stride, dilation and padding (see the module doc); a 1x1
/// convolution with stride 1 is one matrix product over all pixels.
pub(super) fn conv(
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    let (Some(in_img), Some(f_len), Some(out_img)) = (
        product(&[p.in_h, p.in_w, p.in_c]),
        product(&[p.filter_h, p.filter_w, p.in_c]),
        product(&[p.out_h, p.out_w, p.out_c]),
    ) else {
        return false;
    };
    let fits = |n: usize, total: Option<usize>| total.is_some_and(|t| n >= t);
    let Some(off2) = offset_lanes(p.input_offset) else {
        return false;
    };
    if in_img == 0
        || out_img == 0
        || !fits(input.len(), in_img.checked_mul(p.batches))
        || !fits(filter.len(), f_len.checked_mul(p.out_c))
        || !fits(output.len(), out_img.checked_mul(p.batches))
        || multipliers.len() < p.out_c
        || shifts.len() < p.out_c
        || !geometry_fits(
            p.out_h,
            p.stride_h,
            p.dilation_h,
            p.pad_top,
            p.in_h,
            p.filter_h,
        )
        || !geometry_fits(
            p.out_w,
            p.stride_w,
            p.dilation_w,
            p.pad_left,
            p.in_w,
            p.filter_w,
        )
    {
        return false;
    }
    let channel = |o: usize| ConvChannel::new(multipliers, shifts, bias, o);
    let pointwise = (p.filter_h, p.filter_w, p.stride_h, p.stride_w) == (1, 1, 1, 1)
        && (p.pad_top, p.pad_left) == (0, 0)
        && (p.out_h, p.out_w) == (p.in_h, p.in_w);
    if pointwise {
        // Every output pixel is one input pixel: one matrix product over all batches.
        let rows = p.batches * p.in_h * p.in_w;
        let out = |c: ConvChannel, acc: i32| c.output(acc, p);
        matmul(
            input,
            rows,
            filter,
            p.out_c,
            p.in_c,
            p.input_offset,
            output,
            channel,
            out,
        );
        return true;
    }
    let widen = Widen::Offset(off2, p.input_offset);
    let (in_c, sw, dw, pl) = (p.in_c, p.stride_w, p.dilation_w, p.pad_left);
    let tap_x = |ox: usize| tap_range(ox, sw, dw, pl, p.in_w, p.filter_w);
    let images = input
        .chunks_exact(in_img)
        .zip(output.chunks_exact_mut(out_img));
    for (x, y) in images.take(p.batches) {
        // Output channels in pairs; an odd last channel is computed twice and stored once.
        for oc in (0..p.out_c).step_by(2) {
            let oc1 = (oc + 1).min(p.out_c - 1);
            let q = [channel(oc), channel(oc1)];
            let (w0, w1) = (
                window(filter, oc * f_len, f_len),
                window(filter, oc1 * f_len, f_len),
            );
            for oy in 0..p.out_h {
                let (fy0, fy1) =
                    tap_range(oy, p.stride_h, p.dilation_h, p.pad_top, p.in_h, p.filter_h);
                let mut ox = 0;
                while ox < p.out_w {
                    // Two pixels at once when their windows are clipped alike (always, inside).
                    let fx = tap_x(ox);
                    let two = ox + 1 < p.out_w && tap_x(ox + 1) == fx;
                    let (mut acc2, mut acc1) = ([0i32; 4], [0i32; 2]);
                    for fy in fy0..fy1 {
                        let iy = oy * p.stride_h + fy * p.dilation_h - p.pad_top;
                        let mut f = fx.0;
                        while f < fx.1 {
                            // With dilation 1 the row's taps are one contiguous run.
                            let n = if dw == 1 { fx.1 - f } else { 1 };
                            let len = n * in_c;
                            let xi = (iy * p.in_w + ox * sw + f * dw - pl) * in_c;
                            let wi = (fy * p.filter_w + f) * in_c;
                            let ws = [window(w0, wi, len), window(w1, wi, len)];
                            if two {
                                let xs = [window(x, xi, len), window(x, xi + sw * in_c, len)];
                                dot_2x2(xs, ws, widen, &mut acc2);
                            } else {
                                dot_1x2(window(x, xi, len), ws, widen, &mut acc1);
                            }
                            f += n;
                        }
                    }
                    let at = (oy * p.out_w + ox) * p.out_c;
                    let first = if two { [acc2[0], acc2[1]] } else { acc1 };
                    store(y, at + oc1, q[1].output(first[1], p));
                    store(y, at + oc, q[0].output(first[0], p));
                    if two {
                        store(y, at + p.out_c + oc1, q[1].output(acc2[3], p));
                        store(y, at + p.out_c + oc, q[0].output(acc2[2], p));
                    }
                    ox += if two { 2 } else { 1 };
                }
            }
        }
    }
    true
}

/// One depthwise output channel's requantisation parameters.
#[derive(Clone, Copy)]
struct DwChannel {
    bias: i32,
    multiplier: i32,
    shift: i32,
}

impl DwChannel {
    /// Exactly the depthwise reference's arithmetic after accumulation.
    #[inline(always)]
    fn output(self, acc: i32, p: &DepthwiseConvParams) -> i8 {
        let q = QuantizedMultiplier {
            multiplier: self.multiplier,
            shift: self.shift,
        };
        depthwise_conv::finish(p, acc.wrapping_add(self.bias), q)
    }
}

/// DEPTHWISE_CONV_2D with depth multiplier 1, four channels per pass: one input word and one
/// filter word per tap feed four `SMLABB`/`SMLATT` (the channels are the word's lanes); a
/// channel count that is not a multiple of 4 ends with a scalar pass over the last 1 to 3.
pub(super) fn depthwise(
    p: &DepthwiseConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    let [n, h, w, c] = p.input_shape;
    let [_, kh, kw, oc] = p.filter_shape;
    let [_, oh, ow, _] = p.output_shape;
    // The reference's own preconditions (it computes nothing when they fail).
    let lengths = product(&[n, h, w, c]) == Some(input.len())
        && product(&[kh, kw, oc]) == Some(filter.len())
        && product(&[n, oh, ow, oc]) == Some(output.len())
        && multipliers.len() == oc
        && shifts.len() == oc
        && bias.is_none_or(|b| Some(b.len()) == oc.checked_mul(4));
    let Some(off2) = p.input_zero_point.checked_neg().and_then(offset_lanes) else {
        return false;
    };
    let ([sh, sw], [dh, dw], [ph, pw]) = (p.stride, p.dilation, p.pad);
    if !lengths
        || p.depth_multiplier != 1
        || oc != c
        || !geometry_fits(oh, sh, dh, ph, h, kh)
        || !geometry_fits(ow, sw, dw, pw, w, kw)
    {
        return false;
    }
    let off = -p.input_zero_point;
    for g in (0..c).step_by(4) {
        if c - g >= 4 {
            depthwise_group(
                p,
                g,
                4,
                bias,
                multipliers,
                shifts,
                output,
                move |xi, wi, acc| {
                    let (x, f) = (word(window(input, xi, 4)), word(window(filter, wi, 4)));
                    let (xe, xo) = (sxtab16(off2, x), sxtab16_ror8(off2, x));
                    let (fe, fo) = (sxtb16(f), sxtb16_ror8(f));
                    acc[0] = smlabb(xe, fe, acc[0]);
                    acc[1] = smlabb(xo, fo, acc[1]);
                    acc[2] = smlatt(xe, fe, acc[2]);
                    acc[3] = smlatt(xo, fo, acc[3]);
                },
            );
        } else {
            let lanes = c - g;
            depthwise_group(
                p,
                g,
                lanes,
                bias,
                multipliers,
                shifts,
                output,
                move |xi, wi, acc| {
                    let taps = window(input, xi, lanes)
                        .iter()
                        .zip(window(filter, wi, lanes));
                    for ((&x, &f), a) in taps.zip(acc) {
                        *a = a.wrapping_add((x as i32 + off) * f as i32);
                    }
                },
            );
        }
    }
    true
}

/// The loops of `depthwise` over batches, pixels and taps for channels `g..g + lanes`
/// (`lanes` <= 4): `tap(input index, filter index, accumulators)` adds one tap's products.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn depthwise_group(
    p: &DepthwiseConvParams,
    g: usize,
    lanes: usize,
    bias: Option<&[u8]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
    tap: impl Fn(usize, usize, &mut [i32; 4]),
) {
    let [n, h, w, c] = p.input_shape;
    let [_, kh, kw, _] = p.filter_shape;
    let [_, oh, ow, _] = p.output_shape;
    let ([sh, sw], [dh, dw], [ph, pw]) = (p.stride, p.dilation, p.pad);
    let q = [0, 1, 2, 3].map(|l| {
        let ch = g + l.min(lanes - 1);
        DwChannel {
            bias: bias_at(bias, ch),
            multiplier: multipliers.get(ch).copied().unwrap_or(0),
            shift: shifts.get(ch).copied().unwrap_or(0),
        }
    });
    // Index steps: to the next tap along a filter row / down a filter column.
    let (x_fx, x_fy, w_fy) = (dw * c, dh * w * c, kw * c);
    for b in 0..n {
        for oy in 0..oh {
            let (fy0, fy1) = tap_range(oy, sh, dh, ph, h, kh);
            for ox in 0..ow {
                let (fx0, fx1) = tap_range(ox, sw, dw, pw, w, kw);
                // Input and filter indices of tap (fy0, fx0) in channel g.
                let iy = b * h + oy * sh + fy0 * dh - ph;
                let mut xr = (iy * w + ox * sw + fx0 * dw - pw) * c + g;
                let mut wr = (fy0 * kw + fx0) * c + g;
                let mut acc = [0i32; 4];
                for _ in fy0..fy1 {
                    let (mut xi, mut wi) = (xr, wr);
                    for _ in fx0..fx1 {
                        tap(xi, wi, &mut acc);
                        xi += x_fx;
                        wi += c;
                    }
                    xr += x_fy;
                    wr += w_fy;
                }
                let at = ((b * oh + oy) * ow + ox) * c + g;
                for l in 0..lanes {
                    store(output, at + l, q[l & 3].output(acc[l & 3], p));
                }
            }
        }
    }
}

/// FULLY_CONNECTED: the `matmul` core with the reference's real-valued requantisation.
pub(super) fn fully_connected(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    let (k, outs) = (p.accum_depth, p.out_depth);
    let fits = |n: usize, total: Option<usize>| total.is_some_and(|t| n >= t);
    if k == 0
        || outs == 0
        || !fits(input.len(), k.checked_mul(p.batches))
        || !fits(filter.len(), k.checked_mul(outs))
        || !fits(output.len(), outs.checked_mul(p.batches))
        || scales.len() < outs
    {
        return false;
    }
    let channel = |o: usize| (bias_at(bias, o), scales.get(o).copied().unwrap_or(0.0));
    let out =
        |(b, scale): (i32, f64), acc: i32| fully_connected::finish(p, acc.wrapping_add(b), scale);
    matmul(
        input,
        p.batches,
        filter,
        outs,
        k,
        p.input_offset,
        output,
        channel,
        out,
    );
    true
}

#[cfg(test)]
mod tests {
    //! The kernels above, with the DSP instructions emulated, against the reference kernels on
    //! random shapes and data; and the emulation against the instruction definitions by hand.
    use super::*;
    use crate::kernels::activations::FusedActivation;
    use crate::kernels::depthwise_conv::Padding;
    use crate::kernels::simd::test_rng::Rng;
    use crate::tflite::schema::padding;
    use std::vec::Vec;

    #[test]
    fn emulated_instructions_by_hand() {
        // Bytes (low to high) 0x01, 0xFF, 0x7F, 0x80 = 1, -1, 127, -128.
        let x = 0x807F_FF01;
        assert_eq!(sxtb16(x), 0x007F_0001); // 1, 127
        assert_eq!(sxtb16_ror8(x), 0xFF80_FFFF); // -1, -128
                                                 // Offset 128 in both lanes: 129, 255 and 127, 0.
        assert_eq!(sxtab16(0x0080_0080, x), 0x00FF_0081);
        assert_eq!(sxtab16_ror8(0x0080_0080, x), 0x0000_007F);
        // Lanes (3, 2) . (4, -1) = 12 - 2, plus 10.
        assert_eq!(smlad(0x0002_0003, 0xFFFF_0004, 10), 20);
        assert_eq!(smlabb(0x0002_0003, 0xFFFF_0004, 10), 22);
        assert_eq!(smlatt(0x0002_0003, 0xFFFF_0004, 10), 8);
        // (-32768)^2 * 2 = 2^31 wraps to i32::MIN, as SMLAD's 32-bit result does.
        assert_eq!(smlad(0x8000_8000, 0x8000_8000, 0), i32::MIN);
        assert_eq!(offset_lanes(-127), Some(0xFF81_FF81));
        assert_eq!(offset_lanes(40_000), None);
    }

    #[test]
    fn tap_range_by_hand() {
        // Output 0 of a 3-tap SAME filter with pad 1: tap 0 reads row -1 (skipped).
        assert_eq!(tap_range(0, 1, 1, 1, 5, 3), (1, 3));
        // Output 4 of the same: tap 2 reads row 5 (past the end).
        assert_eq!(tap_range(4, 1, 1, 1, 5, 3), (0, 2));
        // Dilation 2, pad 2, size 3, output 0: taps read -2, 0, 2 -> taps 1 and 2.
        assert_eq!(tap_range(0, 1, 2, 2, 3, 3), (1, 3));
        // A window entirely in the padding: empty.
        assert_eq!(tap_range(0, 1, 1, 5, 2, 3), (3, 3));
    }

    fn random_conv(rng: &mut Rng, pointwise: bool) -> Option<(conv::ConvParams, [usize; 4])> {
        let (fh, fw, stride, dilation) = if pointwise {
            (1, 1, (1, 1), (1, 1))
        } else {
            let s = (rng.range(1, 3) as i32, rng.range(1, 3) as i32);
            let d = (rng.range(1, 3) as i32, rng.range(1, 3) as i32);
            (rng.size(1, 4), rng.size(1, 4), s, d)
        };
        let (b, h, w, c, oc) = (
            rng.size(1, 2),
            rng.size(1, 9),
            rng.size(1, 9),
            rng.size(1, 19),
            rng.size(1, 9),
        );
        let pad = if rng.next().is_multiple_of(2) {
            padding::SAME
        } else {
            padding::VALID
        };
        let oh = conv::out_size(pad, h, fh, stride.0 as usize, dilation.0 as usize)?;
        let ow = conv::out_size(pad, w, fw, stride.1 as usize, dilation.1 as usize)?;
        if oh == 0 || ow == 0 {
            return None;
        }
        let spec = conv::ConvSpec {
            input: [b, h, w, c],
            filter: [oc, fh, fw, c],
            output: [b, oh, ow, oc],
            stride,
            dilation,
            padding: pad,
            activation: rng.activation(),
            input_zero_point: rng.zero_point(),
            output_zero_point: rng.zero_point(),
            output_scale: rng.range(1, 100) as f32 / 1000.0,
        };
        let p = conv::prepare(&spec).ok()?;
        Some((p, [b * h * w * c, oc * fh * fw * c, b * oh * ow * oc, oc]))
    }

    fn check_conv(rng: &mut Rng, pointwise: bool) -> bool {
        let Some((p, [n_in, n_f, n_out, oc])) = random_conv(rng, pointwise) else {
            return false;
        };
        let (x, f, bias) = (rng.bytes(n_in), rng.bytes(n_f), rng.bias(oc));
        let (m, s) = rng.multipliers(oc);
        let (mut want, mut got) = (vec![0i8; n_out], vec![1i8; n_out]);
        conv::eval(&p, &m, &s, &x, &f, bias.as_deref(), &mut want);
        assert!(conv(&p, &m, &s, &x, &f, bias.as_deref(), &mut got), "{p:?}");
        assert_eq!(got, want, "{p:?}");
        true
    }

    #[test]
    fn conv_matches_reference_on_random_shapes() {
        let mut rng = Rng(0x5eed_c0de);
        let (mut pointwise, mut general) = (0, 0);
        while pointwise < 150 || general < 300 {
            if pointwise < 150 && check_conv(&mut rng, true) {
                pointwise += 1;
            }
            if general < 300 && check_conv(&mut rng, false) {
                general += 1;
            }
        }
    }

    #[test]
    fn depthwise_matches_reference_on_random_shapes() {
        let mut rng = Rng(0xd3b7_4a11);
        let mut checked = 0;
        while checked < 300 {
            let (b, h, w, c) = (
                rng.size(1, 2),
                rng.size(1, 9),
                rng.size(1, 9),
                rng.size(1, 19),
            );
            let (kh, kw) = (rng.size(1, 4), rng.size(1, 4));
            let stride = [rng.size(1, 3), rng.size(1, 3)];
            let dilation = [rng.size(1, 3), rng.size(1, 3)];
            let pad = if rng.next().is_multiple_of(2) {
                Padding::Same
            } else {
                Padding::Valid
            };
            let (Some((oh, _)), Some((ow, _))) = (
                depthwise_conv::out_size_and_padding(pad, h, kh, stride[0], dilation[0]),
                depthwise_conv::out_size_and_padding(pad, w, kw, stride[1], dilation[1]),
            ) else {
                continue;
            };
            let act = [
                FusedActivation::None,
                FusedActivation::Relu,
                FusedActivation::Relu6,
            ];
            let p = depthwise_conv::prepare(
                [b, h, w, c],
                [1, kh, kw, c],
                [b, oh, ow, c],
                stride,
                dilation,
                pad,
                1,
                act[rng.size(0, 2)],
                0.02,
                rng.zero_point() as i32,
                rng.range(1, 100) as f32 / 1000.0,
                rng.zero_point() as i32,
            )
            .unwrap();
            let (x, f, bias) = (
                rng.bytes(b * h * w * c),
                rng.bytes(kh * kw * c),
                rng.bias(c),
            );
            let (m, s) = rng.multipliers(c);
            let n_out = b * oh * ow * c;
            let (mut want, mut got) = (vec![0i8; n_out], vec![1i8; n_out]);
            depthwise_conv::eval_split(&p, &m, &s, &x, &f, bias.as_deref(), &mut want);
            assert!(
                depthwise(&p, &m, &s, &x, &f, bias.as_deref(), &mut got),
                "{p:?}"
            );
            assert_eq!(got, want, "{p:?}");
            checked += 1;
        }
    }

    #[test]
    fn fully_connected_matches_reference_on_random_shapes() {
        let mut rng = Rng(0xfc0f_fc0f);
        for _ in 0..300 {
            let (batches, k, outs) = (rng.size(1, 3), rng.size(1, 40), rng.size(1, 11));
            let dims = [batches as i32, outs as i32];
            let spec = fully_connected::FcSpec {
                input_elements: batches * k,
                filter: [outs, k],
                input_dims: &[batches as i32, k as i32],
                output_dims: &dims,
                keep_num_dims: false,
                activation: rng.activation(),
                input_zero_point: rng.zero_point(),
                output_zero_point: rng.zero_point(),
                output_scale: rng.range(1, 100) as f32 / 1000.0,
            };
            let p = fully_connected::prepare(&spec).unwrap();
            let scales: Vec<f64> = (0..outs)
                .map(|_| rng.range(1, 1 << 16) as f64 / (1u64 << 20) as f64)
                .collect();
            let (x, f, bias) = (rng.bytes(batches * k), rng.bytes(outs * k), rng.bias(outs));
            let (mut want, mut got) = (vec![0i8; batches * outs], vec![1i8; batches * outs]);
            fully_connected::eval(&p, &scales, &x, &f, bias.as_deref(), &mut want);
            assert!(
                fully_connected(&p, &scales, &x, &f, bias.as_deref(), &mut got),
                "{p:?}"
            );
            assert_eq!(got, want, "{p:?}");
        }
    }

    #[test]
    fn declines_what_it_does_not_handle() {
        // Depth multiplier 2: the reference kernel runs instead.
        let p = depthwise_conv::prepare(
            [1, 3, 3, 2],
            [1, 3, 3, 4],
            [1, 1, 1, 4],
            [1, 1],
            [1, 1],
            Padding::Valid,
            2,
            FusedActivation::None,
            1.0,
            0,
            1.0,
            0,
        )
        .unwrap();
        let (m, s) = ([1 << 30; 4], [0; 4]);
        let mut out = [0i8; 4];
        assert!(!depthwise(&p, &m, &s, &[1; 18], &[1; 36], None, &mut out));
        // Slices shorter than the params say: no panic, nothing computed.
        let mut rng = Rng(7);
        let (p, [n_in, n_f, n_out, oc]) = loop {
            if let Some(c) = random_conv(&mut rng, false) {
                break c;
            }
        };
        let (m, s) = rng.multipliers(oc);
        let mut y = vec![0i8; n_out];
        assert!(!conv(
            &p,
            &m,
            &s,
            &vec![0; n_in - 1],
            &vec![0; n_f],
            None,
            &mut y
        ));
        assert!(!conv(
            &p,
            &m,
            &s,
            &vec![0; n_in],
            &vec![0; n_f],
            None,
            &mut y[1..]
        ));
        assert!(!conv(
            &p,
            &m[1..],
            &s[1..],
            &vec![0; n_in],
            &vec![0; n_f],
            None,
            &mut y
        ));
    }
}
