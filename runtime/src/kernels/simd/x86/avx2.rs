//! AVX2 kernels: 8 output channels per vector, `vpmaddwd` on 16-bit operands for the GEMM
//! (exact: products of 9-bit by 8-bit values and pair sums fit in 32 bits).
//!
//! Callers (`super::conv` etc.) have checked that the CPU has AVX2 and that every slice has the
//! size its params imply; the pointer arithmetic below stays inside them.

use core::arch::x86_64::*;
use core::ops::Range;

use super::{
    block_bytes, conv_depth, depthwise_rows, im2col_row, padded_depth, split_shift, Level, Pos,
    MAX_TAPS, PANEL_BYTES, PANEL_SLACK, QUANT_WORDS, ROWS,
};
use crate::kernels::add::{self, AddParams};
use crate::kernels::conv::ConvParams;
use crate::kernels::depthwise_conv::DepthwiseConvParams;
use crate::kernels::fully_connected::{self, FcParams};
use crate::quant::QuantizedMultiplier;

const LANES: usize = 8;
const LEVEL: Level = Level::Avx2;
/// Rows per register tile (16 registers: 4 rows x 2 blocks of accumulators).
const TILE_ROWS: usize = 4;

#[derive(Clone, Copy)]
struct BlockQuant {
    bias: __m256i,
    mult: __m256i,
    left: __m256i,
    right: __m256i,
    mask: __m256i,
    half: __m256i,
}

#[derive(Clone, Copy)]
struct OutQuant {
    offset: __m256i,
    min: __m256i,
    max: __m256i,
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn block_quant(q: *const u8) -> BlockQuant {
    quant_vectors(
        _mm256_loadu_si256(q.cast()),
        _mm256_loadu_si256(q.add(4 * LANES).cast()),
        _mm256_loadu_si256(q.add(2 * 4 * LANES).cast()),
        _mm256_loadu_si256(q.add(3 * 4 * LANES).cast()),
    )
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn quant_vectors(bias: __m256i, mult: __m256i, left: __m256i, right: __m256i) -> BlockQuant {
    let one = _mm256_set1_epi32(1);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    BlockQuant {
        bias,
        mult,
        left,
        right,
        mask,
        half: _mm256_srli_epi32(mask, 1),
    }
}

/// The same constants in every lane (see the AVX-512 twin).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn splat_quant(bias: i32, m: QuantizedMultiplier, left: i32) -> BlockQuant {
    let (l, r) = split_shift(m.shift);
    quant_vectors(
        _mm256_set1_epi32(bias),
        _mm256_set1_epi32(m.multiplier),
        _mm256_set1_epi32(l + left),
        _mm256_set1_epi32(r),
    )
}

/// The reference requantisation on 8 lanes (see the AVX-512 twin for the derivation). AVX2 has
/// no 64-bit arithmetic shift, but only bits 31..62 of the 64-bit sum are kept, which a logical
/// shift delivers just as well.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn scale(acc: __m256i, q: &BlockQuant) -> __m256i {
    let x = _mm256_sllv_epi32(_mm256_add_epi32(acc, q.bias), q.left);
    let nudge = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_add_epi64(_mm256_mul_epi32(x, q.mult), nudge);
    let odd = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(q.mult, 32)),
        nudge,
    );
    let high = _mm256_blend_epi32::<0xAA>(
        _mm256_srli_epi64(even, 31),
        _mm256_slli_epi64(_mm256_srli_epi64(odd, 31), 32),
    );
    let remainder = _mm256_and_si256(high, q.mask);
    let threshold = _mm256_add_epi32(q.half, _mm256_srli_epi32(high, 31));
    let shifted = _mm256_srav_epi32(high, q.right);
    // cmpgt is -1 where the remainder rounds up.
    _mm256_sub_epi32(shifted, _mm256_cmpgt_epi32(remainder, threshold))
}

/// [`scale`], then the output offset and clamp.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn requantize(acc: __m256i, q: &BlockQuant, o: &OutQuant) -> __m256i {
    let v = _mm256_add_epi32(scale(acc, q), o.offset);
    _mm256_min_epi32(_mm256_max_epi32(v, o.min), o.max)
}

