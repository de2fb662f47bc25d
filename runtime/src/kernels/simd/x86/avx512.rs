//! AVX-512 (F, BW, VL, VNNI) kernels: 16 output channels per vector, `vpdpbusd` for the GEMM.
//!
//! Callers (`super::conv` etc.) have checked that the CPU has these features and that every
//! slice has the size its params imply; the pointer arithmetic below stays inside them.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use core::ops::Range;

use super::{
    block_bytes, conv_depth, dw_pair_block_bytes, exact_requant, im2col_row, padded_depth,
    split_shift, Level, Pos, DW_PAIR_LANES, DW_PAIR_QUANT_BYTES, EXACT_BYTES, EXACT_SHIFTS,
    PANEL_BYTES, PANEL_SLACK, QUANT_WORDS, ROWS,
};
use crate::kernels::add::{self, AddParams};
use crate::kernels::conv::ConvParams;
use crate::kernels::depthwise_conv::DepthwiseConvParams;
use crate::kernels::fully_connected::{self, FcParams};
use crate::quant::QuantizedMultiplier;

const LANES: usize = 16;
const LEVEL: Level = Level::Avx512Vnni;

/// One block's requantisation constants, loaded once per tile.
#[derive(Clone, Copy)]
struct BlockQuant {
    bias: __m512i,
    mult: __m512i,
    /// The odd lanes' multipliers moved to the even positions (`vpmuldq` reads those).
    mult_odd: __m512i,
    left: __m512i,
    /// Whether any lane shifts left (most blocks do not: their multipliers are below one).
    any_left: bool,
    right: __m512i,
    mask: __m512i,
    half: __m512i,
}

/// A 16-lane half's single-rounding constants (`super::exact_requant`): `K`, `D` and the shift
/// for the even lanes (index 0) and the odd ones (index 1).
#[derive(Clone, Copy)]
struct Exact {
    mult: __m512i,
    mult_odd: __m512i,
    k: [__m512i; 2],
    d: [__m512i; 2],
    s: [__m512i; 2],
}

/// Where one block's requantisation constants lie: its quantisation words (bias, multiplier,
/// left and right shift, `stride` bytes apart) and its single-rounding constants.
#[derive(Clone, Copy)]
struct QuantAt {
    words: *const u8,
    stride: usize,
    exact: *const u8,
}

impl QuantAt {
    /// Whether the single-rounding form applies (the packing leaves every shift 0 where not).
    unsafe fn is_exact(&self) -> bool {
        self.exact.add(EXACT_SHIFTS).cast::<i64>().read_unaligned() != 0
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn word(&self, k: usize) -> __m512i {
        _mm512_loadu_si512(self.words.add(k * self.stride).cast())
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn two_step(&self) -> BlockQuant {
        quant_vectors(self.word(0), self.word(1), self.word(2), self.word(3))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn single(&self) -> Exact {
        let v = |i: usize| _mm512_loadu_si512(self.exact.add(64 * i).cast());
        let mult = self.word(1);
        Exact {
            mult,
            mult_odd: _mm512_shuffle_epi32::<0xF5>(mult),
            k: [v(0), v(1)],
            d: [v(2), v(3)],
            s: [v(4), v(5)],
        }
    }
}

/// How a block of 16 accumulators (bias included) becomes `MultiplyByQuantizedMultiplier(acc)
/// + offset` per lane, unclamped: with one rounding ([`Exact`]) where the packing found that
/// exact, else in TFLite's two steps ([`BlockQuant`]).
trait Finish: Copy {
    /// # Safety
    /// The CPU has AVX-512 F/BW/VL.
    unsafe fn finish(&self, acc: __m512i, o: &OutQuant) -> __m512i;
}

impl Finish for Exact {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn finish(&self, acc: __m512i, _: &OutQuant) -> __m512i {
        single_rounding(acc, self)
    }
}

impl Finish for BlockQuant {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn finish(&self, acc: __m512i, o: &OutQuant) -> __m512i {
        _mm512_add_epi32(scale_biased(acc, self), o.offset)
    }
}

/// `(acc * m + K - [acc * m < 0] * D) >> s` per lane in 64 bits: the even lanes, then the odd
/// ones moved down, then the odd results shuffled back up beside the even ones.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn single_rounding(acc: __m512i, e: &Exact) -> __m512i {
    let half = |x: __m512i, m: __m512i, i: usize| {
        // `[p < 0] D` is `[x < 0] D` (`m > 0`), and `D` (2^31 or 0 in a 64-bit lane) masks
        // exactly the sign bit of `x`'s low dword: one AND, off the product's path.
        let k = _mm512_sub_epi64(e.k[i], _mm512_and_si512(x, e.d[i]));
        _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, m), k), e.s[i])
    };
    let even = half(acc, e.mult, 0);
    // `vpshufd` rather than a 64-bit shift: LLVM turns a shift feeding `vpmuldq` into an
    // emulated 64-bit multiply.
    let odd = half(_mm512_shuffle_epi32::<0xF5>(acc), e.mult_odd, 1);
    // Each result fits in 32 bits (the packing checked the accumulator bound): its low dword.
    _mm512_mask_shuffle_epi32::<_MM_PERM_CCAA>(even, 0xAAAA, odd)
}

