//! int8 DEPTHWISE_CONV_2D with per-channel weights (TFLite `depthwise_conv.cc` Prepare +
//! `reference_integer_ops::DepthwiseConvPerChannel`).
//!
//! Layouts: input `[N, H, W, C]`, filter `[1, KH, KW, C * M]`, bias `[C * M]` (int32, optional),
//! output `[N, OH, OW, C * M]`; output channel `c * M + m` reads input channel `c`. Each output
//! channel accumulates `filter * (input - input_zp)` over the taps inside the image (padding taps
//! contribute nothing), adds the bias, and requantises with its own multiplier
//! `input_scale * filter_scale[ch] / output_scale` (computed in `double`,
//! `PopulateConvolutionQuantizationParams`) through `MultiplyByQuantizedMultiplier` (double
//! rounding), then adds the output zero point and clamps to the fused activation range.

use super::activations::{activation_range_quantized, check_quant, FusedActivation};
use crate::quant::QuantizedMultiplier;

/// TFLite's `Padding` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output size `ceil(in / stride)`, padding split with the extra pixel at the end.
    Same,
    /// No padding: only windows fully inside the input.
    Valid,
}

impl Padding {
    /// Maps the schema's `Padding` byte.
    pub fn from_schema(code: i8) -> Result<Self, &'static str> {
        match code {
            crate::tflite::schema::padding::SAME => Ok(Self::Same),
            crate::tflite::schema::padding::VALID => Ok(Self::Valid),
            _ => Err("unknown padding (expected SAME or VALID)"),
        }
    }
}

/// TFLite's `ComputeOutSize` and `ComputePaddingWithOffset` for one spatial dimension:
/// returns `(output size, padding before)`; `None` when the output would be empty or a
/// parameter is zero.
pub fn out_size_and_padding(
    padding: Padding,
    input: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> Option<(usize, usize)> {
    if input == 0 || filter == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let effective = (filter - 1).checked_mul(dilation)?.checked_add(1)?;
    let out = match padding {
        Padding::Same => input.div_ceil(stride),
        Padding::Valid => (input.checked_add(stride)?.checked_sub(effective)?) / stride,
    };
    if out == 0 {
        return None;
    }
    let total = ((out - 1) * stride + effective).saturating_sub(input);
    Some((out, total / 2))
}

/// Precomputed shape and quantisation state of one DEPTHWISE_CONV_2D; the per-channel
/// multipliers are passed to [`eval`] separately (see [`prepare_channel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseConvParams {
    /// Input `[N, H, W, C]`.
    pub input_shape: [usize; 4],
    /// Filter `[1, KH, KW, C * M]`.
    pub filter_shape: [usize; 4],
    /// Output `[N, OH, OW, C * M]`.
    pub output_shape: [usize; 4],
    /// Stride `(h, w)`.
    pub stride: [usize; 2],
    /// Dilation `(h, w)`.
    pub dilation: [usize; 2],
    /// Padding before `(top, left)`.
    pub pad: [usize; 2],
    /// Depth multiplier `M`.
    pub depth_multiplier: usize,
    /// Input zero point (subtracted from every input value).
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// Output clamp lower bound (fused activation).
    pub act_min: i32,
    /// Output clamp upper bound.
    pub act_max: i32,
}

/// Per-channel requantisation multiplier: `QuantizeMultiplier(input_scale * filter_scale /
/// output_scale)` with the product and quotient in `double`, as
/// `PopulateConvolutionQuantizationParams` computes it.
pub fn prepare_channel(
    input_scale: f32,
    filter_scale: f32,
    output_scale: f32,
) -> QuantizedMultiplier {
    QuantizedMultiplier::from_f64(input_scale as f64 * filter_scale as f64 / output_scale as f64)
}

