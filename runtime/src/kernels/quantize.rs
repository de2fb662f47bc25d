//! QUANTIZE: integer requantisation (uint8 or int8 in, int8 or uint8 out; TFLite's
//! `reference_ops::Requantize`) and float32 -> int8/uint8 affine quantisation
//! (`reference_ops::AffineQuantize`).

use crate::quant::{
    is_positive_scale, multiply_by_quantized_multiplier, round_half_away, QuantizedMultiplier,
};

/// Storage type of an 8-bit quantised tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kind {
    /// `int8` in [-128, 127].
    Signed,
    /// `uint8` in [0, 255].
    Unsigned,
}

impl Int8Kind {
    fn range(self) -> (i32, i32) {
        match self {
            Int8Kind::Signed => (-128, 127),
            Int8Kind::Unsigned => (0, 255),
        }
    }
    fn decode(self, b: u8) -> i32 {
        match self {
            Int8Kind::Signed => b as i8 as i32,
            Int8Kind::Unsigned => b as i32,
        }
    }
}

/// Validated parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QuantizeParams {
    /// Integer in, integer out.
    Requantize {
        /// Input storage.
        input: Int8Kind,
        /// Output storage.
        output: Int8Kind,
        /// Input zero point.
        input_zero_point: i32,
        /// Output zero point.
        output_zero_point: i32,
        /// `QuantizeMultiplier(double(in_scale) / double(out_scale))`.
        multiplier: QuantizedMultiplier,
    },
    /// Float32 in, integer out.
    Affine {
        /// Output storage.
        output: Int8Kind,
        /// Output scale.
        scale: f32,
        /// Output zero point.
        zero_point: i32,
    },
}

fn zp_in_range(kind: Int8Kind, zp: i64) -> Result<i32, &'static str> {
    let (lo, hi) = kind.range();
    if (lo as i64..=hi as i64).contains(&zp) {
        Ok(zp as i32)
    } else {
        Err("zero point outside the storage type's range")
    }
}

/// Integer requantisation, as TFLite prepares it (multiplier from the double ratio of scales).
pub fn prepare_requantize(
    input: Int8Kind,
    input_scale: f32,
    input_zero_point: i64,
    output: Int8Kind,
    output_scale: f32,
    output_zero_point: i64,
) -> Result<QuantizeParams, &'static str> {
    if !is_positive_scale(output_scale) || !is_positive_scale(input_scale) {
        return Err("scales must be positive");
    }
    Ok(QuantizeParams::Requantize {
        input,
        output,
        input_zero_point: zp_in_range(input, input_zero_point)?,
        output_zero_point: zp_in_range(output, output_zero_point)?,
        multiplier: QuantizedMultiplier::from_f64(input_scale as f64 / output_scale as f64),
    })
}

/// Float quantisation to `output`.
pub fn prepare_affine(
    output: Int8Kind,
    scale: f32,
    zero_point: i64,
) -> Result<QuantizeParams, &'static str> {
    if !is_positive_scale(scale) {
        return Err("scale must be positive");
    }
    Ok(QuantizeParams::Affine {
        output,
        scale,
        zero_point: zp_in_range(output, zero_point)?,
    })
}

/// Runs the op on raw bytes (floats little-endian). `input` has `output.len()` elements.
pub fn eval(p: &QuantizeParams, input: &[u8], output: &mut [u8]) {
    match *p {
        QuantizeParams::Requantize {
            input: ik,
            output: ok,
            input_zero_point,
            output_zero_point,
            multiplier,
        } => {
            let (lo, hi) = ok.range();
            let shift = multiplier.shift.clamp(-31, 30);
            for (o, &i) in output.iter_mut().zip(input) {
                let v = multiply_by_quantized_multiplier(
                    ik.decode(i) - input_zero_point,
                    multiplier.multiplier,
                    shift,
                );
                *o = v.saturating_add(output_zero_point).clamp(lo, hi) as u8;
            }
        }
        QuantizeParams::Affine {
            output: ok,
            scale,
            zero_point,
        } => {
            let (lo, hi) = ok.range();
            for (o, c) in output.iter_mut().zip(input.chunks_exact(4)) {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                // TFLite: (int32)round(x / scale) + zero_point, the division in float.
                let r = round_half_away((x / scale) as f64);
                let r = if r.is_nan() {
                    0.0
                } else {
                    r.clamp(i32::MIN as f64, i32::MAX as f64)
                };
                *o = (r as i32).saturating_add(zero_point).clamp(lo, hi) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_to_int8_same_scale_shifts_by_128() {
        let p = prepare_requantize(Int8Kind::Unsigned, 0.5, 128, Int8Kind::Signed, 0.5, 0).unwrap();
        let mut out = [0u8; 4];
        eval(&p, &[0, 128, 255, 129], &mut out);
        assert_eq!(out.map(|b| b as i8), [-128, 0, 127, 1]);
    }

    #[test]
    fn requantize_by_hand() {
        // scale ratio 0.25: (x - 3) * 0.25 + (-5), half away from zero
        let p = prepare_requantize(Int8Kind::Signed, 0.25, 3, Int8Kind::Signed, 1.0, -5).unwrap();
        let mut out = [0u8; 3];
        eval(&p, &[13u8, (-7i8) as u8, 127], &mut out);
        // 10*0.25 = 2.5 -> 3 -> -2 ; -10*0.25 = -2.5 -> -3 -> -8 ; 124*0.25 = 31 -> 26
        assert_eq!(out.map(|b| b as i8), [-2, -8, 26]);
    }

    #[test]
    fn affine_by_hand() {
        let p = prepare_affine(Int8Kind::Signed, 0.5, 1).unwrap();
        let input: std::vec::Vec<u8> = [1.25f32, -0.25, 1000.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let mut out = [0u8; 3];
        eval(&p, &input, &mut out);
        // 2.5 -> 3 -> 4 ; -0.5 -> -1 -> 0 ; 2000 -> clamp 127
        assert_eq!(out.map(|b| b as i8), [4, 0, 127]);
    }
}
