//! x86_64 kernels for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with AVX2 or AVX-512 VNNI,
//! chosen at run time (std builds detect the CPU once).
//!
//! Unlike the in-place paths of the parent module, these read weights that `pack_*` rearranged
//! at init into the op's blob (the arena's persistent part): per block of output channels, the
//! requantisation constants then the weights in the order the inner loop loads them. The packed
//! form folds the input offset into the bias (`sum((x + off) * w) = sum(x * w) + off * sum(w)`),
//! which is exact in 32-bit arithmetic, and padding taps read the input zero point, for which
//! `x + off = 0`, so they add nothing, as in the reference.
//!
//! - AVX-512 (F, BW, VL, VNNI): 16 channels per block; `vpdpbusd` multiplies unsigned by signed
//!   bytes, so inputs are biased by 128 (`x ^ 0x80`) and the bias absorbs `-128 * sum(w)`.
//! - AVX2: 8 channels per block; `vpmaddwd` on 16-bit values (input offset added before the
//!   multiply, weights widened at pack time), since `vpmaddubsw` saturates and would not be exact.

use core::ops::Range;

use crate::kernels::add::AddParams;
use crate::kernels::conv::ConvParams;
use crate::kernels::depthwise_conv::DepthwiseConvParams;
use crate::kernels::fully_connected::FcParams;

mod avx2;
mod avx512;

/// The instruction-set level the x86 kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX2 (Haswell and later, Zen).
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (Ice Lake and later, Zen 4).
    Avx512Vnni,
}

impl Level {
    /// The best level this CPU supports (`None`: neither), detected once per process.
    #[cfg(feature = "std")]
    pub fn detect() -> Option<Self> {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<Option<Level>> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512vnni")
            {
                Some(Level::Avx512Vnni)
            } else if std::is_x86_feature_detected!("avx2") {
                Some(Level::Avx2)
            } else {
                None
            }
        })
    }

    /// Without std there is no run-time detection: only what the build targets.
    #[cfg(not(feature = "std"))]
    pub fn detect() -> Option<Self> {
        if cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512vnni"
        )) {
            Some(Level::Avx512Vnni)
        } else if cfg!(target_feature = "avx2") {
            Some(Level::Avx2)
        } else {
            None
        }
    }

    /// Whether this CPU also has AVX-512 VBMI (byte permutes across a whole vector: Ice Lake,
    /// Zen 4 and later), which ADD's table lookups use; detected once per process.
    #[cfg(feature = "std")]
    pub fn vbmi() -> bool {
        use std::sync::OnceLock;
        static VBMI: OnceLock<bool> = OnceLock::new();
        *VBMI.get_or_init(|| {
            Self::detect() == Some(Level::Avx512Vnni) && std::is_x86_feature_detected!("avx512vbmi")
        })
    }

    /// Without std: whether the build targets VBMI.
    #[cfg(not(feature = "std"))]
    pub fn vbmi() -> bool {
        Self::detect() == Some(Level::Avx512Vnni) && cfg!(target_feature = "avx512vbmi")
    }

    /// True when this CPU can run `self` (a level chosen by a caller, not detected).
    pub fn available(self) -> bool {
        matches!(
            (self, Self::detect()),
            (_, Some(Level::Avx512Vnni)) | (Level::Avx2, Some(Level::Avx2))
        )
    }

    /// Output channels per packed block.
    const fn lanes(self) -> usize {
        match self {
            Level::Avx2 => 8,
            Level::Avx512Vnni => 16,
        }
    }

    /// Inner-dimension values that one multiply instruction sums per lane.
    const fn group(self) -> usize {
        match self {
            Level::Avx2 => 2,
            Level::Avx512Vnni => 4,
        }
    }

    /// Bytes per packed weight.
    const fn weight_bytes(self) -> usize {
        match self {
            Level::Avx2 => 2,
            Level::Avx512Vnni => 1,
        }
    }

    /// Bytes of a GEMM block's requantisation constants: the [`QUANT_WORDS`] per lane, then
    /// (AVX-512) the single-rounding constants of [`put_exact`].
    const fn quant_bytes(self) -> usize {
        match self {
            Level::Avx2 => 4 * QUANT_WORDS * 8,
            Level::Avx512Vnni => 4 * QUANT_WORDS * 16 + EXACT_BYTES,
        }
    }
}