/// Output offset and clamp bounds.
#[derive(Clone, Copy)]
struct OutQuant {
    offset: __m512i,
    min: __m512i,
    max: __m512i,
    /// The clamp bounds as bytes, for clamping after the saturating narrowing (equal to
    /// clamping before it: the bounds lie inside the int8 range and saturation is monotone).
    min8: __m256i,
    max8: __m256i,
    /// The clamp bounds as `i8` (for 64-byte vectors).
    min_i8: i8,
    max_i8: i8,
    /// Whether the bounds are narrower than the int8 range (a fused ReLU6 quantised with zero
    /// point -128 and scale 6/255, the usual case, is not: saturation alone clamps it).
    clamps: bool,
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn quant_vectors(bias: __m512i, mult: __m512i, left: __m512i, right: __m512i) -> BlockQuant {
    let one = _mm512_set1_epi32(1);
    // RoundingDivideByPOT's mask (2^right - 1) and half of it, per lane.
    let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    BlockQuant {
        bias,
        mult,
        mult_odd: _mm512_shuffle_epi32::<0xF5>(mult),
        left,
        any_left: _mm512_test_epi32_mask(left, left) != 0,
        right,
        mask,
        half: _mm512_srli_epi32(mask, 1),
    }
}

/// The same constants in every lane: `bias`, then `x * m * 2^(left - right)` as the reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn splat_quant(bias: i32, m: QuantizedMultiplier, left: i32) -> BlockQuant {
    let (l, r) = split_shift(m.shift);
    quant_vectors(
        _mm512_set1_epi32(bias),
        _mm512_set1_epi32(m.multiplier),
        _mm512_set1_epi32(l + left),
        _mm512_set1_epi32(r),
    )
}

/// `MultiplyByQuantizedMultiplier(acc + bias)`: the reference's arithmetic on 16 lanes. SaturatingRoundingDoublingHighMul is `(x * m + 2^30) >> 31` (the reference's
/// truncating division with its sign-dependent nudge equals this floor shift, and `m` is never
/// `i32::MIN`, so it never saturates); RoundingDivideByPOT adds one where the remainder exceeds
/// half the divisor (plus one for negatives).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn scale(acc: __m512i, q: &BlockQuant) -> __m512i {
    scale_biased(_mm512_add_epi32(acc, q.bias), q)
}

/// [`scale`] without the bias (already in `acc`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn scale_biased(acc: __m512i, q: &BlockQuant) -> __m512i {
    let x = if q.any_left {
        _mm512_sllv_epi32(acc, q.left)
    } else {
        acc
    };
    let nudge = _mm512_set1_epi64(1 << 30);
    let even = _mm512_add_epi64(_mm512_mul_epi32(x, q.mult), nudge);
    let odd = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(x), q.mult_odd),
        nudge,
    );
    // Bits 31..62 of each sum: the even ones shifted down into the low dword, the odd ones
    // shifted up by one into the high dword (the blend keeps only that dword).
    let high = _mm512_mask_blend_epi32(
        0xAAAA,
        _mm512_srli_epi64(even, 31),
        _mm512_add_epi64(odd, odd),
    );
    let remainder = _mm512_and_si512(high, q.mask);
    let threshold = _mm512_add_epi32(q.half, _mm512_srli_epi32(high, 31));
    let shifted = _mm512_srav_epi32(high, q.right);
    let up = _mm512_cmpgt_epi32_mask(remainder, threshold);
    _mm512_mask_add_epi32(shifted, up, shifted, _mm512_set1_epi32(1))
}

/// [`scale`], then the output offset and clamp.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn requantize(acc: __m512i, q: &BlockQuant, o: &OutQuant) -> __m512i {
    requantize_biased(_mm512_add_epi32(acc, q.bias), q, o)
}

/// [`requantize`] of accumulators that started from the bias.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn requantize_biased(acc: __m512i, q: &BlockQuant, o: &OutQuant) -> __m512i {
    let v = _mm512_add_epi32(scale_biased(acc, q), o.offset);
    _mm512_min_epi32(_mm512_max_epi32(v, o.min), o.max)
}

/// Two vectors of unclamped results (`scale` plus the output offset) as 32 saturated, clamped
/// bytes in `vpackssdw`'s order: per 128-bit lane k, `lo`'s lanes 4k..4k+3 then `hi`'s.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn narrow_pair(lo: __m512i, hi: __m512i, o: &OutQuant) -> __m256i {
    let bytes = _mm512_cvtsepi16_epi8(_mm512_packs_epi32(lo, hi));
    match o.clamps {
        true => _mm256_min_epi8(_mm256_max_epi8(bytes, o.min8), o.max8),
        false => bytes,
    }
}

/// `R` panel rows times `NB` blocks of 16 channels over `groups` groups of 4 bytes.
#[allow(clippy::needless_range_loop)] // register tiles read clearer by index
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn tile<const R: usize, const NB: usize>(
    panel: *const u8,
    row_bytes: usize,
    groups: usize,
    weights: [*const u8; NB],
    init: [__m512i; NB],
) -> [[__m512i; NB]; R] {
    let mut acc = [init; R];
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

/// Stores the 16 lanes' low bytes (values already in the int8 range) where `mask` is set: a
/// register narrowing and a plain store (a narrowing store to memory, which compilers like to
/// fuse `vpmovdb` into, is microcoded on some CPUs).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn store16(out: *mut i8, v: __m512i, mask: __mmask16) {
    // Saturating packs keep the (already int8-range) values; each 128-bit lane k then holds
    // lanes 4k..4k+3 in its first dword, which one dword permute gathers.
    let w = _mm512_packs_epi32(v, v);
    let b = _mm512_packs_epi16(w, w);
    let gather = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    let bytes = _mm512_castsi512_si128(_mm512_permutexvar_epi32(gather, b));
    if mask == 0xFFFF {
        _mm_storeu_si128(out.cast(), bytes);
    } else {
        _mm_mask_storeu_epi8(out.cast(), mask, bytes);
    }
}

