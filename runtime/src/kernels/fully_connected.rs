//! FULLY_CONNECTED, int8 activations with int8 weights `[out_depth, accum_depth]` quantised per
//! tensor or per output channel, optional int32 bias. TFLite's
//! `reference_integer_ops::FullyConnected` / `FullyConnectedPerChannel`.

use super::conv::{bias_at, int8_zero_point};
use crate::quant::{
    activation_range_quantized, multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_single_rounding,
};

/// How the int32 accumulator is scaled to the output (see the module tests and the parity
/// fixtures for which one TFLite's BUILTIN_REF uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// `SaturatingRoundingDoublingHighMul` then `RoundingDivideByPOT`.
    Double,
    /// One 64-bit product and one round-half-up shift (`TFLITE_SINGLE_ROUNDING`).
    Single,
}

/// The rounding TFLite's reference FULLY_CONNECTED applies, measured against ai-edge-litert
/// 2.3.0 BUILTIN_REF with the committed parity fixtures.
pub const REFERENCE_ROUNDING: Rounding = Rounding::Double;

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
    /// Requantisation rounding.
    pub rounding: Rounding,
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
    if spec.input_elements % accum_depth != 0 {
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
        rounding: REFERENCE_ROUNDING,
    })
}

/// The reference fully connected layer. `multipliers`/`shifts` have one entry per output
/// channel (a per-tensor filter scale is broadcast by `conv::populate_multipliers`).
pub fn eval(
    p: &FcParams,
    multipliers: &[i32],
    shifts: &[i32],
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
            let m = multipliers.get(oc).copied().unwrap_or(0);
            let s = shifts.get(oc).copied().unwrap_or(0).clamp(-31, 30);
            let v = match p.rounding {
                Rounding::Double => multiply_by_quantized_multiplier(acc, m, s),
                Rounding::Single => multiply_by_quantized_multiplier_single_rounding(acc, m, s),
            };
            if let Some(o) = output.get_mut(b * p.out_depth + oc) {
                *o = v
                    .saturating_add(p.output_offset)
                    .clamp(p.act_min, p.act_max) as i8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::populate_multipliers;
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
        let (mut m, mut s) = ([0; 2], [0; 2]);
        // 0.5 * [1.0, 0.25] / 1.0
        populate_multipliers(0.5, [1.0f32, 0.25].into_iter(), 1.0, &mut m, &mut s).unwrap();
        let bias: Vec<u8> = [4i32, -8].iter().flat_map(|b| b.to_le_bytes()).collect();
        let mut out = [0i8; 2];
        // x - zp = [2, -1, 4]
        eval(
            &p,
            &m,
            &s,
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