/// Requantisation words per channel in a packed block: bias, multiplier, left shift, right shift.
const QUANT_WORDS: usize = 4;

/// Largest panel (pixels x padded inner dimension) the convolution keeps on the stack (plus
/// [`PANEL_SLACK`]).
pub const PANEL_BYTES: usize = 32 * 1024;
/// Pixels per panel (rows of the micro-kernel).
pub const ROWS: usize = 8;
/// Most filter taps the depthwise kernel takes (8x8).
pub const MAX_TAPS: usize = 64;

/// Inner (accumulated) length of a convolution: `filter_h * filter_w * in_c`.
fn conv_depth(p: &ConvParams) -> usize {
    p.filter_h * p.filter_w * p.in_c
}

/// Panel row length in elements (the inner dimension rounded up to the level's group).
fn padded_depth(level: Level, depth: usize) -> usize {
    depth.div_ceil(level.group()) * level.group()
}

/// Bytes of one packed block of `lanes` channels over an inner dimension of `depth`.
fn block_bytes(level: Level, depth: usize) -> usize {
    level.quant_bytes() + padded_depth(level, depth) * level.lanes() * level.weight_bytes()
}

/// Packed bytes for a GEMM-shaped operator (`out` channels over `depth`), or 0 when the panel
/// of `ROWS` rows would not fit in [`PANEL_BYTES`].
fn gemm_packed_bytes(level: Level, out: usize, depth: usize) -> usize {
    let row = padded_depth(level, depth) * level.weight_bytes();
    if depth == 0 || out == 0 || ROWS * row > PANEL_BYTES {
        return 0;
    }
    out.div_ceil(level.lanes()) * block_bytes(level, depth)
}

/// Packed bytes for CONV_2D (0: no packed path for this shape).
pub fn conv_packed_bytes(level: Level, p: &ConvParams) -> usize {
    gemm_packed_bytes(level, p.out_c, conv_depth(p))
}

/// Packed bytes for FULLY_CONNECTED (0: no packed path for this shape).
pub fn fc_packed_bytes(level: Level, p: &FcParams) -> usize {
    gemm_packed_bytes(level, p.out_depth, p.accum_depth)
}

/// Packed bytes for DEPTHWISE_CONV_2D (0: no packed path; only depth multiplier 1).
pub fn depthwise_packed_bytes(level: Level, p: &DepthwiseConvParams) -> usize {
    let [_, kh, kw, ch] = p.filter_shape;
    let taps = kh * kw;
    if p.depth_multiplier != 1 || taps == 0 || taps > MAX_TAPS || ch == 0 {
        return 0;
    }
    match level {
        Level::Avx2 => {
            let blocks = ch.div_ceil(level.lanes());
            // Per block: quantisation words then one i32 weight per tap and lane; then the
            // zero-point row that padding taps read (one block of slack for full-width loads).
            blocks * 4 * level.lanes() * (QUANT_WORDS + taps) + (blocks + 1) * level.lanes()
        }
        Level::Avx512Vnni if avx512::depthwise_fits(p) => {
            let blocks = ch.div_ceil(DW_PAIR_LANES);
            blocks * dw_pair_block_bytes(kh, kw) + (blocks + 1) * DW_PAIR_LANES
        }
        // A strip's input columns would not fit the kernel's table: the portable kernels.
        Level::Avx512Vnni => 0,
    }
}

/// Channels per block of the AVX-512 depthwise kernel, which multiplies 16-bit pairs of taps
/// (`vpmaddwd`) for 32 channels at once.
pub const DW_PAIR_LANES: usize = 32;

/// Bytes of an AVX-512 depthwise block's requantisation constants: the quantisation words for
/// 32 lanes, then the single-rounding constants of each 16-lane half.
const DW_PAIR_QUANT_BYTES: usize = 4 * QUANT_WORDS * DW_PAIR_LANES + 2 * EXACT_BYTES;

