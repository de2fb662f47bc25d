//! CONV_2D, int8 activations with per-channel (or per-tensor) int8 weights and int32 bias:
//! TFLite's `reference_integer_ops::ConvPerChannel`. Layouts: input NHWC, filter OHWI
//! (output channels first), output NHWC.

use crate::quant::{
    activation_range_quantized, is_positive_scale, multiply_by_quantized_multiplier,
    QuantizedMultiplier,
};
use crate::tflite::schema::padding;

/// Everything `eval` needs besides the per-channel multipliers and the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Batch count.
    pub batches: usize,
    /// Input height, width, channels.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Input channels (equal to the filter's inner dimension).
    pub in_c: usize,
    /// Filter height.
    pub filter_h: usize,
    /// Filter width.
    pub filter_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Output channels.
    pub out_c: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Vertical dilation.
    pub dilation_h: usize,
    /// Horizontal dilation.
    pub dilation_w: usize,
    /// Zero rows added on top (SAME padding; the odd extra row goes to the bottom).
    pub pad_top: usize,
    /// Zero columns added on the left.
    pub pad_left: usize,
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// Output zero point.
    pub output_offset: i32,
    /// Lower clamp (fused activation).
    pub act_min: i32,
    /// Upper clamp.
    pub act_max: i32,
}

/// Plain-number description of a convolution, as read from the model.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    /// Input shape NHWC.
    pub input: [usize; 4],
    /// Filter shape OHWI.
    pub filter: [usize; 4],
    /// Output shape NHWC, as declared by the model (checked against the geometry).
    pub output: [usize; 4],
    /// Strides (h, w).
    pub stride: (i32, i32),
    /// Dilations (h, w).
    pub dilation: (i32, i32),
    /// `schema::padding` value.
    pub padding: i8,
    /// `schema::activation` value.
    pub activation: i8,
    /// Input zero point.
    pub input_zero_point: i64,
    /// Output zero point.
    pub output_zero_point: i64,
    /// Output scale (for the activation bounds).
    pub output_scale: f32,
}

/// TFLite's `ComputeOutSize`.
pub fn out_size(
    padding_kind: i8,
    image: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> Option<usize> {
    let effective = filter
        .checked_sub(1)?
        .checked_mul(dilation)?
        .checked_add(1)?;
    match padding_kind {
        padding::SAME => Some(image.checked_add(stride - 1)? / stride),
        padding::VALID => {
            let n = (image + stride).checked_sub(effective)?;
            Some(n / stride)
        }
        _ => None,
    }
}

/// TFLite's `ComputePaddingWithOffset`: leading padding (the odd unit goes to the end).
pub fn leading_padding(
    stride: usize,
    dilation: usize,
    image: usize,
    filter: usize,
    out: usize,
) -> usize {
    let effective = (filter.saturating_sub(1)) * dilation + 1;
    let total = (out.saturating_sub(1) * stride + effective) as i64 - image as i64;
    (total.max(0) / 2) as usize
}

/// Converts a model zero point to i32, rejecting values outside the int8 range.
pub(crate) fn int8_zero_point(zp: i64) -> Result<i32, &'static str> {
    if (-128..=127).contains(&zp) {
        Ok(zp as i32)
    } else {
        Err("zero point outside the int8 range")
    }
}

/// Validates the geometry and quantisation of a convolution.
pub fn prepare(spec: &ConvSpec) -> Result<ConvParams, &'static str> {
    let [batches, in_h, in_w, in_c] = spec.input;
    let [out_c, filter_h, filter_w, filter_c] = spec.filter;
    let (sh, sw) = spec.stride;
    let (dh, dw) = spec.dilation;
    if sh < 1 || sw < 1 || dh < 1 || dw < 1 {
        return Err("stride and dilation must be >= 1");
    }
    let (sh, sw, dh, dw) = (sh as usize, sw as usize, dh as usize, dw as usize);
    if filter_c != in_c {
        return Err("filter input channels differ from the input's (grouped conv unsupported)");
    }
    if filter_h == 0 || filter_w == 0 || in_c == 0 {
        return Err("empty filter");
    }
    let out_h = out_size(spec.padding, in_h, filter_h, sh, dh)
        .ok_or("bad padding or filter larger than input")?;
    let out_w = out_size(spec.padding, in_w, filter_w, sw, dw)
        .ok_or("bad padding or filter larger than input")?;
    if spec.output != [batches, out_h, out_w, out_c] {
        return Err("output shape does not match the convolution geometry");
    }
    let output_offset = int8_zero_point(spec.output_zero_point)?;
    let (act_min, act_max) =
        activation_range_quantized(spec.activation, spec.output_scale, output_offset, -128, 127)
            .ok_or("unsupported fused activation")?;
    Ok(ConvParams {
        batches,
        in_h,
        in_w,
        in_c,
        filter_h,
        filter_w,
        out_h,
        out_w,
        out_c,
        stride_h: sh,
        stride_w: sw,
        dilation_h: dh,
        dilation_w: dw,
        pad_top: leading_padding(sh, dh, in_h, filter_h, out_h),
        pad_left: leading_padding(sw, dw, in_w, filter_w, out_w),
        input_offset: -int8_zero_point(spec.input_zero_point)?,
        output_offset,
        act_min,
        act_max,
    })
}

