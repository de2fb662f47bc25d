//! AVX-512 (F, BW, VL, VNNI) kernels: 16 output channels per vector, `vpdpbusd` for the GEMM.
//!
//! Callers (`super::conv` etc.) have checked that the CPU has these features and that every
//! slice has the size its params imply; the pointer arithmetic below stays inside them.

use core::arch::x86_64::*;
use core::ops::Range;

use super::{
    block_bytes, conv_depth, depthwise_taps, im2col_row, padded_depth, Level, MAX_TAPS,
    PANEL_BYTES, QUANT_WORDS, ROWS,
};
use crate::kernels::conv::ConvParams;
use crate::kernels::depthwise_conv::DepthwiseConvParams;
use crate::kernels::fully_connected::{requantize_real, FcParams};

const LANES: usize = 16;
const LEVEL: Level = Level::Avx512Vnni;

/// One block's requantisation constants, loaded once per tile.
#[derive(Clone, Copy)]
struct BlockQuant {
    bias: __m512i,
    mult: __m512i,
    left: __m512i,
    right: __m512i,
    mask: __m512i,
    half: __m512i,
}

/// Output offset and clamp bounds.
#[derive(Clone, Copy)]
struct OutQuant {
    offset: __m512i,
    min: __m512i,
    max: __m512i,
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn block_quant(q: *const u8) -> BlockQuant {
    let one = _mm512_set1_epi32(1);
    let right = _mm512_loadu_si512(q.add(3 * 4 * LANES).cast());
    // RoundingDivideByPOT's mask (2^right - 1) and half of it, per lane.
    let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    BlockQuant {
        bias: _mm512_loadu_si512(q.cast()),
        mult: _mm512_loadu_si512(q.add(4 * LANES).cast()),
        left: _mm512_loadu_si512(q.add(2 * 4 * LANES).cast()),
        right,
        mask,
        half: _mm512_srli_epi32(mask, 1),
    }
}

/// `MultiplyByQuantizedMultiplier(acc + bias) + offset`, clamped: the reference's arithmetic on
/// 16 lanes. SaturatingRoundingDoublingHighMul is `(x * m + 2^30) >> 31` (the reference's
/// truncating division with its sign-dependent nudge equals this floor shift, and `m` is never
/// `i32::MIN`, so it never saturates); RoundingDivideByPOT adds one where the remainder exceeds
/// half the divisor (plus one for negatives).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn requantize(acc: __m512i, q: &BlockQuant, o: &OutQuant) -> __m512i {
    let x = _mm512_sllv_epi32(_mm512_add_epi32(acc, q.bias), q.left);
    let nudge = _mm512_set1_epi64(1 << 30);
    let even = _mm512_add_epi64(_mm512_mul_epi32(x, q.mult), nudge);
    let odd = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(q.mult, 32)),
        nudge,
    );
    let high = _mm512_mask_blend_epi32(
        0xAAAA,
        _mm512_srli_epi64(even, 31),
        _mm512_slli_epi64(_mm512_srli_epi64(odd, 31), 32),
    );
    let remainder = _mm512_and_si512(high, q.mask);
    let threshold = _mm512_add_epi32(q.half, _mm512_srli_epi32(high, 31));
    let shifted = _mm512_srav_epi32(high, q.right);
    let up = _mm512_cmpgt_epi32_mask(remainder, threshold);
    let v = _mm512_mask_add_epi32(shifted, up, shifted, _mm512_set1_epi32(1));
    let v = _mm512_add_epi32(v, o.offset);
    _mm512_min_epi32(_mm512_max_epi32(v, o.min), o.max)
}

/// `R` panel rows times `NB` blocks of 16 channels over `groups` groups of 4 bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn tile<const R: usize, const NB: usize>(
    panel: *const u8,
    row_bytes: usize,
    groups: usize,
    weights: [*const u8; NB],
) -> [[__m512i; NB]; R] {
    let mut acc = [[_mm512_setzero_si512(); NB]; R];
    for g in 0..groups {
        let mut w = [_mm512_setzero_si512(); NB];
        for b in 0..NB {
            w[b] = _mm512_loadu_si512(weights[b].add(g * 4 * LANES).cast());
        }
        for r in 0..R {
            let x = _mm512_set1_epi32(
                panel
                    .add(r * row_bytes + g * 4)
                    .cast::<i32>()
                    .read_unaligned(),
            );
            for b in 0..NB {
                acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], x, w[b]);
            }
        }
    }
    acc
}

fn lane_mask(left: usize) -> __mmask16 {
    if left >= LANES {
        0xFFFF
    } else {
        (1u16 << left) - 1
    }
}

/// Requantises and stores `rows` rows of a tile whose first block starts at channel `c0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn store_tile<const R: usize, const NB: usize>(
    acc: &[[__m512i; NB]; R],
    blocks: [*const u8; NB],
    o: &OutQuant,
    out: *mut i8,
    out_c: usize,
    c0: usize,
    rows: usize,
) {
    for b in 0..NB {
        let q = block_quant(blocks[b]);
        let c = c0 + b * LANES;
        let mask = lane_mask(out_c - c);
        for r in 0..rows.min(R) {
            let v = requantize(acc[r][b], &q, o);
            _mm512_mask_cvtepi32_storeu_epi8(out.add(r * out_c + c).cast(), mask, v);
        }
    }
}

