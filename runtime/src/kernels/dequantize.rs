//! DEQUANTIZE int8/uint8 -> float32: TFLite's `reference_ops::Dequantize`, which computes
//! `(float)(double(scale) * (x - zero_point))` (its `DequantizationParams::scale` is a double).

/// Validated parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DequantizeParams {
    /// Input scale, widened to double as TFLite does.
    pub scale: f64,
    /// Input zero point.
    pub zero_point: i32,
}

/// Checks the quantisation of the int8 input.
pub fn prepare(scale: f32, zero_point: i64) -> Result<DequantizeParams, &'static str> {
    if !scale.is_finite() {
        return Err("scale is not finite");
    }
    if !(-128..=127).contains(&zero_point) {
        return Err("zero point outside the int8 range");
    }
    Ok(DequantizeParams {
        scale: scale as f64,
        zero_point: zero_point as i32,
    })
}

/// Checks the quantisation of a uint8 input (zero point in [0, 255]).
pub fn prepare_uint8(scale: f32, zero_point: i64) -> Result<DequantizeParams, &'static str> {
    if !scale.is_finite() {
        return Err("scale is not finite");
    }
    if !(0..=255).contains(&zero_point) {
        return Err("zero point outside the uint8 range");
    }
    Ok(DequantizeParams {
        scale: scale as f64,
        zero_point: zero_point as i32,
    })
}

/// [`eval`] for uint8 input (same formula).
pub fn eval_uint8(p: &DequantizeParams, input: &[u8], output: &mut [u8]) {
    for (o, &x) in output.chunks_exact_mut(4).zip(input) {
        let v = (p.scale * (x as i32 - p.zero_point) as f64) as f32;
        o.copy_from_slice(&v.to_le_bytes());
    }
}

/// Writes little-endian float32s (the output may be unaligned, so bytes rather than `&mut [f32]`).
pub fn eval(p: &DequantizeParams, input: &[i8], output: &mut [u8]) {
    for (o, &x) in output.chunks_exact_mut(4).zip(input) {
        let v = (p.scale * (x as i32 - p.zero_point) as f64) as f32;
        o.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantize_by_hand() {
        let p = prepare(0.5, -2).unwrap();
        let mut out = [0u8; 8];
        eval(&p, &[2, -128], &mut out);
        assert_eq!(f32::from_le_bytes(out[0..4].try_into().unwrap()), 2.0);
        assert_eq!(f32::from_le_bytes(out[4..8].try_into().unwrap()), -63.0);
    }

    #[test]
    fn dequantize_uint8_by_hand() {
        // 0.25 * (200 - 128) = 18; 0.25 * (0 - 128) = -32.
        let p = prepare_uint8(0.25, 128).unwrap();
        let mut out = [0u8; 8];
        eval_uint8(&p, &[200, 0], &mut out);
        assert_eq!(f32::from_le_bytes(out[0..4].try_into().unwrap()), 18.0);
        assert_eq!(f32::from_le_bytes(out[4..8].try_into().unwrap()), -32.0);
        assert!(prepare_uint8(0.25, 256).is_err());
    }
}
