//! FULLY_CONNECTED, int8 activations with int8 weights `[out_depth, accum_depth]` quantised per
//! tensor or per output channel, optional int32 bias.
//!
//! TFLite's reference kernel (ai-edge-litert 2.3.0, BUILTIN_REF) requantises in floating point,
//! not with the fixed-point multiplier CONV_2D uses: `(int32)round(double(acc) * s)` with
//! `s = double(input_scale) * double(filter_scale) / double(output_scale)` ("performs requant in
//! float to avoid loss of precision", `reference_integer_ops::FullyConnected[PerChannel]`).
//! The `fc_ties_pow2` parity fixture separates this from both fixed-point roundings.

use super::conv::{bias_at, int8_zero_point};
use crate::quant::{activation_range_quantized, is_positive_scale, round_half_away};

/// Validated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcParams {
    /// Rows of the flattened input.
    pub batches: usize,
    /// Inner (accumulated) dimension.
    pub accum_depth: usize,
    /// Output channels.
    pub out_depth: usize,
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// Output zero point.
    pub output_offset: i32,
    /// Lower clamp.
    pub act_min: i32,
    /// Upper clamp.
    pub act_max: i32,
}

/// Plain-number description of a fully connected layer.
#[derive(Clone, Copy, Debug)]
pub struct FcSpec<'s> {
    /// Input element count.
    pub input_elements: usize,
    /// Filter shape `[out_depth, accum_depth]`.
    pub filter: [usize; 2],
    /// Input dims (for keep_num_dims).
    pub input_dims: &'s [i32],
    /// Output dims as declared by the model.
    pub output_dims: &'s [i32],
    /// `keep_num_dims` option.
    pub keep_num_dims: bool,
    /// `schema::activation` value.
    pub activation: i8,
    /// Input zero point.
    pub input_zero_point: i64,
    /// Output zero point.
    pub output_zero_point: i64,
    /// Output scale.
    pub output_scale: f32,
}

/// Validates shapes (TFLite's FC shape rule, including `keep_num_dims`) and quantisation.
pub fn prepare(spec: &FcSpec) -> Result<FcParams, &'static str> {
    let [out_depth, accum_depth] = spec.filter;
    if accum_depth == 0 || out_depth == 0 {
        return Err("empty filter");
    }
    if !spec.input_elements.is_multiple_of(accum_depth) {
        return Err("input size is not a multiple of the filter's inner dimension");
    }
    let batches = spec.input_elements / accum_depth;
    let out_ok = if spec.keep_num_dims {
        let (last, lead) = spec
            .output_dims
            .split_last()
            .ok_or("keep_num_dims output has rank 0")?;
        let in_lead = spec.input_dims.split_last().map(|(_, l)| l).unwrap_or(&[]);
        *last as usize == out_depth && lead == in_lead
    } else {
        spec.output_dims.len() == 2
            && spec.output_dims[0] as usize == batches
            && spec.output_dims[1] as usize == out_depth
    };
    if !out_ok {
        return Err("output shape does not match input batches x filter output depth");
    }
    let output_offset = int8_zero_point(spec.output_zero_point)?;
    let (act_min, act_max) =
        activation_range_quantized(spec.activation, spec.output_scale, output_offset, -128, 127)
            .ok_or("unsupported fused activation")?;
    Ok(FcParams {
        batches,
        accum_depth,
        out_depth,
        input_offset: -int8_zero_point(spec.input_zero_point)?,
        output_offset,
        act_min,
        act_max,
    })
}

/// Per-channel effective scales `double(in) * double(filter[c]) / double(out)`; a single filter
/// scale is broadcast to every channel.
pub fn populate_scales(
    input_scale: f32,
    filter_scales: impl Iterator<Item = f32> + Clone,
    output_scale: f32,
    scales: &mut [f64],
) -> Result<(), &'static str> {
    let n = filter_scales.clone().count();
    if n != 1 && n != scales.len() {
        return Err("filter scale count is neither 1 nor the output channel count");
    }
    if !is_positive_scale(output_scale) {
        return Err("output scale must be positive");
    }
    let first = filter_scales.clone().next().ok_or("filter has no scale")?;
    let mut it = filter_scales;
    for s in scales.iter_mut() {
        let fs = if n == 1 {
            first
        } else {
            it.next().unwrap_or(first)
        };
        *s = input_scale as f64 * fs as f64 / output_scale as f64;
    }
    Ok(())
}