fn out_quant(offset: i32, min: i32, max: i32) -> OutQuant {
    // SAFETY: `set1` needs only AVX-512F, which every caller has.
    unsafe {
        OutQuant {
            offset: _mm512_set1_epi32(offset),
            min: _mm512_set1_epi32(min),
            max: _mm512_set1_epi32(max),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn conv(
    p: &ConvParams,
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
    pixels: Range<usize>,
) {
    let depth = conv_depth(p);
    let row_bytes = padded_depth(LEVEL, depth);
    let groups = row_bytes / 4;
    let bb = block_bytes(LEVEL, depth);
    let blocks = p.out_c.div_ceil(LANES);
    let mut panel = [0u8; PANEL_BYTES];
    // Padding taps read the zero point, biased like every input byte.
    let pad = (p.input_offset.wrapping_neg() as u8) ^ 0x80;
    let o = out_quant(p.output_offset, p.act_min, p.act_max);
    let mut q0 = pixels.start;
    while q0 < pixels.end {
        let rows = ROWS.min(pixels.end - q0);
        for r in 0..rows {
            let row = &mut panel[r * row_bytes..(r + 1) * row_bytes];
            im2col_row(p, input, q0 + r, row, pad, |x| (x as u8) ^ 0x80);
        }
        let out = output.as_mut_ptr().add(q0 * p.out_c);
        let wp = |j: usize| packed.as_ptr().add(j * bb);
        let weights = |j: usize| wp(j).add(4 * QUANT_WORDS * LANES);
        let mut j = 0;
        while j + 1 < blocks {
            let acc = tile::<ROWS, 2>(
                panel.as_ptr(),
                row_bytes,
                groups,
                [weights(j), weights(j + 1)],
            );
            store_tile(&acc, [wp(j), wp(j + 1)], &o, out, p.out_c, j * LANES, rows);
            j += 2;
        }
        if j < blocks {
            let acc = tile::<ROWS, 1>(panel.as_ptr(), row_bytes, groups, [weights(j)]);
            store_tile(&acc, [wp(j)], &o, out, p.out_c, j * LANES, rows);
        }
        q0 += rows;
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn fully_connected(
    p: &FcParams,
    scales: &[f64],
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
) {
    let depth = p.accum_depth;
    let row_bytes = padded_depth(LEVEL, depth);
    let groups = row_bytes / 4;
    let bb = block_bytes(LEVEL, depth);
    let blocks = p.out_depth.div_ceil(LANES);
    let mut panel = [0u8; PANEL_BYTES];
    for b in 0..p.batches {
        let xs = &input[b * depth..(b + 1) * depth];
        for (d, &x) in panel[..depth].iter_mut().zip(xs) {
            *d = (x as u8) ^ 0x80;
        }
        for j in 0..blocks {
            let blk = packed.as_ptr().add(j * bb);
            let [[acc]] = tile::<1, 1>(
                panel.as_ptr(),
                row_bytes,
                groups,
                [blk.add(4 * QUANT_WORDS * LANES)],
            );
            let acc = _mm512_add_epi32(acc, _mm512_loadu_si512(blk.cast()));
            let mut sums = [0i32; LANES];
            _mm512_storeu_si512(sums.as_mut_ptr().cast(), acc);
            let first = j * LANES;
            let n = LANES.min(p.out_depth - first);
            for (lane, &s) in sums[..n].iter().enumerate() {
                let c = first + lane;
                let v = requantize_real(s, scales[c]).saturating_add(p.output_offset);
                output[b * p.out_depth + c] = v.clamp(p.act_min, p.act_max) as i8;
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn depthwise(
    p: &DepthwiseConvParams,
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
    pixels: Range<usize>,
) {
    let [_, kh, kw, ch] = p.filter_shape;
    let taps = kh * kw;
    let blocks = ch.div_ceil(LANES);
    let bb = 4 * LANES * (QUANT_WORDS + taps);
    let zp_row = packed.as_ptr().add(blocks * bb).cast::<i8>();
    let o = out_quant(p.output_zero_point, p.act_min, p.act_max);
    let mut offsets = [None; MAX_TAPS];
    let mut rows = [zp_row; MAX_TAPS];
    for q in pixels {
        depthwise_taps(p, q, &mut offsets);
        for (r, off) in rows[..taps].iter_mut().zip(&offsets) {
            *r = match off {
                Some(at) => input.as_ptr().add(*at),
                None => zp_row,
            };
        }
        let out = output.as_mut_ptr().add(q * ch);
        for j in 0..blocks {
            let mask = lane_mask(ch - j * LANES);
            let blk = packed.as_ptr().add(j * bb);
            let w = blk.add(4 * QUANT_WORDS * LANES);
            let mut acc = _mm512_setzero_si512();
            for (t, r) in rows[..taps].iter().enumerate() {
                let x = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, r.add(j * LANES)));
                let wt = _mm512_loadu_si512(w.add(t * 4 * LANES).cast());
                acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(x, wt));
            }
            let v = requantize(acc, &block_quant(blk), &o);
            _mm512_mask_cvtepi32_storeu_epi8(out.add(j * LANES).cast(), mask, v);
        }
    }
}