/// Stores the low byte of `n` (at most 8) lanes of `v` (already inside the int8 range).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_bytes(out: *mut i8, v: __m256i, n: usize) {
    let w = _mm256_packs_epi32(v, v);
    let b = _mm256_packs_epi16(w, w);
    let bytes = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b));
    if n >= LANES {
        _mm_storel_epi64(out.cast(), bytes);
    } else {
        let mut tmp = [0i8; 16];
        _mm_storeu_si128(tmp.as_mut_ptr().cast(), bytes);
        core::ptr::copy_nonoverlapping(tmp.as_ptr(), out, n);
    }
}

/// `R` rows of 16-bit panel times `NB` blocks of 8 channels over `groups` pairs.
#[allow(clippy::needless_range_loop)] // register tiles read clearer by index
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile<const R: usize, const NB: usize>(
    panel: *const i16,
    row_len: usize,
    groups: usize,
    weights: [*const u8; NB],
) -> [[__m256i; NB]; R] {
    let mut acc = [[_mm256_setzero_si256(); NB]; R];
    for g in 0..groups {
        let mut w = [_mm256_setzero_si256(); NB];
        for b in 0..NB {
            w[b] = _mm256_loadu_si256(weights[b].add(g * 4 * LANES).cast());
        }
        for r in 0..R {
            let x = _mm256_set1_epi32(
                panel
                    .add(r * row_len + g * 2)
                    .cast::<i32>()
                    .read_unaligned(),
            );
            for b in 0..NB {
                acc[r][b] = _mm256_add_epi32(acc[r][b], _mm256_madd_epi16(x, w[b]));
            }
        }
    }
    acc
}

#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_tile<const R: usize, const NB: usize>(
    acc: &[[__m256i; NB]; R],
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
        for r in 0..rows.min(R) {
            store_bytes(
                out.add(r * out_c + c),
                requantize(acc[r][b], &q, o),
                out_c - c,
            );
        }
    }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn out_quant(offset: i32, min: i32, max: i32) -> OutQuant {
    OutQuant {
        offset: _mm256_set1_epi32(offset),
        min: _mm256_set1_epi32(min),
        max: _mm256_set1_epi32(max),
    }
}

#[target_feature(enable = "avx2")]
pub(super) unsafe fn conv(
    p: &ConvParams,
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
    pixels: Range<usize>,
) {
    let depth = conv_depth(p);
    let row_len = padded_depth(LEVEL, depth);
    let groups = row_len / 2;
    let bb = block_bytes(LEVEL, depth);
    let blocks = p.out_c.div_ceil(LANES);
    let mut panel = [0i16; PANEL_BYTES / 2 + PANEL_SLACK];
    let off = p.input_offset as i16;
    let o = out_quant(p.output_offset, p.act_min, p.act_max);
    let mut q0 = pixels.start;
    while q0 < pixels.end {
        let rows = ROWS.min(pixels.end - q0);
        let mut pos = Pos::of(q0, p.out_h, p.out_w);
        for r in 0..rows {
            let row = panel.as_mut_ptr().add(r * row_len);
            // Offset applied here; padding taps are exactly zero.
            im2col_row(p, input, q0 + r, pos, row, 0, |dst, src| {
                for (k, &x) in src.iter().enumerate() {
                    dst.add(k).write(x as i16 + off);
                }
            });
            pos = pos.next(p.out_h, p.out_w);
        }
        let wp = |j: usize| packed.as_ptr().add(j * bb);
        let weights = |j: usize| wp(j).add(4 * QUANT_WORDS * LANES);
        let mut r0 = 0;
        while r0 < rows {
            let part = panel.as_ptr().add(r0 * row_len);
            let out = output.as_mut_ptr().add((q0 + r0 - pixels.start) * p.out_c);
            let n = rows - r0;
            let mut j = 0;
            while j + 1 < blocks {
                let acc = tile::<TILE_ROWS, 2>(part, row_len, groups, [weights(j), weights(j + 1)]);
                store_tile(&acc, [wp(j), wp(j + 1)], &o, out, p.out_c, j * LANES, n);
                j += 2;
            }
            if j < blocks {
                let acc = tile::<TILE_ROWS, 1>(part, row_len, groups, [weights(j)]);
                store_tile(&acc, [wp(j)], &o, out, p.out_c, j * LANES, n);
            }
            r0 += TILE_ROWS;
        }
        q0 += rows;
    }
}

