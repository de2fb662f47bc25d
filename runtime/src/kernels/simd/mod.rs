//! Optimised kernels for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, bit-exact with the
//! plain reference kernels of the parent module (integer accumulation is exact in any order, and
//! every path requantises with the same fixed-point arithmetic, `crate::quant`).
//!
//! Each `try_*` function takes exactly the reference kernel's arguments and returns `true` when an
//! optimised kernel for this build's target computed the output, `false` when none applies (an
//! unsupported shape, or no such kernel on this target) and the caller must run the reference
//! kernel. These paths read the model's weights in place (no packing, no arena).

use super::conv::ConvParams;
use super::depthwise_conv::DepthwiseConvParams;
use super::fully_connected::FcParams;

#[cfg(any(all(target_arch = "arm", target_feature = "dsp"), test))]
mod arm_dsp;

/// CONV_2D on this target's optimised path, if it has one for `p`.
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
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if arm_dsp::conv(p, multipliers, shifts, input, filter, bias, output) {
        return true;
    }
    false
}

/// DEPTHWISE_CONV_2D on this target's optimised path, if it has one for `p`.
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
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if arm_dsp::depthwise(p, multipliers, shifts, input, filter, bias, output) {
        return true;
    }
    false
}

/// FULLY_CONNECTED on this target's optimised path, if it has one for `p`.
#[allow(unused_variables)]
pub fn try_fully_connected(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if arm_dsp::fully_connected(p, scales, input, filter, bias, output) {
        return true;
    }
    false
}
