//! int8 MUL with broadcasting (TFLite `mul.cc` Prepare + `reference_integer_ops::Mul` /
//! `BroadcastMul6DSlow`): `out = clamp(out_zp + MultiplyByQuantizedMultiplier((a - a_zp) *
//! (b - b_zp), M))` with `M = a_scale * b_scale / out_scale` (see [`prepare`] for the float
//! order).

use super::activations::{activation_range_quantized, check_quant, FusedActivation};
use super::broadcast::Broadcast;
use crate::quant::QuantizedMultiplier;

/// Precomputed state of one int8 MUL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulParams {
    /// Input zero points (A, B) and the output zero point.
    pub zero_points: [i32; 3],
    /// `a_scale * b_scale / output_scale`.
    pub multiplier: QuantizedMultiplier,
    /// Output clamp lower bound (fused activation).
    pub act_min: i32,
    /// Output clamp upper bound.
    pub act_max: i32,
    /// Broadcast walk of the two inputs.
    pub shape: Broadcast,
}

/// Validates quantisation and shapes and precomputes the multiplier and clamp bounds.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    a_scale: f32,
    a_zero_point: i32,
    b_scale: f32,
    b_zero_point: i32,
    output_scale: f32,
    output_zero_point: i32,
    activation: FusedActivation,
    a_shape: &[usize],
    b_shape: &[usize],
    output_shape: &[usize],
) -> Result<MulParams, &'static str> {
    check_quant(
        a_scale,
        a_zero_point,
        "MUL: input 0 scale must be positive and finite, zero point in [-128, 127]",
    )?;
    check_quant(
        b_scale,
        b_zero_point,
        "MUL: input 1 scale must be positive and finite, zero point in [-128, 127]",
    )?;
    check_quant(
        output_scale,
        output_zero_point,
        "MUL: output scale must be positive and finite, zero point in [-128, 127]",
    )?;
    let shape = Broadcast::new(a_shape, b_shape, output_shape)?;
    let real = a_scale as f64 * b_scale as f64 / output_scale as f64;
    let multiplier = QuantizedMultiplier::from_f64(real);
    let (act_min, act_max) =
        activation_range_quantized(activation, output_scale, output_zero_point);
    Ok(MulParams {
        zero_points: [a_zero_point, b_zero_point, output_zero_point],
        multiplier,
        act_min,
        act_max,
        shape,
    })
}

/// Computes `output = a * b` with broadcasting. Does nothing if a slice length disagrees with
/// the shapes given to [`prepare`].
pub fn eval(params: &MulParams, a: &[i8], b: &[i8], output: &mut [i8]) {
    let [na, nb, no] = params.shape.sizes;
    debug_assert!(a.len() == na && b.len() == nb && output.len() == no);
    if a.len() != na || b.len() != nb || output.len() != no {
        return;
    }
    let [za, zb, zo] = params.zero_points;
    params.shape.for_each(|ia, ib, o| {
        let prod = (a[ia] as i32 - za) * (b[ib] as i32 - zb);
        let v = zo.wrapping_add(params.multiplier.apply(prod));
        output[o] = v.max(params.act_min).min(params.act_max) as i8;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_values() {
        // 0.5 * 0.25 / 0.125 = 1: out = (a - 1) * (b + 2) - 5, clamped.
        let p = prepare(
            0.5,
            1,
            0.25,
            -2,
            0.125,
            -5,
            FusedActivation::None,
            &[2, 2],
            &[2],
            &[2, 2],
        )
        .unwrap();
        let mut out = [0i8; 4];
        eval(&p, &[3, 5, -1, 100], &[1, 0], &mut out);
        assert_eq!(out, [2 * 3 - 5, 4 * 2 - 5, -2 * 3 - 5, 127]);
        // Multiplier 0.5 rounds half away from zero: 3 * 1 * 0.5 = 1.5 -> 2, -1.5 -> -2.
        let p = prepare(
            1.0,
            0,
            1.0,
            0,
            2.0,
            0,
            FusedActivation::Relu6,
            &[2],
            &[],
            &[2],
        )
        .unwrap();
        eval(&p, &[3, -3], &[1], &mut out[..2]);
        assert_eq!(&out[..2], &[2, 0]); // RELU6 on scale 2: [0, 3]
    }

    #[test]
    fn rejects_bad_quantisation() {
        assert!(prepare(
            1.0,
            0,
            -1.0,
            0,
            1.0,
            0,
            FusedActivation::None,
            &[1],
            &[1],
            &[1]
        )
        .is_err());
        assert!(prepare(
            1.0,
            0,
            1.0,
            0,
            1.0,
            -129,
            FusedActivation::None,
            &[1],
            &[1],
            &[1]
        )
        .is_err());
    }
}