/// Validates shapes, options and quantisation (filter zero points must be 0, which the caller
/// checks on the tensor) and computes padding and clamp bounds.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    input_shape: [usize; 4],
    filter_shape: [usize; 4],
    output_shape: [usize; 4],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: Padding,
    depth_multiplier: usize,
    activation: FusedActivation,
    input_scale: f32,
    input_zero_point: i32,
    output_scale: f32,
    output_zero_point: i32,
) -> Result<DepthwiseConvParams, &'static str> {
    check_quant(
        input_scale,
        input_zero_point,
        "DEPTHWISE_CONV_2D: input scale must be positive and finite, zero point in [-128, 127]",
    )?;
    check_quant(
        output_scale,
        output_zero_point,
        "DEPTHWISE_CONV_2D: output scale must be positive and finite, zero point in [-128, 127]",
    )?;
    let [n, h, w, c] = input_shape;
    let [one, kh, kw, oc] = filter_shape;
    if one != 1 {
        return Err("DEPTHWISE_CONV_2D: filter shape must be [1, KH, KW, C * M]");
    }
    if depth_multiplier == 0 || c.checked_mul(depth_multiplier) != Some(oc) {
        return Err(
            "DEPTHWISE_CONV_2D: filter channels must equal input channels * depth_multiplier",
        );
    }
    let (oh, pad_h) = out_size_and_padding(padding, h, kh, stride[0], dilation[0])
        .ok_or("DEPTHWISE_CONV_2D: empty output height (check input, filter, stride, dilation)")?;
    let (ow, pad_w) = out_size_and_padding(padding, w, kw, stride[1], dilation[1])
        .ok_or("DEPTHWISE_CONV_2D: empty output width (check input, filter, stride, dilation)")?;
    if output_shape != [n, oh, ow, oc] {
        return Err("DEPTHWISE_CONV_2D: output shape does not match input, filter, stride, dilation and padding");
    }
    if n.checked_mul(h)
        .and_then(|x| x.checked_mul(w))
        .and_then(|x| x.checked_mul(c))
        .is_none()
    {
        return Err("DEPTHWISE_CONV_2D: input too large");
    }
    let (act_min, act_max) =
        activation_range_quantized(activation, output_scale, output_zero_point);
    Ok(DepthwiseConvParams {
        input_shape,
        filter_shape,
        output_shape,
        stride,
        dilation,
        pad: [pad_h, pad_w],
        depth_multiplier,
        input_zero_point,
        output_zero_point,
        act_min,
        act_max,
    })
}

/// Computes the convolution. `bias` is empty (no bias) or has one value per output channel;
/// `multipliers` has one per output channel. Does nothing if any length disagrees.
pub fn eval(
    params: &DepthwiseConvParams,
    multipliers: &[QuantizedMultiplier],
    input: &[i8],
    filter: &[i8],
    bias: &[i32],
    output: &mut [i8],
) {
    let oc = params.filter_shape[3];
    if multipliers.len() != oc || !(bias.is_empty() || bias.len() == oc) {
        debug_assert!(
            false,
            "DEPTHWISE_CONV_2D: multiplier or bias count differs from the channels"
        );
        return;
    }
    eval_with(
        params,
        |ch| multipliers.get(ch).copied().unwrap_or_default(),
        |ch| bias.get(ch).copied(),
        input,
        filter,
        output,
    );
}

/// [`eval`] with the per-channel multipliers as separate mantissa and shift arrays (as the
/// interpreter keeps them in the arena) and the bias as raw little-endian int32 bytes straight
/// from the model (which need not be 4-byte aligned). Does nothing if any length disagrees.
pub fn eval_split(
    params: &DepthwiseConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    let oc = params.filter_shape[3];
    if multipliers.len() != oc || shifts.len() != oc || bias.is_some_and(|b| b.len() != 4 * oc) {
        debug_assert!(
            false,
            "DEPTHWISE_CONV_2D: multiplier or bias count differs from the channels"
        );
        return;
    }
    eval_with(
        params,
        |ch| QuantizedMultiplier {
            multiplier: multipliers.get(ch).copied().unwrap_or(0),
            shift: shifts.get(ch).copied().unwrap_or(0),
        },
        |ch| {
            let b = bias?.get(4 * ch..4 * ch + 4)?;
            Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        },
        input,
        filter,
        output,
    );
}

/// One output from its accumulator (bias included): requantised, output zero point added
/// (wrapping, as the reference kernel's int32 arithmetic), clamped.
#[inline]
pub(crate) fn finish(params: &DepthwiseConvParams, acc: i32, q: QuantizedMultiplier) -> i8 {
    let v = q.apply(acc).wrapping_add(params.output_zero_point);
    v.max(params.act_min).min(params.act_max) as i8
}