/// TFLite's `PopulateConvolutionQuantizationParams` multipliers: for each output channel,
/// `QuantizeMultiplier(double(input_scale) * double(filter_scale[c]) / double(output_scale))`
/// (products in double, not float). A single filter scale is broadcast to all channels.
pub fn populate_multipliers(
    input_scale: f32,
    filter_scales: impl Iterator<Item = f32> + Clone,
    output_scale: f32,
    multipliers: &mut [i32],
    shifts: &mut [i32],
) -> Result<(), &'static str> {
    let n = filter_scales.clone().count();
    if n != 1 && n != multipliers.len() {
        return Err("filter scale count is neither 1 nor the output channel count");
    }
    if multipliers.len() != shifts.len() {
        return Err("multiplier and shift buffers differ in length");
    }
    if !is_positive_scale(output_scale) {
        return Err("output scale must be positive");
    }
    let first = filter_scales.clone().next().ok_or("filter has no scale")?;
    let mut scales = filter_scales;
    for (m, s) in multipliers.iter_mut().zip(shifts.iter_mut()) {
        let fs = if n == 1 {
            first
        } else {
            scales.next().unwrap_or(first)
        };
        let real = input_scale as f64 * fs as f64 / output_scale as f64;
        let q = QuantizedMultiplier::from_f64(real);
        if q.shift > crate::quant::MAX_LEFT_SHIFT {
            return Err("requantisation multiplier input_scale * filter_scale / output_scale is 2^30 or more");
        }
        *m = q.multiplier;
        *s = q.shift;
    }
    Ok(())
}

