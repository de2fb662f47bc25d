//! int8 LOGISTIC (TFLite `activations.cc` SigmoidPrepare/SigmoidEval, reference resolver).
//!
//! TFLite's reference and generic kernels both evaluate int8 logistic through a 256-entry table
//! built in `float` (`PopulateLookupTable<int8_t>`): for every int8 `v`,
//! `y = 1.0f / (1.0f + expf(-(input_scale * (float)(v - input_zp))))`,
//! `q = (int32)(roundf(y * (1.0f / output_scale)) + output_zp)`, clamped to int8. The output
//! scale must be exactly 1/256 (TFLite checks `output->params.scale == 1. / 256`).

use super::activations::check_quant;
use super::float_math::{expf, f32_to_i32_x86, roundf};

/// Precomputed state of one int8 LOGISTIC: the table indexed by the input byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogisticParams {
    /// `table[x as u8]` is the output for input `x`.
    pub table: [i8; 256],
}

/// Validates the quantisation and builds the table.
pub fn prepare(
    input_scale: f32,
    input_zero_point: i32,
    output_scale: f32,
    output_zero_point: i32,
) -> Result<LogisticParams, &'static str> {
    check_quant(
        input_scale,
        input_zero_point,
        "LOGISTIC: input scale must be positive and finite, zero point in [-128, 127]",
    )?;
    if output_scale != 1.0 / 256.0 {
        return Err("LOGISTIC: int8 output scale must be 1/256");
    }
    check_quant(
        output_scale,
        output_zero_point,
        "LOGISTIC: output zero point must be in [-128, 127]",
    )?;
    let inverse_scale = 1.0f32 / output_scale;
    let mut table = [0i8; 256];
    for v in i8::MIN as i32..=i8::MAX as i32 {
        let dequantized = input_scale * (v - input_zero_point) as f32;
        let y = 1.0f32 / (1.0f32 + expf(-dequantized));
        let q = f32_to_i32_x86(roundf(y * inverse_scale) + output_zero_point as f32);
        table[v as i8 as u8 as usize] = q.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
    }
    Ok(LogisticParams { table })
}

/// Looks every input up. Does nothing if the lengths differ.
pub fn eval(params: &LogisticParams, input: &[i8], output: &mut [i8]) {
    debug_assert_eq!(input.len(), output.len());
    if input.len() != output.len() {
        return;
    }
    for (o, &x) in output.iter_mut().zip(input) {
        *o = params.table[x as u8 as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_values() {
        let p = prepare(0.5, 0, 1.0 / 256.0, -128).unwrap();
        let mut out = [0i8; 3];
        // sigmoid(0) = 0.5 -> 128 - 128 = 0; sigmoid(-64) ~ 0 -> -128; sigmoid(63.5) -> 256 -> 127.
        eval(&p, &[0, -128, 127], &mut out);
        assert_eq!(out, [0, -128, 127]);
        // sigmoid(1) = 0.731058... -> 187.15 -> 187 - 128 = 59.
        eval(&p, &[2], &mut out[..1]);
        assert_eq!(out[0], 59);
    }

    #[test]
    fn rejects_other_output_scale() {
        assert!(prepare(0.5, 0, 1.0 / 255.0, -128).is_err());
        assert!(prepare(0.0, 0, 1.0 / 256.0, -128).is_err());
    }
}