#[target_feature(enable = "avx2")]
pub(super) unsafe fn fully_connected(
    p: &FcParams,
    scales: &[f64],
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
) {
    let depth = p.accum_depth;
    let row_len = padded_depth(LEVEL, depth);
    let groups = row_len / 2;
    let bb = block_bytes(LEVEL, depth);
    let blocks = p.out_depth.div_ceil(LANES);
    let mut panel = [0i16; PANEL_BYTES / 2];
    for b in 0..p.batches {
        let xs = &input[b * depth..(b + 1) * depth];
        for (d, &x) in panel[..depth].iter_mut().zip(xs) {
            *d = x as i16 + p.input_offset as i16;
        }
        for j in 0..blocks {
            let blk = packed.as_ptr().add(j * bb);
            let [[acc]] = tile::<1, 1>(
                panel.as_ptr(),
                row_len,
                groups,
                [blk.add(4 * QUANT_WORDS * LANES)],
            );
            let acc = _mm256_add_epi32(acc, _mm256_loadu_si256(blk.cast()));
            let mut sums = [0i32; LANES];
            _mm256_storeu_si256(sums.as_mut_ptr().cast(), acc);
            let first = j * LANES;
            let n = LANES.min(p.out_depth - first);
            for (lane, &s) in sums[..n].iter().enumerate() {
                let c = first + lane;
                output[b * p.out_depth + c] = fully_connected::finish(p, s, scales[c]);
            }
        }
    }
}

#[target_feature(enable = "avx2")]
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
    let mut rows = [zp_row; MAX_TAPS];
    let [_, out_h, out_w, _] = p.output_shape;
    let mut pos = Pos::of(pixels.start, out_h, out_w);
    let first = pixels.start;
    for q in pixels {
        depthwise_rows(p, input, pos, zp_row, &mut rows);
        pos = pos.next(out_h, out_w);
        let out = output.as_mut_ptr().add((q - first) * ch);
        for j in 0..blocks {
            let n = LANES.min(ch - j * LANES);
            let blk = packed.as_ptr().add(j * bb);
            let w = blk.add(4 * QUANT_WORDS * LANES);
            let mut acc = _mm256_setzero_si256();
            for (t, r) in rows[..taps].iter().enumerate() {
                let src = r.add(j * LANES);
                let bytes = if n == LANES {
                    _mm_loadl_epi64(src.cast())
                } else {
                    // The last partial block: never read past the input's end.
                    let mut tmp = [0i8; 16];
                    core::ptr::copy_nonoverlapping(src, tmp.as_mut_ptr(), n);
                    _mm_loadu_si128(tmp.as_ptr().cast())
                };
                let x = _mm256_cvtepi8_epi32(bytes);
                let wt = _mm256_loadu_si256(w.add(t * 4 * LANES).cast());
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(x, wt));
            }
            store_bytes(
                out.add(j * LANES),
                requantize(acc, &block_quant(blk), &o),
                n,
            );
        }
    }
}

/// Element-wise int8 ADD (equal shapes), as the AVX-512 twin.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn add(p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) {
    let [za, zb, zo] = p.zero_points;
    let qa = splat_quant(-za, p.a_multiplier, add::LEFT_SHIFT);
    let qb = splat_quant(-zb, p.b_multiplier, add::LEFT_SHIFT);
    let qo = splat_quant(0, p.output_multiplier, 0);
    let o = out_quant(zo, p.act_min, p.act_max);
    let n = output.len();
    let mut i = 0;
    while i < n {
        let k = LANES.min(n - i);
        let (mut ta, mut tb) = ([0i8; 16], [0i8; 16]);
        ta[..k].copy_from_slice(&a[i..i + k]);
        tb[..k].copy_from_slice(&b[i..i + k]);
        let x = _mm256_cvtepi8_epi32(_mm_loadl_epi64(ta.as_ptr().cast()));
        let y = _mm256_cvtepi8_epi32(_mm_loadl_epi64(tb.as_ptr().cast()));
        let sum = _mm256_add_epi32(scale(x, &qa), scale(y, &qb));
        store_bytes(output.as_mut_ptr().add(i), requantize(sum, &qo, &o), k);
        i += LANES;
    }
}
