//! Optimised kernels for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, bit-exact with the
//! plain reference kernels of the parent module: integer accumulation is exact in any order, and
//! every path requantises with the reference's fixed-point arithmetic (`crate::quant`, lane by
//! lane). Tests compare each one with the reference kernel it replaces.
//!
//! Two kinds of path:
//! - packed (x86_64: AVX2, AVX-512 VNNI): the weights are rearranged at init into the op's blob
//!   (arena bytes, counted by `Model::arena_size`), see [`x86`];
//! - in place (the `try_*` functions: aarch64 NEON in [`neon`](self), Cortex-M DSP in
//!   `arm_dsp`): the weights are read where the model has
//!   them; each takes exactly the reference kernel's arguments and returns `true` when it
//!   computed the output, `false` when the caller must run the reference kernel.
//!
//! [`Kernels`] picks the family for an interpreter; [`Path`] is what it resolves to on this CPU
//! (fixed at init: the packed blobs depend on it).

use core::ops::Range;

use super::add::{self, AddParams};
use super::conv::{self, ConvParams};
use super::depthwise_conv::{self, DepthwiseConvParams};
use super::fully_connected::{self, FcParams};
use super::mean::{self, MeanParams};
use super::quantize::{self, QuantizeParams};
use crate::workers::Workers;

#[cfg(any(all(target_arch = "arm", target_feature = "dsp"), test))]
mod arm_dsp;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon;
pub mod portable;
#[cfg(test)]
mod test_rng;
#[cfg(target_arch = "x86_64")]
pub mod x86;

/// Which kernels an interpreter runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The fastest bit-exact kernels this CPU has (the default).
    #[default]
    Fastest,
    /// The plain reference kernels only (smallest arena; the baseline optimised ones are tested
    /// against).
    Reference,
    /// x86_64's AVX2 kernels even where AVX-512 is present (to test and time that path); the
    /// reference kernels where the CPU lacks AVX2.
    Avx2,
}

/// The kernel path one operator was prepared for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Path {
    /// The reference kernel.
    #[default]
    Reference,
    /// An in-place optimised kernel when the target has one (`try_*`), else the reference.
    InPlace,
    /// x86_64 packed kernels at this level.
    #[cfg(target_arch = "x86_64")]
    X86(x86::Level),
}

impl Kernels {
    /// The path operators take on this CPU.
    pub fn path(self) -> Path {
        match self {
            Kernels::Reference => Path::Reference,
            #[cfg(target_arch = "x86_64")]
            Kernels::Fastest => x86::Level::detect().map_or(Path::InPlace, Path::X86),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => match x86::Level::Avx2.available() {
                true => Path::X86(x86::Level::Avx2),
                false => Path::Reference,
            },
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Fastest => Path::InPlace,
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Avx2 => Path::Reference,
        }
    }
}

/// Packed-blob bytes CONV_2D needs on `path` (0: none; the op runs in place or by reference).
#[allow(unused_variables)]
pub fn conv_packed_bytes(path: Path, p: &ConvParams) -> usize {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::X86(level) => x86::conv_packed_bytes(level, p),
        _ => 0,
    }
}

/// Packed-blob bytes DEPTHWISE_CONV_2D needs on `path` (0: none).
#[allow(unused_variables)]
pub fn depthwise_packed_bytes(path: Path, p: &DepthwiseConvParams) -> usize {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::X86(level) => x86::depthwise_packed_bytes(level, p),
        _ => 0,
    }
}

/// Packed-blob bytes FULLY_CONNECTED needs on `path` (0: none).
#[allow(unused_variables)]
pub fn fc_packed_bytes(path: Path, p: &FcParams) -> usize {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::X86(level) => x86::fc_packed_bytes(level, p),
        _ => 0,
    }
}

/// Fills CONV_2D's packed blob; `quant(c)` is channel `c`'s bias, multiplier and shift.
#[allow(unused_variables)]
pub fn pack_conv(
    path: Path,
    p: &ConvParams,
    filter: &[i8],
    quant: impl FnMut(usize) -> (i32, i32, i32),
    dst: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if let Path::X86(level) = path {
        x86::pack_conv(level, p, filter, quant, dst);
    }
}

/// Fills DEPTHWISE_CONV_2D's packed blob (as [`pack_conv`]).
#[allow(unused_variables)]
pub fn pack_depthwise(
    path: Path,
    p: &DepthwiseConvParams,
    filter: &[i8],
    quant: impl FnMut(usize) -> (i32, i32, i32),
    dst: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if let Path::X86(level) = path {
        x86::pack_depthwise(level, p, filter, quant, dst);
    }
}

/// Fills FULLY_CONNECTED's packed blob; `bias(c)` is channel `c`'s bias.
#[allow(unused_variables)]
pub fn pack_fc(
    path: Path,
    p: &FcParams,
    filter: &[i8],
    bias: impl Fn(usize) -> i32,
    dst: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if let Path::X86(level) = path {
        x86::pack_fc(level, p, filter, bias, dst);
    }
}

/// Output pixels (batch x height x width) of a CONV_2D: the unit [`conv`] splits work by.
pub fn conv_pixels(p: &ConvParams) -> usize {
    p.batches * p.out_h * p.out_w
}

/// Output pixels of a DEPTHWISE_CONV_2D.
pub fn depthwise_pixels(p: &DepthwiseConvParams) -> usize {
    let [n, oh, ow, _] = p.output_shape;
    n * oh * ow
}

