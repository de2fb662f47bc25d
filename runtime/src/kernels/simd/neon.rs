//! aarch64 NEON kernels for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, bit-exact with the
//! reference kernels (and so with TFLite's BUILTIN_REF).
//!
//! Convolution and fully connected layers are int8 dot products: with the Armv8.2 dot-product
//! extension (`sdot`, FEAT_DotProd: Cortex-A55/A76 and later, i.e. Raspberry Pi 5, Jetson
//! Orin/Xavier) or base NEON otherwise (`smull` + `sadalp`: Cortex-A53/A72, Raspberry Pi 3/4).
//! std builds choose at run time (`is_aarch64_feature_detected!`, which caches the answer);
//! `no_std` builds use `sdot` when the target enables `dotprod` at compile time
//! (`-C target-feature=+dotprod` or a `-C target-cpu` that has it). Depthwise convolution keeps
//! channels along the vector and needs only base NEON.
//!
//! No allocation, no arena: weights are read in place; conv uses up to ~24 KiB of stack scratch
//! (an im2col panel and per-channel filter sums) and leaves larger shapes to the reference.
//! Requantisation is vectorised with the exact fixed-point arithmetic (`requant.rs`).

mod conv;
mod depthwise;
mod dot;
mod fc;
mod requant;
#[cfg(test)]
mod tests;

use super::super::conv::ConvParams;
use super::super::depthwise_conv::DepthwiseConvParams;
use super::super::fully_connected::FcParams;

/// Which multiply-accumulate instructions a kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Base NEON (`smull`, `sadalp`).
    Neon,
    /// NEON with FEAT_DotProd (`sdot`).
    DotProd,
}

impl Isa {
    /// True when this CPU can run `self`.
    pub(crate) fn available(self) -> bool {
        match self {
            Isa::Neon => true,
            Isa::DotProd => has_dotprod(),
        }
    }

    /// The best instructions this CPU has.
    pub(crate) fn best() -> Self {
        if has_dotprod() {
            Isa::DotProd
        } else {
            Isa::Neon
        }
    }
}

/// True when the kernels may run with `isa`: the CPU has it, and the target is little-endian
/// (bias vectors are loaded straight from the model's little-endian bytes; aarch64_be builds
/// use the reference kernels).
fn supported(isa: Isa) -> bool {
    cfg!(target_endian = "little") && isa.available()
}

#[cfg(feature = "std")]
fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

#[cfg(not(feature = "std"))]
fn has_dotprod() -> bool {
    cfg!(target_feature = "dotprod")
}

/// CONV_2D with the best instructions available; false when the shape is left to the reference.
pub(super) fn conv(
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    conv_with(
        Isa::best(),
        p,
        multipliers,
        shifts,
        input,
        filter,
        bias,
        output,
    )
}

/// CONV_2D with `isa`; false when the CPU lacks it or the shape is left to the reference.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_with(
    isa: Isa,
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    if !supported(isa) {
        return false;
    }
    let Some(rows) = conv::check(p, multipliers, shifts, input, filter, bias, output) else {
        return false;
    };
    // SAFETY: `check` validated the slice sizes and parameters these kernels index with, and
    // `available` the instructions.
    unsafe {
        match isa {
            Isa::DotProd => {
                conv::run_dotprod(rows, p, multipliers, shifts, input, filter, bias, output)
            }
            Isa::Neon => conv::run_neon(rows, p, multipliers, shifts, input, filter, bias, output),
        }
    }
    true
}

/// DEPTHWISE_CONV_2D (depth multiplier 1); false when the shape is left to the reference.
pub(super) fn depthwise(
    p: &DepthwiseConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    if !supported(Isa::Neon)
        || !depthwise::check(p, multipliers, shifts, input, filter, bias, output)
    {
        return false;
    }
    // SAFETY: `check` validated the slice sizes and parameters the kernel indexes with.
    unsafe { depthwise::run(p, multipliers, shifts, input, filter, bias, output) };
    true
}

/// FULLY_CONNECTED with the best instructions available; false when left to the reference.
pub(super) fn fully_connected(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    fully_connected_with(Isa::best(), p, scales, input, filter, bias, output)
}

/// FULLY_CONNECTED with `isa`; false when the CPU lacks it or the shape is left to the reference.
pub(crate) fn fully_connected_with(
    isa: Isa,
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    if !supported(isa) || !fc::check(p, scales, input, filter, bias, output) {
        return false;
    }
    // SAFETY: `check` validated the slice sizes the kernel indexes with, `available` the CPU.
    unsafe {
        match isa {
            Isa::DotProd => fc::run_dotprod(p, scales, input, filter, bias, output),
            Isa::Neon => fc::run_neon(p, scales, input, filter, bias, output),
        }
    }
    true
}