/// `(int32)std::round(double(acc) * scale)`, saturating where C++ would be undefined.
#[inline]
pub fn requantize_real(acc: i32, scale: f64) -> i32 {
    let r = round_half_away(acc as f64 * scale);
    if r.is_nan() {
        return 0;
    }
    r.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// One output from its accumulator (bias included): requantised in floating point with the
/// channel's `scale`, output offset added, clamped.
#[inline]
pub(crate) fn finish(p: &FcParams, acc: i32, scale: f64) -> i8 {
    requantize_real(acc, scale)
        .saturating_add(p.output_offset)
        .clamp(p.act_min, p.act_max) as i8
}

/// The reference fully connected layer. `scales` has one entry per output channel.
pub fn eval(
    p: &FcParams,
    scales: &[f64],
    input: &[i8],
    filter: &[i8],
    bias: Option<&[u8]>,
    output: &mut [i8],
) {
    for b in 0..p.batches {
        let Some(xs) = input.get(b * p.accum_depth..(b + 1) * p.accum_depth) else {
            return;
        };
        for oc in 0..p.out_depth {
            let Some(ws) = filter.get(oc * p.accum_depth..(oc + 1) * p.accum_depth) else {
                return;
            };
            let mut acc: i32 = 0;
            for (&x, &w) in xs.iter().zip(ws) {
                acc = acc.wrapping_add((w as i32).wrapping_mul(x as i32 + p.input_offset));
            }
            acc = acc.wrapping_add(bias_at(bias, oc));
            if let Some(o) = output.get_mut(b * p.out_depth + oc) {
                *o = finish(p, acc, scales.get(oc).copied().unwrap_or(0.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tflite::schema::activation;

    #[test]
    fn two_by_three_by_hand() {
        let spec = FcSpec {
            input_elements: 3,
            filter: [2, 3],
            input_dims: &[1, 3],
            output_dims: &[1, 2],
            keep_num_dims: false,
            activation: activation::RELU,
            input_zero_point: 1,
            output_zero_point: -3,
            output_scale: 1.0,
        };
        let p = prepare(&spec).unwrap();
        let mut sc = [0.0; 2];
        // 0.5 * [1.0, 0.25] / 1.0
        populate_scales(0.5, [1.0f32, 0.25].into_iter(), 1.0, &mut sc).unwrap();
        assert_eq!(sc, [0.5, 0.125]);
        let bias: std::vec::Vec<u8> = [4i32, -8].iter().flat_map(|b| b.to_le_bytes()).collect();
        let mut out = [0i8; 2];
        // x - zp = [2, -1, 4]
        eval(
            &p,
            &sc,
            &[3, 0, 5],
            &[1, 2, 3, -2, 0, 1],
            Some(&bias),
            &mut out,
        );
        // ch0: 2 - 2 + 12 + 4 = 16 -> *0.5 = 8 -> -3 = 5
        // ch1: -4 + 0 + 4 - 8 = -8 -> *0.125 = -1 -> -4 -> RELU clamps at zp -3
        assert_eq!(out, [5, -3]);
    }

    #[test]
    fn real_scale_rounds_half_away_from_zero() {
        // Exact ties: 2.5 -> 3 and -2.5 -> -3 (the fixed-point high-mul would give -2).
        assert_eq!(requantize_real(10, 0.25), 3);
        assert_eq!(requantize_real(-10, 0.25), -3);
        assert_eq!(requantize_real(65, 0.25), 16);
        assert_eq!(requantize_real(i32::MAX, 1e10), i32::MAX);
    }

    #[test]
    fn keep_num_dims_shapes() {
        let mut spec = FcSpec {
            input_elements: 12,
            filter: [5, 3],
            input_dims: &[2, 2, 3],
            output_dims: &[2, 2, 5],
            keep_num_dims: true,
            activation: activation::NONE,
            input_zero_point: 0,
            output_zero_point: 0,
            output_scale: 1.0,
        };
        assert_eq!(prepare(&spec).unwrap().batches, 4);
        spec.keep_num_dims = false;
        assert!(prepare(&spec).is_err());
        spec.output_dims = &[4, 5];
        assert!(prepare(&spec).is_ok());
        spec.input_elements = 13;
        assert!(prepare(&spec).is_err());
    }
}