/// Reads bias `c` from little-endian int32 bytes (model data may be unaligned).
#[inline]
pub(crate) fn bias_at(bias: Option<&[u8]>, c: usize) -> i32 {
    bias.and_then(|b| b.get(4 * c..4 * c + 4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, i32::from_le_bytes)
}

/// One output from its accumulator (bias included): requantised with channel multiplier and
/// shift (the shift clamped as TFLite's range allows), output offset added, clamped.
#[inline]
pub(crate) fn finish(p: &ConvParams, acc: i32, multiplier: i32, shift: i32) -> i8 {
    multiply_by_quantized_multiplier(acc, multiplier, shift.clamp(-31, 30))
        .saturating_add(p.output_offset)
        .clamp(p.act_min, p.act_max) as i8
}

/// The reference convolution. Slices must have the sizes `prepare` validated (the interpreter
/// guarantees it; short slices only yield zeros, never a panic).
pub fn eval(
    p: &ConvParams,
    multipliers: &[i32],
    shifts: &[i32],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    let in_idx =
        |b: usize, y: usize, x: usize, c: usize| ((b * p.in_h + y) * p.in_w + x) * p.in_c + c;
    let f_idx = |o: usize, y: usize, x: usize, c: usize| {
        ((o * p.filter_h + y) * p.filter_w + x) * p.in_c + c
    };
    for b in 0..p.batches {
        for oy in 0..p.out_h {
            for ox in 0..p.out_w {
                let out_base = ((b * p.out_h + oy) * p.out_w + ox) * p.out_c;
                for oc in 0..p.out_c {
                    let mut acc: i32 = 0;
                    for fy in 0..p.filter_h {
                        // Signed arithmetic: the window may start above/left of the image.
                        let iy =
                            (oy * p.stride_h + fy * p.dilation_h) as isize - p.pad_top as isize;
                        if iy < 0 || iy >= p.in_h as isize {
                            continue;
                        }
                        for fx in 0..p.filter_w {
                            let ix = (ox * p.stride_w + fx * p.dilation_w) as isize
                                - p.pad_left as isize;
                            if ix < 0 || ix >= p.in_w as isize {
                                continue;
                            }
                            let ib = in_idx(b, iy as usize, ix as usize, 0);
                            let fb = f_idx(oc, fy, fx, 0);
                            let (Some(xs), Some(ws)) =
                                (input.get(ib..ib + p.in_c), filter.get(fb..fb + p.in_c))
                            else {
                                continue;
                            };
                            for (&x, &w) in xs.iter().zip(ws) {
                                acc = acc.wrapping_add(
                                    (w as i32).wrapping_mul(x as i32 + p.input_offset),
                                );
                            }
                        }
                    }
                    acc = acc.wrapping_add(bias_at(bias, oc));
                    let m = multipliers.get(oc).copied().unwrap_or(0);
                    let s = shifts.get(oc).copied().unwrap_or(0);
                    if let Some(o) = output.get_mut(out_base + oc) {
                        *o = finish(p, acc, m, s);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tflite::schema::activation;

    fn spec(input: [usize; 4], filter: [usize; 4], output: [usize; 4]) -> ConvSpec {
        ConvSpec {
            input,
            filter,
            output,
            stride: (1, 1),
            dilation: (1, 1),
            padding: padding::VALID,
            activation: activation::NONE,
            input_zero_point: 0,
            output_zero_point: 0,
            output_scale: 1.0,
        }
    }

    #[test]
    fn one_by_one_conv_by_hand() {
        // 1x1x1x2 input [3, -4], two output channels with weights [1, 2] and [-1, 1],
        // bias [10, 0], input zp -1 (offset +1), multiplier 0.5 for both channels, output zp 2.
        let mut s = spec([1, 1, 1, 2], [2, 1, 1, 2], [1, 1, 1, 2]);
        s.input_zero_point = -1;
        s.output_zero_point = 2;
        let p = prepare(&s).unwrap();
        let (mut m, mut sh) = ([0; 2], [0; 2]);
        // input 0.5 * filter 1.0 / output 1.0 = 0.5
        populate_multipliers(0.5, [1.0f32].into_iter(), 1.0, &mut m, &mut sh).unwrap();
        let bias: std::vec::Vec<u8> = [10i32, 0].iter().flat_map(|b| b.to_le_bytes()).collect();
        let mut out = [0i8; 2];
        eval(&p, &m, &sh, &[3, -4], &[1, 2, -1, 1], Some(&bias), &mut out);
        // ch0: 1*(3+1) + 2*(-4+1) + 10 = 8 -> *0.5 = 4 -> +2 = 6
        // ch1: -1*4 + 1*(-3) = -7 -> -3.5. 0.5 is multiplier 2^30 with shift 0, so the only
        // rounding is SaturatingRoundingDoublingHighMul's, which takes negative halves toward
        // zero: -3 -> +2 = -1.
        assert_eq!(out, [6, -1]);
    }

    #[test]
    fn same_padding_3x3_by_hand() {
        // 1x2x2x1 input all ones, 3x3 filter of ones, SAME: every output sees all 4 inputs.
        let mut s = spec([1, 2, 2, 1], [1, 3, 3, 1], [1, 2, 2, 1]);
        s.padding = padding::SAME;
        let p = prepare(&s).unwrap();
        assert_eq!((p.pad_top, p.pad_left), (1, 1));
        let (mut m, mut sh) = ([0; 1], [0; 1]);
        populate_multipliers(1.0, [1.0f32].into_iter(), 1.0, &mut m, &mut sh).unwrap();
        let mut out = [0i8; 4];
        eval(&p, &m, &sh, &[1; 4], &[1; 9], None, &mut out);
        assert_eq!(out, [4; 4]);
    }

    #[test]
    fn relu6_and_stride_dilation_geometry() {
        // VALID, 5x5 input, 3x3 filter, dilation 2 -> effective 5 -> 1x1 output.
        let mut s = spec([1, 5, 5, 1], [1, 3, 3, 1], [1, 1, 1, 1]);
        s.dilation = (2, 2);
        assert!(prepare(&s).is_ok());
        s.output = [1, 3, 3, 1];
        assert!(prepare(&s).is_err());
        // SAME, stride 2 on 5 -> 3.
        let mut s = spec([1, 5, 5, 1], [1, 3, 3, 1], [1, 3, 3, 1]);
        s.padding = padding::SAME;
        s.stride = (2, 2);
        s.activation = activation::RELU6;
        s.output_scale = 0.1;
        let p = prepare(&s).unwrap();
        assert_eq!((p.act_min, p.act_max), (0, 60));
        assert_eq!((p.pad_top, p.pad_left), (1, 1));
    }
}