/// CONV_2D on `path`; a packed path splits the output pixels over `workers` (std builds;
/// in-place and reference kernels run on the calling thread).
#[allow(clippy::too_many_arguments, unused_variables)]
pub fn conv(
    path: Path,
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    packed: &[u8],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
    workers: Option<&Workers>,
) {
    let macs = conv_pixels(p) * p.out_c * p.filter_h * p.filter_w * p.in_c;
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::X86(level)
            if split(conv_pixels(p), p.out_c, macs, workers, output, |px, out| {
                x86::conv(level, p, packed, input, out, px)
            }) => {}
        Path::InPlace if try_conv(p, multipliers, shifts, input, filter, bias, output) => {}
        _ => conv::eval(p, multipliers, shifts, input, filter, bias, output),
    }
}

/// DEPTHWISE_CONV_2D on `path` (see [`conv`]).
#[allow(clippy::too_many_arguments, unused_variables)]
pub fn depthwise(
    path: Path,
    p: &DepthwiseConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    packed: &[u8],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
    workers: Option<&Workers>,
) {
    let [_, kh, kw, oc] = p.filter_shape;
    let macs = depthwise_pixels(p) * oc * kh * kw;
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::X86(level)
            if split(depthwise_pixels(p), oc, macs, workers, output, |px, out| {
                x86::depthwise(level, p, packed, input, out, px)
            }) => {}
        Path::InPlace if try_depthwise(p, multipliers, shifts, input, filter, bias, output) => {}
        _ => depthwise_conv::eval_split(p, multipliers, shifts, input, filter, bias, output),
    }
}

/// FULLY_CONNECTED on `path`.
#[allow(clippy::too_many_arguments, unused_variables)]
pub fn fully_connected(
    path: Path,
    p: &FcParams,
    scales: &[f64],
    packed: &[u8],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::X86(level) if x86::fully_connected(level, p, scales, packed, input, output) => {}
        Path::InPlace if try_fully_connected(p, scales, input, filter, bias, output) => {}
        _ => fully_connected::eval(p, scales, input, filter, bias, output),
    }
}

/// Operators with fewer multiply-accumulates than this run on one thread (handing parts to
/// the workers costs more).
pub const MIN_PARALLEL_MACS: usize = 200_000;

/// Runs `kernel(pixels, output part)` over `pixels` output pixels of `per_pixel` values each:
/// on the calling thread, or (with `workers`, at least [`MIN_PARALLEL_MACS`]) in one
/// contiguous part per worker thread. True when every part ran.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn split(
    pixels: usize,
    per_pixel: usize,
    macs: usize,
    workers: Option<&Workers>,
    output: &mut [i8],
    kernel: impl Fn(Range<usize>, &mut [i8]) -> bool + Sync,
) -> bool {
    let threads = workers.map_or(1, Workers::threads);
    let Some(workers) = workers.filter(|_| macs >= MIN_PARALLEL_MACS && pixels >= threads) else {
        return kernel(0..pixels, output);
    };
    if output.len() != pixels * per_pixel {
        return false;
    }
    let chunk = pixels.div_ceil(threads);
    let parts = pixels.div_ceil(chunk);
    let base = Shared(output.as_mut_ptr());
    workers.run(parts, &|part| {
        let start = part * chunk;
        let end = (start + chunk).min(pixels);
        let base = &base;
        // SAFETY: parts cover disjoint pixel ranges of `output`, which `run` borrows until
        // every part has finished; `end <= pixels` keeps each inside it.
        let out = unsafe {
            core::slice::from_raw_parts_mut(
                base.0.add(start * per_pixel),
                (end - start) * per_pixel,
            )
        };
        kernel(start..end, out)
    })
}

/// The output's address, shared by the parts of [`split`] (each writes only its own range).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Shared(*mut i8);

// SAFETY: see `split`: the parts' ranges are disjoint.
unsafe impl Sync for Shared {}

/// ADD on `path` (element-wise inputs on a packed path's vector unit, the reference otherwise).
#[allow(unused_variables)]
pub fn add(path: Path, p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::X86(level) if x86::add(level, p, a, b, output) => {}
        _ => add::eval(p, a, b, output),
    }
}

/// MEAN on `path` (the reference kernel on [`Path::Reference`]).
pub fn mean(path: Path, p: &MeanParams, input: &[i8], output: &mut [i8]) {
    if path == Path::Reference || !portable::mean(p, input, output) {
        mean::eval(p, input, output);
    }
}

/// QUANTIZE on `path` (the reference kernel on [`Path::Reference`]).
pub fn quantize(path: Path, p: &QuantizeParams, input: &[u8], output: &mut [u8]) {
    if path == Path::Reference || !portable::quantize(p, input, output) {
        quantize::eval(p, input, output);
    }
}

/// CONV_2D on this target's in-place optimised path, if it has one for `p`.
#[allow(unused_variables)]
pub fn try_conv(
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if neon::conv(p, multipliers, shifts, input, filter, bias, output) {
        return true;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if arm_dsp::conv(p, multipliers, shifts, input, filter, bias, output) {
        return true;
    }
    false
}

/// DEPTHWISE_CONV_2D on this target's in-place optimised path, if it has one for `p`.
#[allow(unused_variables)]
pub fn try_depthwise(
    p: &DepthwiseConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if neon::depthwise(p, multipliers, shifts, input, filter, bias, output) {
        return true;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if arm_dsp::depthwise(p, multipliers, shifts, input, filter, bias, output) {
        return true;
    }
    false
}

/// FULLY_CONNECTED on this target's in-place optimised path, if it has one for `p`.
#[allow(unused_variables)]
pub fn try_fully_connected(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if neon::fully_connected(p, scales, input, filter, bias, output) {
        return true;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if arm_dsp::fully_connected(p, scales, input, filter, bias, output) {
        return true;
    }
    false
}