/// `dst[i] = src[i] ^ 0x80` (int8 to the unsigned operand of `vpdpbusd`) with full-width stores
/// (masked stores are slow on some CPUs): writes up to 63 bytes past `src.len()`; loads are
/// masked, so nothing past `src` is read.
///
/// # Safety
/// `dst` must be valid for `src.len() + 63` bytes of writes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn biased_copy(dst: *mut u8, src: &[i8]) {
    let n = src.len();
    let s = src.as_ptr();
    let mut i = 0;
    while i + 64 <= n {
        let v = _mm512_loadu_si512(s.add(i).cast());
        _mm512_storeu_si512(
            dst.add(i).cast(),
            _mm512_xor_si512(v, _mm512_set1_epi8(-128)),
        );
        i += 64;
    }
    let left = n - i;
    if left == 0 {
    } else if left <= 16 {
        let v = _mm_maskz_loadu_epi8(((1u32 << left) - 1) as u16, s.add(i));
        _mm_storeu_si128(dst.add(i).cast(), _mm_xor_si128(v, _mm_set1_epi8(-128)));
    } else if left <= 32 {
        let v = _mm256_maskz_loadu_epi8(((1u64 << left) - 1) as u32, s.add(i));
        _mm256_storeu_si256(
            dst.add(i).cast(),
            _mm256_xor_si256(v, _mm256_set1_epi8(-128)),
        );
    } else {
        let v = _mm512_maskz_loadu_epi8((1u64 << left) - 1, s.add(i));
        _mm512_storeu_si512(
            dst.add(i).cast(),
            _mm512_xor_si512(v, _mm512_set1_epi8(-128)),
        );
    }
}

fn lane_mask(left: usize) -> __mmask16 {
    if left >= LANES {
        0xFFFF
    } else {
        (1u16 << left) - 1
    }
}

/// Requantises and stores `rows` rows of a tile whose first block starts at channel `c0`: with
/// one rounding when every block has it, else in two steps.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn store_tile<const R: usize, const NB: usize>(
    acc: &[[__m512i; NB]; R],
    blocks: [QuantAt; NB],
    o: &OutQuant,
    out: *mut i8,
    out_c: usize,
    c0: usize,
    rows: usize,
) {
    if blocks.iter().all(|q| q.is_exact()) {
        let fin = blocks.map(|q| q.single());
        store_tile_with(acc, fin, o, out, out_c, c0, rows);
    } else {
        let fin = blocks.map(|q| q.two_step());
        store_tile_with(acc, fin, o, out, out_c, c0, rows);
    }
}

/// [`store_tile`] with the blocks' finishing steps chosen.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn store_tile_with<const R: usize, const NB: usize, F: Finish>(
    acc: &[[__m512i; NB]; R],
    blocks: [F; NB],
    o: &OutQuant,
    out: *mut i8,
    out_c: usize,
    c0: usize,
    rows: usize,
) {
    if NB == 2 && out_c >= c0 + 2 * LANES {
        // Two full blocks, two rows at a time: one byte pack narrows both rows' 64 results and
        // one dword permute orders them (row r's 32 bytes, then row r + 1's).
        let rows = rows.min(R);
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let mut r = 0;
        while r < rows {
            let words = |r: usize| {
                let r = r.min(R - 1);
                let lo = blocks[0].finish(acc[r][0], o);
                let hi = blocks[NB - 1].finish(acc[r][NB - 1], o);
                _mm512_packs_epi32(lo, hi)
            };
            let mut bytes = _mm512_packs_epi16(words(r), words(r + 1));
            if o.clamps {
                let (min, max) = (_mm512_set1_epi8(o.min_i8), _mm512_set1_epi8(o.max_i8));
                bytes = _mm512_min_epi8(_mm512_max_epi8(bytes, min), max);
            }
            let both = _mm512_permutexvar_epi32(order, bytes);
            _mm256_storeu_si256(out.add(r * out_c + c0).cast(), _mm512_castsi512_si256(both));
            if r + 1 < rows {
                let second = _mm512_extracti64x4_epi64::<1>(both);
                _mm256_storeu_si256(out.add((r + 1) * out_c + c0).cast(), second);
            }
            r += 2;
        }
        return;
    }
    let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for b in 0..NB {
        let q = &blocks[b];
        let c = c0 + b * LANES;
        let mask = lane_mask(out_c - c);
        let rows = rows.min(R);
        // Rows in pairs: one narrowing gives both rows' 16 bytes.
        let mut r = 0;
        while r < rows {
            let lo = q.finish(acc[r][b], o);
            let hi = q.finish(acc[(r + 1).min(R - 1)][b], o);
            let both = _mm256_permutevar8x32_epi32(narrow_pair(lo, hi, o), order);
            let put = |row: usize, v: __m128i| {
                let dst = out.add(row * out_c + c);
                if mask == 0xFFFF {
                    _mm_storeu_si128(dst.cast(), v);
                } else {
                    _mm_mask_storeu_epi8(dst, mask, v);
                }
            };
            put(r, _mm256_castsi256_si128(both));
            if r + 1 < rows {
                put(r + 1, _mm256_extracti128_si256::<1>(both));
            }
            r += 2;
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
            min8: _mm256_set1_epi8(min.clamp(-128, 127) as i8),
            max8: _mm256_set1_epi8(max.clamp(-128, 127) as i8),
            min_i8: min.clamp(-128, 127) as i8,
            max_i8: max.clamp(-128, 127) as i8,
            clamps: min > -128 || max < 127,
        }
    }
}