/// The reference loop, with per-channel multiplier and bias lookups supplied by the caller.
fn eval_with(
    params: &DepthwiseConvParams,
    multiplier: impl Fn(usize) -> QuantizedMultiplier,
    bias: impl Fn(usize) -> Option<i32>,
    input: &[i8],
    filter: &[i8],
    output: &mut [i8],
) {
    let [n, h, w, c] = params.input_shape;
    let [_, kh, kw, oc] = params.filter_shape;
    let [_, oh, ow, _] = params.output_shape;
    let ok = input.len() == n * h * w * c
        && filter.len() == kh * kw * oc
        && output.len() == n * oh * ow * oc;
    debug_assert!(
        ok,
        "DEPTHWISE_CONV_2D: slice lengths disagree with the prepared shapes"
    );
    if !ok {
        return;
    }
    let m = params.depth_multiplier;
    let [sh, sw] = params.stride;
    let [dh, dw] = params.dilation;
    let [ph, pw] = params.pad;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ic in 0..c {
                    for dm in 0..m {
                        let ch = ic * m + dm;
                        let mut acc: i32 = 0;
                        for fy in 0..kh {
                            // Input row, or skip the tap when it falls in the padding.
                            let Some(iy) = (oy * sh + fy * dh).checked_sub(ph).filter(|&y| y < h)
                            else {
                                continue;
                            };
                            for fx in 0..kw {
                                let Some(ix) =
                                    (ox * sw + fx * dw).checked_sub(pw).filter(|&x| x < w)
                                else {
                                    continue;
                                };
                                let x = input[((b * h + iy) * w + ix) * c + ic] as i32;
                                let f = filter[(fy * kw + fx) * oc + ch] as i32;
                                acc = acc.wrapping_add(f * (x - params.input_zero_point));
                            }
                        }
                        if let Some(bv) = bias(ch) {
                            acc = acc.wrapping_add(bv);
                        }
                        output[((b * oh + oy) * ow + ox) * oc + ch] =
                            finish(params, acc, multiplier(ch));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_arithmetic() {
        // SAME, in 5, filter 3, stride 2: out 3, total pad (2*2 + 3 - 5) = 2 -> 1 before.
        assert_eq!(
            out_size_and_padding(Padding::Same, 5, 3, 2, 1),
            Some((3, 1))
        );
        // VALID, in 7, filter 3 dilated by 2 (effective 5), stride 1: out 3.
        assert_eq!(
            out_size_and_padding(Padding::Valid, 7, 3, 1, 2),
            Some((3, 0))
        );
        assert_eq!(out_size_and_padding(Padding::Valid, 2, 3, 1, 1), None);
        assert_eq!(out_size_and_padding(Padding::Same, 4, 2, 0, 1), None);
    }

    #[test]
    fn depth_multiplier_two_by_hand() {
        // Input 1x2x2x1 (zp 1): [[2, 3], [4, 5]] -> offsets [[1, 2], [3, 4]].
        // Filter 1x2x2x2, channel 0 all ones, channel 1 = [1, -1, 0, 2] (row-major taps).
        // VALID: one output pixel. ch0 = 1+2+3+4 = 10 (+bias 5 = 15); ch1 = 1 - 2 + 0 + 8 = 7 (-1 = 6).
        let p = prepare(
            [1, 2, 2, 1],
            [1, 2, 2, 2],
            [1, 1, 1, 2],
            [1, 1],
            [1, 1],
            Padding::Valid,
            2,
            FusedActivation::None,
            1.0,
            1,
            1.0,
            -3,
        )
        .unwrap();
        let filter = [1, 1, 1, -1, 1, 0, 1, 2];
        // Multipliers 1 and 0.5: 15 -> 15, 6 -> 3; plus zp -3.
        let mults = [
            QuantizedMultiplier::from_f64(1.0),
            QuantizedMultiplier::from_f64(0.5),
        ];
        let mut out = [0i8; 2];
        eval(&p, &mults, &[2, 3, 4, 5], &filter, &[5, -1], &mut out);
        assert_eq!(out, [12, 0]);
    }

    #[test]
    fn same_padding_skips_outside_taps() {
        // 1x1x3x1 input, 1x1x3x1 filter of ones, SAME stride 1: each output sums its neighbours
        // inside the image (input zp 0), so [1, 2, 3] -> [3, 6, 5]; RELU6 on scale 1 caps at 6.
        let p = prepare(
            [1, 1, 3, 1],
            [1, 1, 3, 1],
            [1, 1, 3, 1],
            [1, 1],
            [1, 1],
            Padding::Same,
            1,
            FusedActivation::Relu6,
            1.0,
            0,
            1.0,
            0,
        )
        .unwrap();
        let mut out = [0i8; 3];
        eval(
            &p,
            &[QuantizedMultiplier::from_f64(1.0)],
            &[1, 2, 3],
            &[1, 1, 1],
            &[],
            &mut out,
        );
        assert_eq!(out, [3, 6, 5]);
    }

    #[test]
    fn rejects_inconsistent_shapes() {
        let r = |o: [usize; 4], m: usize| {
            prepare(
                [1, 4, 4, 2],
                [1, 3, 3, 4],
                o,
                [1, 1],
                [1, 1],
                Padding::Valid,
                m,
                FusedActivation::None,
                1.0,
                0,
                1.0,
                0,
            )
        };
        assert!(r([1, 2, 2, 4], 2).is_ok());
        assert!(r([1, 2, 2, 4], 3).is_err());
        assert!(r([1, 3, 3, 4], 2).is_err());
    }
}