/// Bytes of one AVX-512 depthwise block of a `kh x kw` filter: its requantisation constants,
/// then per pair of kernel rows and kernel column two vectors of 16 int16 weight pairs (see
/// [`pack_depthwise_pairs`]).
fn dw_pair_block_bytes(kh: usize, kw: usize) -> usize {
    DW_PAIR_QUANT_BYTES + kh.div_ceil(2) * kw * 2 * 64
}

/// The channel (within its block of 32) in accumulator lane `i` of the AVX-512 depthwise kernel:
/// interleaving two taps' 16-bit values within 128-bit lanes (`vpunpck{l,h}wd`) puts channels
/// 8k..8k+3 in the low vector's lanes 4k..4k+3 and 8k+4..8k+7 in the high vector's (`i >= 16`).
fn dw_pair_channel(i: usize) -> usize {
    let (half, i) = (i / 16, i % 16);
    8 * (i / 4) + 4 * half + i % 4
}

fn put_i32(dst: &mut [u8], word: usize, v: i32) {
    if let Some(s) = dst.get_mut(4 * word..4 * word + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Bytes of one 16-lane half's single-rounding constants: six vectors of 8 `i64`, `K`, `D` and
/// the shift `s`, each for the even lanes then the odd ones (`vpmuldq` multiplies those apart).
const EXACT_BYTES: usize = 6 * 64;

/// Where the even lanes' shifts start within a half's single-rounding constants: all 0 when
/// the half takes the two-step path (a real shift is at least 31).
const EXACT_SHIFTS: usize = 4 * 64;

/// A lane's single-rounding constants `(K, D, s)`: with `p = acc * multiplier` in 64 bits,
/// `MultiplyByQuantizedMultiplier(acc) + offset` is `(p + K - [p < 0] * D) >> s`.
///
/// TFLite rounds twice: `h = (p + 2^30) >> 31` (its truncating division with a sign-dependent
/// nudge is this floor), then `h / 2^e` half away from zero, which is `(h + 2^(e-1) - [h < 0])
/// >> e` for `e > 0`. Nested floors of exact divisions merge: the result is
/// `(p + 2^30 + 2^(30+e) - [h < 0] * 2^31 + offset * 2^(31+e)) >> (31+e)`; `[h < 0]` is
/// `[p < -2^30]`, and for `-2^30 <= p < 0` both forms give 0, so `[p < 0]` serves. So does
/// `[acc < 0]`, which the kernels take (one AND of the accumulator with `D`): with `m > 0` it
/// is `[p < 0]`, and with `m = 0` (`p = 0`) subtracting `2^31` from `K` leaves the quotient.
///
/// `None` when the lane needs the two-step path: a left shift (whose 32-bit product may wrap),
/// a right shift past 23 (`K` would leave 64 bits), or an accumulator `bound` that could push
/// `h + offset` past the 32 bits the reference adds in.
fn exact_requant(multiplier: i32, shift: i32, offset: i32, bound: i64) -> Option<(i64, i64, i64)> {
    let (left, e) = split_shift(shift);
    if left != 0 || e > 23 || bound >= (1 << 31) - 256 || multiplier < 0 {
        return None;
    }
    let s = 31 + e as i64;
    let round = if e > 0 { 1i64 << (30 + e) } else { 0 };
    let k = (1i64 << 30) + round + ((offset as i64) << s);
    let d = if e > 0 { 1i64 << 31 } else { 0 };
    Some((k, d, s))
}

/// Writes one 16-lane half's single-rounding constants (`EXACT_BYTES` at `dst`): `lane(i)` gives
/// lane `i`'s channel `(multiplier, shift, bound)`, or `None` past the last channel. If any
/// channel needs the two-step path, every shift stays 0, which tells the kernel to take it.
fn put_exact(dst: &mut [u8], offset: i32, mut lane: impl FnMut(usize) -> Option<(i32, i32, i64)>) {
    let mut words = [[0i64; 16]; 3];
    for i in 0..16 {
        let (m, shift, bound) = lane(i).unwrap_or((0, 0, 0));
        let Some((k, d, s)) = exact_requant(m, shift, offset, bound) else {
            dst[..EXACT_BYTES].fill(0);
            return;
        };
        // Even lanes first, then odd: vector v = 2 * kind + (i & 1), element i / 2 (so the
        // shifts start at EXACT_SHIFTS).
        for (kind, v) in [k, d, s].into_iter().enumerate() {
            words[kind][(i & 1) * 8 + i / 2] = v;
        }
    }
    for (at, v) in words.iter().flatten().enumerate() {
        dst[8 * at..8 * at + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// The largest `|acc|` a channel can reach: `|bias| + 255 * sum(|w|)` (inputs after their offset
/// lie in -255..=255).
fn acc_bound(bias: i32, weights: impl Iterator<Item = i32>) -> i64 {
    (bias as i64).abs() + 255 * weights.map(|w| (w as i64).abs()).sum::<i64>()
}

/// The reference's shift split (`quant::split_shift`) after CONV_2D's clamp to -31..=30 (which
/// changes no shift that init accepts, so it serves the other operators too).
fn split_shift(shift: i32) -> (i32, i32) {
    crate::quant::split_shift(shift.clamp(-31, 30))
}

/// Writes a block's quantisation words: `bias(c)`, multiplier, left and right shift per lane
/// (lanes past `n` are zero: they compute nothing that is stored).
fn put_quant(
    dst: &mut [u8],
    lanes: usize,
    channels: Range<usize>,
    mut per_channel: impl FnMut(usize) -> (i32, i32, i32),
) {
    for (lane, c) in channels.enumerate() {
        let (bias, m, shift) = per_channel(c);
        let (ls, rs) = split_shift(shift);
        put_i32(dst, lane, bias);
        put_i32(dst, lanes + lane, m);
        put_i32(dst, 2 * lanes + lane, ls);
        put_i32(dst, 3 * lanes + lane, rs);
    }
}

/// Packs a GEMM-shaped weight matrix (`out` rows of `depth` int8, row-major) for `level`.
/// `quant(c)` gives the channel's bias, multiplier and shift. The AVX-512 layout folds
/// `(input_offset - 128) * sum(w)` into the bias; AVX2 adds the offset to the panel instead.
/// `output_offset`: the offset the AVX-512 single-rounding constants fold in (`None`: the
/// operator requantises otherwise, and those constants stay 0).
#[allow(clippy::too_many_arguments)] // one packing for CONV_2D and FULLY_CONNECTED
fn pack_gemm(
    level: Level,
    out: usize,
    depth: usize,
    input_offset: i32,
    output_offset: Option<i32>,
    weights: &[i8],
    mut quant: impl FnMut(usize) -> (i32, i32, i32),
    dst: &mut [u8],
) {
    let lanes = level.lanes();
    let group = level.group();
    let bytes = block_bytes(level, depth);
    let kp = padded_depth(level, depth);
    for (blk, chunk) in dst.chunks_mut(bytes).enumerate().take(out.div_ceil(lanes)) {
        chunk.fill(0);
        let first = blk * lanes;
        let channels = first..(first + lanes).min(out);
        let row = |c: usize| weights.get(c * depth..(c + 1) * depth).unwrap_or(&[]);
        put_quant(chunk, lanes, channels.clone(), |c| {
            let (bias, m, s) = quant(c);
            let folded = match level {
                Level::Avx512Vnni => {
                    let sum = row(c).iter().fold(0i32, |a, &w| a.wrapping_add(w as i32));
                    bias.wrapping_add(sum.wrapping_mul(input_offset.wrapping_sub(128)))
                }
                Level::Avx2 => bias,
            };
            (folded, m, s)
        });
        if let (Level::Avx512Vnni, Some(offset)) = (level, output_offset) {
            let lane = |i: usize| {
                let c = first + i;
                (c < out).then(|| {
                    let (bias, m, s) = quant(c);
                    (m, s, acc_bound(bias, row(c).iter().map(|&w| w as i32)))
                })
            };
            put_exact(&mut chunk[4 * QUANT_WORDS * lanes..], offset, lane);
        }
        let w = &mut chunk[level.quant_bytes()..];
        for (lane, c) in channels.enumerate() {
            for (k, &v) in row(c).iter().enumerate() {
                // Element (k / group, lane, k % group) of the [kp/group][lanes][group] layout.
                let at = (k / group * lanes + lane) * group + k % group;
                match level {
                    Level::Avx512Vnni => w[at] = v as u8,
                    Level::Avx2 => w[2 * at..2 * at + 2].copy_from_slice(&(v as i16).to_le_bytes()),
                }
            }
        }
        debug_assert_eq!(w.len(), kp * lanes * level.weight_bytes());
    }
}

/// Packs CONV_2D's OHWI filter (see [`conv_packed_bytes`]).
pub fn pack_conv(
    level: Level,
    p: &ConvParams,
    filter: &[i8],
    quant: impl FnMut(usize) -> (i32, i32, i32),
    dst: &mut [u8],
) {
    pack_gemm(
        level,
        p.out_c,
        conv_depth(p),
        p.input_offset,
        Some(p.output_offset),
        filter,
        quant,
        dst,
    );
}

/// Packs FULLY_CONNECTED's filter (the quantisation words hold the bias only: FC requantises in
/// floating point from the op's own scales).
pub fn pack_fc(
    level: Level,
    p: &FcParams,
    filter: &[i8],
    bias: impl Fn(usize) -> i32,
    dst: &mut [u8],
) {
    pack_gemm(
        level,
        p.out_depth,
        p.accum_depth,
        p.input_offset,
        None,
        filter,
        |c| (bias(c), 0, 0),
        dst,
    );
}

/// Packs DEPTHWISE_CONV_2D's `[1, KH, KW, C]` filter: per block the quantisation words (bias
/// with `input_offset * sum(w)` folded in), then `i32` weights `[tap][lane]`; then the
/// zero-point row.
pub fn pack_depthwise(
    level: Level,
    p: &DepthwiseConvParams,
    filter: &[i8],
    mut quant: impl FnMut(usize) -> (i32, i32, i32),
    dst: &mut [u8],
) {
    if level == Level::Avx512Vnni {
        return pack_depthwise_pairs(p, filter, quant, dst);
    }
    let lanes = level.lanes();
    let [_, kh, kw, ch] = p.filter_shape;
    let taps = kh * kw;
    let blocks = ch.div_ceil(lanes);
    let bytes = 4 * lanes * (QUANT_WORDS + taps);
    let input_offset = -p.input_zero_point;
    let (body, zp_row) = dst.split_at_mut((blocks * bytes).min(dst.len()));
    zp_row.fill(p.input_zero_point as i8 as u8);
    for (blk, chunk) in body.chunks_mut(bytes).enumerate() {
        chunk.fill(0);
        let first = blk * lanes;
        let channels = first..(first + lanes).min(ch);
        let w = |t: usize, c: usize| filter.get(t * ch + c).copied().unwrap_or(0) as i32;
        put_quant(chunk, lanes, channels.clone(), |c| {
            let (bias, m, s) = quant(c);
            let sum = (0..taps).fold(0i32, |a, t| a.wrapping_add(w(t, c)));
            (bias.wrapping_add(sum.wrapping_mul(input_offset)), m, s)
        });
        for (lane, c) in channels.enumerate() {
            for t in 0..taps {
                put_i32(chunk, (QUANT_WORDS + t) * lanes + lane, w(t, c));
            }
        }
    }
}

/// The AVX-512 depthwise layout (see [`dw_pair_channel`]): per block of 32 channels the
/// quantisation words in lane order, then for each pair of kernel rows `(2r, 2r + 1)` and each
/// kernel column `x` the low and high vectors of `(w[2r][x][c], w[2r + 1][x][c])` int16 pairs
/// (zero past the last kernel row and the last channel). Pairing taps vertically lets one
/// widened input column serve every output pixel whose window covers it.
fn pack_depthwise_pairs(
    p: &DepthwiseConvParams,
    filter: &[i8],
    mut quant: impl FnMut(usize) -> (i32, i32, i32),
    dst: &mut [u8],
) {
    let [_, kh, kw, ch] = p.filter_shape;
    let taps = kh * kw;
    let blocks = ch.div_ceil(DW_PAIR_LANES);
    let bytes = dw_pair_block_bytes(kh, kw);
    let (body, zp_row) = dst.split_at_mut((blocks * bytes).min(dst.len()));
    zp_row.fill(p.input_zero_point as i8 as u8);
    let w = |t: usize, c: usize| match t < taps && c < ch {
        true => filter.get(t * ch + c).copied().unwrap_or(0) as i16,
        false => 0,
    };
    for (blk, chunk) in body.chunks_mut(bytes).enumerate() {
        chunk.fill(0);
        for half in 0..2 {
            let at = 4 * QUANT_WORDS * DW_PAIR_LANES + half * EXACT_BYTES;
            let lane = |i: usize| {
                let c = blk * DW_PAIR_LANES + dw_pair_channel(16 * half + i);
                (c < ch).then(|| {
                    let (bias, m, shift) = quant(c);
                    (m, shift, acc_bound(bias, (0..taps).map(|t| w(t, c) as i32)))
                })
            };
            put_exact(&mut chunk[at..], p.output_zero_point, lane);
        }
        for i in 0..DW_PAIR_LANES {
            let c = blk * DW_PAIR_LANES + dw_pair_channel(i);
            if c < ch {
                let (bias, m, shift) = quant(c);
                let sum = (0..taps).fold(0i32, |a, t| a.wrapping_add(w(t, c) as i32));
                let (ls, rs) = split_shift(shift);
                let folded = bias.wrapping_add(sum.wrapping_mul(-p.input_zero_point));
                for (k, v) in [folded, m, ls, rs].into_iter().enumerate() {
                    put_i32(chunk, k * DW_PAIR_LANES + i, v);
                }
            }
            // Row 2r + 1 past the last kernel row is a tap index past `taps`: weight 0.
            for (pair, (r, x)) in (0..kh.div_ceil(2))
                .flat_map(|r| (0..kw).map(move |x| (r, x)))
                .enumerate()
            {
                let at = DW_PAIR_QUANT_BYTES + pair * 128 + 4 * i;
                let (top, below) = (2 * r * kw + x, (2 * r + 1) * kw + x);
                chunk[at..at + 2].copy_from_slice(&w(top, c).to_le_bytes());
                chunk[at + 2..at + 4].copy_from_slice(&w(below, c).to_le_bytes());
            }
        }
    }
}

/// Runs a packed CONV_2D on output pixels `pixels` (flattened batch x height x width) into
/// `output`, those pixels' part of the output tensor; false when the slices disagree with `p`
/// (nothing written).
pub fn conv(
    level: Level,
    p: &ConvParams,
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
    pixels: Range<usize>,
) -> bool {
    let ok = packed.len() == conv_packed_bytes(level, p)
        && !packed.is_empty()
        && input.len() == p.batches * p.in_h * p.in_w * p.in_c
        && pixels.start <= pixels.end
        && pixels.end <= super::conv_pixels(p)
        && output.len() == pixels.len() * p.out_c
        && level.available();
    if !ok {
        return false;
    }
    // SAFETY: the CPU supports `level` (checked above) and the slices have the sizes the
    // kernels index with (checked above).
    unsafe {
        match level {
            Level::Avx512Vnni => avx512::conv(p, packed, input, output, pixels),
            Level::Avx2 => avx2::conv(p, packed, input, output, pixels),
        }
    }
    true
}

/// Runs a packed FULLY_CONNECTED; false when the slices disagree with `p`.
pub fn fully_connected(
    level: Level,
    p: &FcParams,
    scales: &[f64],
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
) -> bool {
    let ok = packed.len() == fc_packed_bytes(level, p)
        && !packed.is_empty()
        && scales.len() == p.out_depth
        && input.len() == p.batches * p.accum_depth
        && output.len() == p.batches * p.out_depth
        && level.available();
    if !ok {
        return false;
    }
    // SAFETY: as in `conv`.
    unsafe {
        match level {
            Level::Avx512Vnni => avx512::fully_connected(p, scales, packed, input, output),
            Level::Avx2 => avx2::fully_connected(p, scales, packed, input, output),
        }
    }
    true
}

/// Runs a packed DEPTHWISE_CONV_2D on output pixels `pixels` into `output`, those pixels' part
/// of the output tensor; false when the slices disagree.
pub fn depthwise(
    level: Level,
    p: &DepthwiseConvParams,
    packed: &[u8],
    input: &[i8],
    output: &mut [i8],
    pixels: Range<usize>,
) -> bool {
    let [n, h, w, c] = p.input_shape;
    let oc = p.output_shape[3];
    let ok = packed.len() == depthwise_packed_bytes(level, p)
        && !packed.is_empty()
        && input.len() == n * h * w * c
        && pixels.start <= pixels.end
        && pixels.end <= super::depthwise_pixels(p)
        && output.len() == pixels.len() * oc
        && level.available();
    if !ok {
        return false;
    }
    // SAFETY: as in `conv`.
    unsafe {
        match level {
            Level::Avx512Vnni => avx512::depthwise(p, packed, input, output, pixels),
            Level::Avx2 => avx2::depthwise(p, packed, input, output, pixels),
        }
    }
    true
}

/// Runs an element-wise (no broadcasting) int8 ADD; false when the shapes broadcast or the
/// slices disagree (nothing written).
pub fn add(level: Level, p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) -> bool {
    let [na, nb, no] = p.shape.sizes;
    let ok = na == no && nb == no && a.len() == no && b.len() == no && output.len() == no;
    if !ok || !level.available() {
        return false;
    }
    // SAFETY: the CPU supports `level`; all three slices have `no` elements.
    unsafe {
        match level {
            Level::Avx512Vnni if Level::vbmi() => avx512::add_by_tables(p, a, b, output, true),
            Level::Avx512Vnni => avx512::add(p, a, b, output),
            Level::Avx2 => avx2::add(p, a, b, output),
        }
    }
    true
}

/// An output pixel's batch, row and column.
#[derive(Clone, Copy)]
struct Pos {
    b: usize,
    oy: usize,
    ox: usize,
}

impl Pos {
    /// Output pixel `q` (flattened batch x height x width) of an `h x w` output.
    #[inline(always)]
    fn of(q: usize, h: usize, w: usize) -> Self {
        let (b, r) = (q / (h * w), q % (h * w));
        Pos {
            b,
            oy: r / w,
            ox: r % w,
        }
    }

    /// Where this pixel's window starts in the input, `(y0, x0)`, possibly negative.
    #[inline(always)]
    fn origin(self, stride: [usize; 2], pad: [usize; 2]) -> (isize, isize) {
        (
            (self.oy * stride[0]) as isize - pad[0] as isize,
            (self.ox * stride[1]) as isize - pad[1] as isize,
        )
    }

    /// The next pixel in row-major order (no division, unlike [`Pos::of`]).
    #[inline(always)]
    fn next(self, h: usize, w: usize) -> Self {
        match (self.ox + 1 < w, self.oy + 1 < h) {
            (true, _) => Pos {
                ox: self.ox + 1,
                ..self
            },
            (false, true) => Pos {
                oy: self.oy + 1,
                ox: 0,
                ..self
            },
            (false, false) => Pos {
                b: self.b + 1,
                oy: 0,
                ox: 0,
            },
        }
    }
}

/// Elements past the last panel row that a panel must have: [`im2col_row`]'s `copy` may write
/// up to this many past the run it converts.
pub const PANEL_SLACK: usize = 64;

/// Fills the panel row at `row` with pixel `q`'s (at `pos`) im2col window: `copy(dst, src)`
/// converts each contiguous run of input bytes and may write up to [`PANEL_SLACK`] elements past
/// it (the next run or row, filled later, overwrites them); `pad` fills taps outside the image.
/// Elements past the inner dimension keep whatever they hold: the packed weights there are 0.
///
/// # Safety
/// `row` must be valid for writes of the inner dimension plus [`PANEL_SLACK`] elements.
#[inline(always)]
unsafe fn im2col_row<T: Copy>(
    p: &ConvParams,
    input: &[i8],
    q: usize,
    pos: Pos,
    row: *mut T,
    pad: T,
    copy: impl Fn(*mut T, &[i8]),
) {
    let c = p.in_c;
    if p.filter_h == 1 && p.filter_w == 1 && p.stride_h == 1 && p.stride_w == 1 {
        // Pointwise (1x1, stride 1, hence no padding): output pixel q reads input pixel q.
        copy(row, &input[q * c..(q + 1) * c]);
        return;
    }
    let b = pos.b;
    let (y0, x0) = pos.origin([p.stride_h, p.stride_w], [p.pad_top, p.pad_left]);
    let mut at = row;
    for fy in 0..p.filter_h {
        let iy = y0 + (fy * p.dilation_h) as isize;
        let x_end = x0 + ((p.filter_w - 1) * p.dilation_w) as isize;
        if p.dilation_w == 1
            && iy >= 0
            && iy < p.in_h as isize
            && x0 >= 0
            && x_end < p.in_w as isize
        {
            // The whole filter row is inside the image: one contiguous run of input.
            let n = p.filter_w * c;
            let src = ((b * p.in_h + iy as usize) * p.in_w + x0 as usize) * c;
            copy(at, &input[src..src + n]);
            at = at.add(n);
            continue;
        }
        for fx in 0..p.filter_w {
            let ix = x0 + (fx * p.dilation_w) as isize;
            if iy < 0 || iy >= p.in_h as isize || ix < 0 || ix >= p.in_w as isize {
                for k in 0..c {
                    at.add(k).write(pad);
                }
            } else {
                let src = ((b * p.in_h + iy as usize) * p.in_w + ix as usize) * c;
                copy(at, &input[src..src + c]);
            }
            at = at.add(c);
        }
    }
}

/// Each tap's input row for the depthwise output pixel at `pos`: a pointer to the input pixel's
/// channel 0, or `zp_row` (the zero point in every channel) for a padding tap.
///
/// # Safety
/// `input` must have the size `p` implies (the window positions inside the image are then
/// inside `input`), and `rows` at least `KH * KW` entries.
#[inline(always)]
unsafe fn depthwise_rows(
    p: &DepthwiseConvParams,
    input: &[i8],
    pos: Pos,
    zp_row: *const i8,
    rows: &mut [*const i8],
) {
    let [_, h, w, c] = p.input_shape;
    let [_, kh, kw, _] = p.filter_shape;
    let b = pos.b;
    let (y0, x0) = pos.origin(p.stride, p.pad);
    let (dh, dw) = (p.dilation[0] as isize, p.dilation[1] as isize);
    let inside = y0 >= 0
        && y0 + (kh as isize - 1) * dh < h as isize
        && x0 >= 0
        && x0 + (kw as isize - 1) * dw < w as isize;
    let base = input.as_ptr();
    if inside {
        for fy in 0..kh {
            let iy = (y0 + fy as isize * dh) as usize;
            let row = base.add(((b * h + iy) * w + x0 as usize) * c);
            for fx in 0..kw {
                rows[fy * kw + fx] = row.add(fx * dw as usize * c);
            }
        }
        return;
    }
    for fy in 0..kh {
        let iy = y0 + fy as isize * dh;
        for fx in 0..kw {
            let ix = x0 + fx as isize * dw;
            rows[fy * kw + fx] = if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                base.add(((b * h + iy as usize) * w + ix as usize) * c)
            } else {
                zp_row
            };
        }
    }
}

#[cfg(test)]
mod tests;