/// Writes the window of the pixel at `pos` (at most 64 bytes, contiguous filter rows) to `row`
/// as one 64-byte store when it lies wholly inside the image; false (nothing written) when not.
///
/// # Safety
/// `input` has the size `p` implies; `row` is valid for 64 bytes of writes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn small_window(p: &ConvParams, input: &[i8], pos: Pos, row: *mut u8) -> bool {
    let (y0, x0) = pos.origin([p.stride_h, p.stride_w], [p.pad_top, p.pad_left]);
    let y_end = y0 + ((p.filter_h - 1) * p.dilation_h) as isize;
    if y0 < 0 || x0 < 0 || y_end >= p.in_h as isize || x0 as usize + p.filter_w > p.in_w {
        return false;
    }
    let run = p.filter_w * p.in_c;
    let mut v = _mm512_setzero_si512();
    for fy in 0..p.filter_h {
        let iy = y0 as usize + fy * p.dilation_h;
        let src = input
            .as_ptr()
            .add(((pos.b * p.in_h + iy) * p.in_w + x0 as usize) * p.in_c);
        // Lanes fy*run.. load from src: the masked-off lanes' addresses are never accessed.
        let lanes = ((1u64 << run) - 1) << (fy * run);
        v = _mm512_mask_loadu_epi8(v, lanes, src.wrapping_sub(fy * run));
    }
    _mm512_storeu_si512(row.cast(), _mm512_xor_si512(v, _mm512_set1_epi8(-128)));
    true
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
    let bb = block_bytes(LEVEL, depth);
    // Only the ROWS rows the tiles read and the slack are zeroed (not the whole 32 KiB).
    let mut storage = MaybeUninit::<[u8; PANEL_BYTES + PANEL_SLACK]>::uninit();
    let panel = storage.as_mut_ptr().cast::<u8>();
    panel.write_bytes(0, ROWS * row_bytes + PANEL_SLACK);
    // Padding taps read the zero point, biased like every input byte.
    let pad = (p.input_offset.wrapping_neg() as u8) ^ 0x80;
    let o = out_quant(p.output_offset, p.act_min, p.act_max);
    // A window of at most 64 bytes in contiguous filter rows (the 3-channel stem's 27) goes into
    // the panel as one store: separate overlapping stores per filter row would make the GEMM's
    // 4-byte loads that straddle two of them wait for both to retire.
    let small = depth <= 64 && p.dilation_w == 1 && p.filter_h > 1;
    let mut q0 = pixels.start;
    while q0 < pixels.end {
        let rows = ROWS.min(pixels.end - q0);
        let mut pos = Pos::of(q0, p.out_h, p.out_w);
        for r in 0..rows {
            let row = panel.add(r * row_bytes);
            if !(small && small_window(p, input, pos, row)) {
                im2col_row(p, input, q0 + r, pos, row, pad, |dst, src| {
                    biased_copy(dst, src)
                });
            }
            pos = pos.next(p.out_h, p.out_w);
        }
        let out = output.as_mut_ptr().add((q0 - pixels.start) * p.out_c);
        let panel = Panel {
            rows: panel.cast_const(),
            row_bytes,
            count: rows,
        };
        // A short last panel (the tail of a 7x7 layer's 49 pixels) runs smaller tiles.
        match rows {
            1 => panel.tiles::<1>(p, packed, bb, &o, out),
            2 => panel.tiles::<2>(p, packed, bb, &o, out),
            3 | 4 => panel.tiles::<4>(p, packed, bb, &o, out),
            _ => panel.tiles::<ROWS>(p, packed, bb, &o, out),
        }
        q0 += rows;
    }
}

/// A panel of im2col rows (biased input bytes, `row_bytes` apart).
struct Panel {
    rows: *const u8,
    row_bytes: usize,
    /// Rows that hold pixels (the tiles may read up to their `R`, zeroed).
    count: usize,
}

impl Panel {
    /// Multiplies the panel by every block of the packed weights, `R` rows at a time, and
    /// stores the requantised outputs of its `count` pixels at `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn tiles<const R: usize>(
        &self,
        p: &ConvParams,
        packed: &[u8],
        bb: usize,
        o: &OutQuant,
        out: *mut i8,
    ) {
        let groups = self.row_bytes / 4;
        let blocks = p.out_c.div_ceil(LANES);
        let wp = |j: usize| packed.as_ptr().add(j * bb);
        let weights = |j: usize| wp(j).add(LEVEL.quant_bytes());
        let bias = |j: usize| _mm512_loadu_si512(wp(j).cast());
        let quant = |j: usize| QuantAt {
            words: wp(j),
            stride: 4 * LANES,
            exact: wp(j).add(4 * QUANT_WORDS * LANES),
        };
        let mut j = 0;
        // Where the products outweigh the requantisation (inner dimension of 64 or more), four
        // blocks over half the rows at a time: each broadcast input feeds four products.
        while R == ROWS && groups >= 16 && j + 3 < blocks {
            for half in 0..2 {
                let first = half * (ROWS / 2);
                if first >= self.count {
                    break;
                }
                let acc = tile::<{ ROWS / 2 }, 4>(
                    self.rows.add(first * self.row_bytes),
                    self.row_bytes,
                    groups,
                    core::array::from_fn(|i| weights(j + i)),
                    core::array::from_fn(|i| bias(j + i)),
                );
                let out = out.add(first * p.out_c);
                let rows = self.count - first;
                for pair in 0..2 {
                    let acc2: [[__m512i; 2]; ROWS / 2] =
                        core::array::from_fn(|r| [acc[r][2 * pair], acc[r][2 * pair + 1]]);
                    let quants = [quant(j + 2 * pair), quant(j + 2 * pair + 1)];
                    store_tile(&acc2, quants, o, out, p.out_c, (j + 2 * pair) * LANES, rows);
                }
            }
            j += 4;
        }
        while j + 1 < blocks {
            let acc = tile::<R, 2>(
                self.rows,
                self.row_bytes,
                groups,
                [weights(j), weights(j + 1)],
                [bias(j), bias(j + 1)],
            );
            let quants = [quant(j), quant(j + 1)];
            store_tile(&acc, quants, o, out, p.out_c, j * LANES, self.count);
            j += 2;
        }
        if j < blocks {
            let acc = tile::<R, 1>(self.rows, self.row_bytes, groups, [weights(j)], [bias(j)]);
            store_tile(&acc, [quant(j)], o, out, p.out_c, j * LANES, self.count);
        }
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
        let out = &mut output[b * p.out_depth..(b + 1) * p.out_depth];
        let weights = |j: usize| packed.as_ptr().add(j * bb + LEVEL.quant_bytes());
        let bias = |j: usize| _mm512_loadu_si512(packed.as_ptr().add(j * bb).cast());
        let mut finish = |j: usize, acc: __m512i| {
            let mut sums = [0i32; LANES];
            _mm512_storeu_si512(sums.as_mut_ptr().cast(), acc);
            let first = j * LANES;
            let n = LANES.min(p.out_depth - first);
            for (lane, &s) in sums[..n].iter().enumerate() {
                let c = first + lane;
                out[c] = fully_connected::finish(p, s, scales[c]);
            }
        };
        // Four blocks at once: four independent `vpdpbusd` chains instead of one.
        let mut j = 0;
        while j + 4 <= blocks {
            let [acc] = tile::<1, 4>(
                panel.as_ptr(),
                row_bytes,
                groups,
                core::array::from_fn(|i| weights(j + i)),
                core::array::from_fn(|i| bias(j + i)),
            );
            for (i, a) in acc.into_iter().enumerate() {
                finish(j + i, a);
            }
            j += 4;
        }
        for j in j..blocks {
            let [[acc]] = tile::<1, 1>(panel.as_ptr(), row_bytes, groups, [weights(j)], [bias(j)]);
            finish(j, acc);
        }
    }
}

/// Output pixels per depthwise strip (within one output row): the strip's input column
/// pointers are computed once, and each block's requantisation constants loaded once.
const DW_STRIP: usize = 16;
/// Output pixels the depthwise kernel computes at once.
const DW_STEP: usize = 4;
const _: () = assert!(DW_STRIP.is_multiple_of(DW_STEP));
/// Input column pointers a strip may use (kernel rows x the columns its pixels span); a
/// filter whose strips need more (huge strides or dilations) runs on the portable kernels.
const DW_MAX_COLUMNS: usize = 512;
/// No kernel column: the pixel's window does not cover this input column.
const NO_TAP: u8 = u8::MAX;

/// Input columns `pixels` neighbouring output pixels of one row read, in each kernel row.
fn dw_span(p: &DepthwiseConvParams, pixels: usize) -> usize {
    (pixels - 1) * p.stride[1] + (p.filter_shape[2] - 1) * p.dilation[1] + 1
}

/// Whether the AVX-512 depthwise kernel takes this filter (see [`DW_MAX_COLUMNS`]).
pub(super) fn depthwise_fits(p: &DepthwiseConvParams) -> bool {
    let [_, kh, kw, _] = p.filter_shape;
    kw <= usize::from(NO_TAP)
        && p.stride[1] > 0
        && p.dilation[1] > 0
        && kh.saturating_mul(dw_span(p, DW_STRIP)) <= DW_MAX_COLUMNS
}

/// Depthwise convolution as a sliding window over each output row, 32 channels per block.
/// Each input column of a strip is loaded and widened to 16 bits once per pair of kernel rows,
/// the two rows interleaved; `vpdpwssd` then multiplies it by the interleaved weight pair of
/// every kernel column through which one of the step's output pixels sees it (exact: 9-bit by
/// 8-bit products, pair sums in 32 bits). `vpackssdw` undoes the interleaving before the store.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn depthwise(
    p: &DepthwiseConvParams,
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
    pixels: Range<usize>,
) {
    const L: usize = DW_PAIR_LANES;
    let [_, kh, kw, ch] = p.filter_shape;
    let [_, h, w, c] = p.input_shape;
    let blocks = ch.div_ceil(L);
    let bb = dw_pair_block_bytes(kh, kw);
    let zp_row = packed.as_ptr().add(blocks * bb).cast::<i8>();
    let o = out_quant(p.output_zero_point, p.act_min, p.act_max);
    let (stride, dilation) = (p.stride[1], p.dilation[1]);
    // For each input column of a step (relative to its first pixel's window), the kernel
    // column through which each of the step's pixels reads it.
    let mut taps_at = [[NO_TAP; DW_STEP]; DW_MAX_COLUMNS];
    let step_span = dw_span(p, DW_STEP);
    for (j, users) in taps_at.iter_mut().enumerate().take(step_span) {
        for (i, fx) in users.iter_mut().enumerate() {
            if let Some(t) = j.checked_sub(i * stride) {
                if t.is_multiple_of(dilation) && t / dilation < kw {
                    *fx = (t / dilation) as u8;
                }
            }
        }
    }
    let table = Table {
        size: [kh, kw],
        stride,
        taps_at: &taps_at[..step_span],
    };
    // The strip's input column pointers, kernel row by kernel row (`zp_row` outside the image).
    let span = dw_span(p, DW_STRIP);
    let mut cols = [zp_row; DW_MAX_COLUMNS];
    let [_, out_h, out_w, _] = p.output_shape;
    let mut pos = Pos::of(pixels.start, out_h, out_w);
    let mut q = pixels.start;
    while q < pixels.end {
        let n = (pixels.end - q).min(DW_STRIP).min(out_w - pos.ox);
        let (y0, x0) = pos.origin(p.stride, p.pad);
        for fy in 0..kh {
            let iy = y0 + (fy * p.dilation[0]) as isize;
            let row = (iy >= 0 && iy < h as isize)
                .then(|| input.as_ptr().add((pos.b * h + iy as usize) * w * c));
            for (j, col) in cols[fy * span..(fy + 1) * span].iter_mut().enumerate() {
                let ix = x0 + j as isize;
                *col = match row {
                    Some(row) if ix >= 0 && ix < w as isize => row.add(ix as usize * c),
                    _ => zp_row,
                };
            }
        }
        let out = output.as_mut_ptr().add((q - pixels.start) * ch);
        for j in 0..blocks {
            let blk = packed.as_ptr().add(j * bb);
            let half = |k: usize| QuantAt {
                words: blk.add(4 * 16 * k),
                stride: 4 * L,
                exact: blk.add(4 * QUANT_WORDS * L + k * EXACT_BYTES),
            };
            let (lo, hi) = (half(0), half(1));
            let strip = DwStrip {
                cols: &cols[..kh * span],
                span,
                pixels: n,
                block: blk,
                channel: j * L,
                channels: ch,
                out,
            };
            if lo.is_exact() && hi.is_exact() {
                strip.run_with(table, dilation, [lo.single(), hi.single()], &o);
            } else {
                strip.run_with(table, dilation, [lo.two_step(), hi.two_step()], &o);
            }
        }
        q += n;
        for _ in 0..n {
            pos = pos.next(out_h, out_w);
        }
    }
}

/// `acc + a · b` over int16 pairs (`vpdpwssd`), written as one instruction on purpose: LLVM's
/// machine combiner otherwise splits most of them into `vpmaddwd` + `vpaddd` to shorten the
/// accumulator chains, which doubles the depthwise kernel's multiply-add instructions.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn dpwssd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let mut acc = acc;
    core::arch::asm!(
        "vpdpwssd {acc}, {a}, {b}",
        acc = inout(zmm_reg) acc,
        a = in(zmm_reg) a,
        b = in(zmm_reg) b,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}

/// Where a step's input columns meet its pixels' kernel columns: the common filters as
/// constants (so the step unrolls completely), any other from a table.
trait DwWindow: Copy {
    /// The filter's rows and columns.
    fn size(self) -> [usize; 2];
    /// Calls `f` on each input column the step's pixels read (per kernel row), in order.
    fn each_column(self, f: impl FnMut(usize));
    /// The stride along a row.
    fn stride(self) -> usize;
    /// The kernel column through which pixel `i` of the step reads the step's input column `j`.
    fn tap(self, j: usize, i: usize) -> Option<usize>;
}

/// A `KH x KW` filter with row stride `S` and no dilation along the row.
#[derive(Clone, Copy)]
struct Fixed<const KH: usize, const KW: usize, const S: usize>;

impl<const KH: usize, const KW: usize, const S: usize> Fixed<KH, KW, S> {
    const SPAN: usize = (DW_STEP - 1) * S + KW;
}

/// Runs `$body` with `$j` bound to each constant 0, 1, .. below `$n` (at most 16): written out,
/// so that a constant `$n` leaves straight-line code (LLVM does not always unroll the loop).
macro_rules! unrolled {
    ($n:expr, |$j:ident| $body:block) => {
        unrolled!(@ $n, $j, $body, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@ $n:expr, $j:ident, $body:block, $($k:literal)*) => {{
        let n: usize = $n;
        debug_assert!(n <= 16);
        $( if $k < n { let $j: usize = $k; $body } )*
    }};
}

impl<const KH: usize, const KW: usize, const S: usize> DwWindow for Fixed<KH, KW, S> {
    #[inline(always)]
    fn size(self) -> [usize; 2] {
        [KH, KW]
    }
    #[inline(always)]
    fn each_column(self, mut f: impl FnMut(usize)) {
        const { assert!(Self::SPAN <= 16) };
        unrolled!(Self::SPAN, |j| { f(j) });
    }
    #[inline(always)]
    fn stride(self) -> usize {
        S
    }
    #[inline(always)]
    fn tap(self, j: usize, i: usize) -> Option<usize> {
        j.checked_sub(i * S).filter(|&t| t < KW)
    }
}

/// Any other filter: the kernel columns tabulated per input column (see `depthwise`).
#[derive(Clone, Copy)]
struct Table<'a> {
    size: [usize; 2],
    stride: usize,
    taps_at: &'a [[u8; DW_STEP]],
}

impl DwWindow for Table<'_> {
    #[inline(always)]
    fn size(self) -> [usize; 2] {
        self.size
    }
    #[inline(always)]
    fn each_column(self, f: impl FnMut(usize)) {
        (0..self.taps_at.len()).for_each(f);
    }
    #[inline(always)]
    fn stride(self) -> usize {
        self.stride
    }
    #[inline(always)]
    fn tap(self, j: usize, i: usize) -> Option<usize> {
        let t = self.taps_at[j][i];
        (t != NO_TAP).then_some(usize::from(t))
    }
}

/// One block of 32 channels over a strip of output pixels in one row.
struct DwStrip<'a> {
    /// Input column `j` of kernel row `fy` at `cols[fy * span + j]` (channel 0).
    cols: &'a [*const i8],
    span: usize,
    pixels: usize,
    /// The packed block: bias words, then (at `DW_PAIR_QUANT_BYTES`) the weight pairs.
    block: *const u8,
    channel: usize,
    channels: usize,
    /// The strip's first output pixel.
    out: *mut i8,
}

impl DwStrip<'_> {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn run<F: Finish, W: DwWindow, const FULL: bool>(
        &self,
        window: W,
        fin: [F; 2],
        o: &OutQuant,
    ) {
        const L: usize = DW_PAIR_LANES;
        let [kh, kw] = window.size();
        let left = self.channels - self.channel;
        let mask: __mmask32 = if FULL {
            u32::MAX
        } else {
            (1u32 << left.min(L - 1)) - 1
        };
        let bias = |h: usize| _mm512_loadu_si512(self.block.add(4 * 16 * h).cast());
        let weights = self.block.add(DW_PAIR_QUANT_BYTES);
        let widened = |fy: usize, col: usize| {
            let src = self.cols[fy * self.span + col].add(self.channel);
            if FULL {
                _mm512_cvtepi8_epi16(_mm256_loadu_si256(src.cast()))
            } else {
                _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, src))
            }
        };
        // DW_STEP pixels at a time: a short last step computes pixels past the strip (their
        // columns are in `cols` too) and stores only the strip's.
        let mut k = 0;
        while k < self.pixels {
            let mut acc = [[bias(0), bias(1)]; DW_STEP];
            for r in 0..kh.div_ceil(2) {
                let row_weights = weights.add(r * kw * 128);
                window.each_column(|j| {
                    let col = k * window.stride() + j;
                    let top = widened(2 * r, col);
                    let below = match 2 * r + 1 < kh {
                        true => widened(2 * r + 1, col),
                        false => _mm512_setzero_si512(),
                    };
                    let (lo, hi) = (
                        _mm512_unpacklo_epi16(top, below),
                        _mm512_unpackhi_epi16(top, below),
                    );
                    for (i, a) in acc.iter_mut().enumerate() {
                        if let Some(fx) = window.tap(j, i) {
                            let wt = row_weights.add(fx * 128);
                            a[0] = dpwssd(a[0], lo, _mm512_loadu_si512(wt.cast()));
                            a[1] = dpwssd(a[1], hi, _mm512_loadu_si512(wt.add(64).cast()));
                        }
                    }
                });
            }
            for (i, a) in acc.iter().enumerate().take(self.pixels - k) {
                // The packing undoes the tap interleaving: channels come out in order.
                let lo = fin[0].finish(a[0], o);
                let hi = fin[1].finish(a[1], o);
                let bytes = narrow_pair(lo, hi, o);
                let dst = self.out.add((k + i) * self.channels + self.channel);
                if FULL {
                    _mm256_storeu_si256(dst.cast(), bytes);
                } else {
                    _mm256_mask_storeu_epi8(dst.cast(), mask, bytes);
                }
            }
            k += DW_STEP;
        }
    }

    /// Runs the strip with `fin` on the window type that fits the filter, with unmasked loads
    /// and stores for a full block of channels.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn run_with<F: Finish>(&self, table: Table, dilation: usize, fin: [F; 2], o: &OutQuant) {
        match (table.size, table.stride, dilation) {
            ([3, 3], 1, 1) => self.run_on(Fixed::<3, 3, 1>, fin, o),
            ([3, 3], 2, 1) => self.run_on(Fixed::<3, 3, 2>, fin, o),
            ([5, 5], 1, 1) => self.run_on(Fixed::<5, 5, 1>, fin, o),
            ([5, 5], 2, 1) => self.run_on(Fixed::<5, 5, 2>, fin, o),
            _ => self.run_on(table, fin, o),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn run_on<F: Finish, W: DwWindow>(&self, window: W, fin: [F; 2], o: &OutQuant) {
        match self.channels - self.channel >= DW_PAIR_LANES {
            true => self.run::<_, _, true>(window, fin, o),
            false => self.run::<_, _, false>(window, fin, o),
        }
    }
}

/// Element-wise int8 ADD (equal shapes): each input `MulSmallerThanOne((x - zp) << 20)`, summed,
/// then requantised to the output, as `add::eval` computes every element.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn add(p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) {
    let [za, zb, zo] = p.zero_points;
    let qa = splat_quant(-za, p.a_multiplier, add::LEFT_SHIFT);
    let qb = splat_quant(-zb, p.b_multiplier, add::LEFT_SHIFT);
    let qo = splat_quant(0, p.output_multiplier, 0);
    let o = out_quant(zo, p.act_min, p.act_max);
    let n = output.len();
    let mut i = 0;
    while i < n {
        let mask = lane_mask(n - i);
        let x = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, a.as_ptr().add(i)));
        let y = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, b.as_ptr().add(i)));
        let sum = _mm512_add_epi32(scale(x, &qa), scale(y, &qb));
        store16(output.as_mut_ptr().add(i), requantize(sum, &qo, &o), mask);
        i += LANES;
    }
}

/// A 256-entry `i32` table as four byte planes (plane `k` holds byte `k` of every entry), the
/// form `vpermi2b` looks up 64 entries at a time in.
#[repr(C, align(64))]
struct Planes([[u8; 256]; 4]);

impl Planes {
    /// The rescaled value ADD gives each int8 input value (`scale` of `x` with the input's
    /// offset, left shift and multiplier), indexed by the value's byte; and the largest
    /// magnitude among them.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn of_input(q: &BlockQuant) -> (Self, i64) {
        let mut planes = Planes([[0; 256]; 4]);
        // Unsigned, so that |i32::MIN| = 2^31 counts.
        let mut largest = _mm512_setzero_si512();
        let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for j in 0..16 {
            // Bytes 16j..16j+16 read as the int8 values they encode.
            let byte = _mm512_add_epi32(iota, _mm512_set1_epi32(16 * j as i32));
            let x = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(byte));
            let t = scale(x, q);
            largest = _mm512_max_epu32(largest, _mm512_abs_epi32(t));
            for (k, plane) in planes.0.iter_mut().enumerate() {
                let bytes =
                    _mm512_cvtepi32_epi8(_mm512_srlv_epi32(t, _mm512_set1_epi32(8 * k as i32)));
                _mm_storeu_si128(plane.as_mut_ptr().add(16 * j).cast(), bytes);
            }
        }
        (planes, i64::from(_mm512_reduce_max_epu32(largest)))
    }

    /// The entries of 64 indices as four vectors of 16 `i32`: per 128-bit lane `L`, entries
    /// `16L..16L+3`, `16L+4..`, `16L+8..` and `16L+12..` (the order `vpackssdw` then
    /// `vpacksswb` put back in sequence).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    #[inline]
    unsafe fn lookup(&self, idx: __m512i) -> [__m512i; 4] {
        let upper = _mm512_movepi8_mask(idx);
        let plane = |k: usize| {
            let p = self.0[k].as_ptr();
            let part = |at: usize| _mm512_loadu_si512(p.add(at).cast());
            let lo = _mm512_permutex2var_epi8(part(0), idx, part(64));
            let hi = _mm512_permutex2var_epi8(part(128), idx, part(192));
            _mm512_mask_blend_epi8(upper, lo, hi)
        };
        let [b0, b1, b2, b3] = [plane(0), plane(1), plane(2), plane(3)];
        let (w01_lo, w01_hi) = (_mm512_unpacklo_epi8(b0, b1), _mm512_unpackhi_epi8(b0, b1));
        let (w23_lo, w23_hi) = (_mm512_unpacklo_epi8(b2, b3), _mm512_unpackhi_epi8(b2, b3));
        [
            _mm512_unpacklo_epi16(w01_lo, w23_lo),
            _mm512_unpackhi_epi16(w01_lo, w23_lo),
            _mm512_unpacklo_epi16(w01_hi, w23_hi),
            _mm512_unpackhi_epi16(w01_hi, w23_hi),
        ]
    }
}

/// [`add`] with each input's rescaling looked up: it depends on the int8 value alone, so the
/// 256 possible results are computed once per call (by the same `scale`) and 64 elements at a
/// time take theirs with `vpermi2b`; only the output's requantisation is per element, in one
/// rounding where that is exact (and `single` allows it: the tests run both forms).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
pub(super) unsafe fn add_by_tables(
    p: &AddParams,
    a: &[i8],
    b: &[i8],
    output: &mut [i8],
    single: bool,
) {
    let [za, zb, zo] = p.zero_points;
    let (ta, bound_a) = Planes::of_input(&splat_quant(-za, p.a_multiplier, add::LEFT_SHIFT));
    let (tb, bound_b) = Planes::of_input(&splat_quant(-zb, p.b_multiplier, add::LEFT_SHIFT));
    let tables = [ta, tb];
    let o = out_quant(zo, p.act_min, p.act_max);
    let m = p.output_multiplier;
    match exact_requant(m.multiplier, m.shift, zo, bound_a + bound_b).filter(|_| single) {
        Some((k, d, s)) => {
            let (k, d, s) = (
                _mm512_set1_epi64(k),
                _mm512_set1_epi64(d),
                _mm512_set1_epi64(s),
            );
            let mult = _mm512_set1_epi32(m.multiplier);
            let fin = Exact {
                mult,
                mult_odd: mult,
                k: [k; 2],
                d: [d; 2],
                s: [s; 2],
            };
            add_looked_up(&tables, fin, &o, a, b, output);
        }
        None => add_looked_up(&tables, splat_quant(0, m, 0), &o, a, b, output),
    }
}

/// The loop of [`add_by_tables`], 64 elements at a time, finishing each sum with `fin`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
#[inline]
unsafe fn add_looked_up<F: Finish>(
    tables: &[Planes; 2],
    fin: F,
    o: &OutQuant,
    a: &[i8],
    b: &[i8],
    output: &mut [i8],
) {
    let n = output.len();
    let mut i = 0;
    while i < n {
        let left = n - i;
        let mask = if left >= 64 {
            u64::MAX
        } else {
            (1u64 << left) - 1
        };
        let x = _mm512_maskz_loadu_epi8(mask, a.as_ptr().add(i));
        let y = _mm512_maskz_loadu_epi8(mask, b.as_ptr().add(i));
        let (sx, sy) = (tables[0].lookup(x), tables[1].lookup(y));
        let r: [__m512i; 4] =
            core::array::from_fn(|k| fin.finish(_mm512_add_epi32(sx[k], sy[k]), o));
        // Saturating packs, then the clamp on bytes (equal to clamping first: the bounds lie
        // inside int8 and saturation is monotone).
        let mut bytes = _mm512_packs_epi16(
            _mm512_packs_epi32(r[0], r[1]),
            _mm512_packs_epi32(r[2], r[3]),
        );
        if o.clamps {
            let (lo, hi) = (_mm512_set1_epi8(o.min_i8), _mm512_set1_epi8(o.max_i8));
            bytes = _mm512_min_epi8(_mm512_max_epi8(bytes, lo), hi);
        }
        _mm512_mask_storeu_epi8(output.as_mut_ptr().add(i), mask, bytes);
        i += 64;
    }
}
