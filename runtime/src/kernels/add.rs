//! int8 ADD with broadcasting (TFLite `add.cc` Prepare + `reference_integer_ops::AddElementwise`
//! / `BroadcastAdd6DSlow`).
//!
//! Both inputs are shifted left by 20 bits, scaled onto a common scale of twice the larger input
//! scale with `QuantizeMultiplierSmallerThanOneExp` multipliers (every multiplier is computed in
//! `double` from the `float` scales), summed, and requantised to the output:
//! `out = clamp(MulSmallerThanOne(a' + b', M_out) + out_zp)` with
//! `a' = MulSmallerThanOne((a - a_zp) << 20, M_a)` (high multiply, then rounding right shift).

use super::activations::{activation_range_quantized, check_quant, FusedActivation};
use super::broadcast::Broadcast;
use crate::quant::QuantizedMultiplier;

/// The left shift applied to both int8 inputs before scaling.
pub const LEFT_SHIFT: i32 = 20;

/// Precomputed state of one int8 ADD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddParams {
    /// Input zero points (A, B) and the output zero point.
    pub zero_points: [i32; 3],
    /// `a_scale / (2 max_scale)`.
    pub a_multiplier: QuantizedMultiplier,
    /// `b_scale / (2 max_scale)`.
    pub b_multiplier: QuantizedMultiplier,
    /// `2 max_scale / (2^20 output_scale)`.
    pub output_multiplier: QuantizedMultiplier,
    /// Output clamp bounds (fused activation).
    pub act_min: i32,
    /// Output clamp upper bound.
    pub act_max: i32,
    /// Broadcast walk of the two inputs.
    pub shape: Broadcast,
}

/// `QuantizeMultiplierSmallerThanOneExp`: TFLite aborts (TFLITE_CHECK) outside (0, 1); this is
/// an error here.
pub(crate) fn smaller_than_one(
    real: f64,
    err: &'static str,
) -> Result<QuantizedMultiplier, &'static str> {
    if !(real > 0.0 && real < 1.0) {
        return Err(err);
    }
    let q = QuantizedMultiplier::from_f64(real);
    if q.shift > 0 {
        return Err(err);
    }
    Ok(q)
}

/// `x * M` for a multiplier below one: rounding doubling high multiply, then a rounding right
/// shift (`MultiplyByQuantizedMultiplierSmallerThanOneExp`).
#[inline]
pub(crate) fn mul_smaller_than_one(x: i32, m: QuantizedMultiplier) -> i32 {
    crate::quant::rounding_divide_by_pot(
        crate::quant::saturating_rounding_doubling_high_mul(x, m.multiplier),
        -m.shift,
    )
}

/// Validates quantisation and shapes (right-aligned broadcast up to 6-D) and precomputes the
/// multipliers and clamp bounds.
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
) -> Result<AddParams, &'static str> {
    check_quant(
        a_scale,
        a_zero_point,
        "ADD: input 0 scale must be positive and finite, zero point in [-128, 127]",
    )?;
    check_quant(
        b_scale,
        b_zero_point,
        "ADD: input 1 scale must be positive and finite, zero point in [-128, 127]",
    )?;
    check_quant(
        output_scale,
        output_zero_point,
        "ADD: output scale must be positive and finite, zero point in [-128, 127]",
    )?;
    let shape = Broadcast::new(a_shape, b_shape, output_shape)?;
    let twice_max = 2.0 * a_scale.max(b_scale) as f64;
    let a_multiplier = smaller_than_one(
        a_scale as f64 / twice_max,
        "ADD: input 0 multiplier out of range",
    )?;
    let b_multiplier = smaller_than_one(
        b_scale as f64 / twice_max,
        "ADD: input 1 multiplier out of range",
    )?;
    let output_multiplier = smaller_than_one(
        twice_max / ((1i64 << LEFT_SHIFT) as f64 * output_scale as f64),
        "ADD: output scale too small for the inputs (2 max(input scales) / (2^20 output scale) must be below 1)",
    )?;
    let (act_min, act_max) =
        activation_range_quantized(activation, output_scale, output_zero_point);
    Ok(AddParams {
        zero_points: [a_zero_point, b_zero_point, output_zero_point],
        a_multiplier,
        b_multiplier,
        output_multiplier,
        act_min,
        act_max,
        shape,
    })
}

/// One output element.
#[inline]
fn add_one(p: &AddParams, a: i8, b: i8) -> i8 {
    let a = (a as i32 - p.zero_points[0]) * (1 << LEFT_SHIFT);
    let b = (b as i32 - p.zero_points[1]) * (1 << LEFT_SHIFT);
    let sum = mul_smaller_than_one(a, p.a_multiplier) + mul_smaller_than_one(b, p.b_multiplier);
    let out = mul_smaller_than_one(sum, p.output_multiplier) + p.zero_points[2];
    out.max(p.act_min).min(p.act_max) as i8
}

/// Computes `output = a + b` with broadcasting. Does nothing if a slice length disagrees with
/// the shapes given to [`prepare`].
pub fn eval(params: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) {
    let [na, nb, no] = params.shape.sizes;
    debug_assert!(a.len() == na && b.len() == nb && output.len() == no);
    if a.len() != na || b.len() != nb || output.len() != no {
        return;
    }
    params
        .shape
        .for_each(|ia, ib, o| output[o] = add_one(params, a[ia], b[ib]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_scales_add_exactly() {
        // All scales 0.5, zero points 0: 0.5*3 + 0.5*4 = 3.5 -> 7 on scale 0.5.
        let p = prepare(
            0.5,
            0,
            0.5,
            0,
            0.5,
            0,
            FusedActivation::None,
            &[2],
            &[2],
            &[2],
        )
        .unwrap();
        let mut out = [0i8; 2];
        eval(&p, &[3, -100], &[4, -100], &mut out);
        assert_eq!(out, [7, -128]); // -200 saturates
    }

    #[test]
    fn broadcast_scalar_with_zero_points_and_relu() {
        // a: scale 1 zp 10, b: scalar scale 1 zp 0 value -5, out: scale 2 zp -3, RELU.
        // a=12 -> 2; 2 - 5 = -3 -> -1.5 on scale 2 -> round half away -> -2 ... then + zp.
        // The fixed-point path: the output multiplier 2/(2^20*2) = 2^-20 and the sum is -3 * 2^19
        // (each input scaled by 1/2), so the result is -1.5 rounded away from zero: -2 + (-3) = -5,
        // clamped by RELU at the zero point -3.
        let p = prepare(
            1.0,
            10,
            1.0,
            0,
            2.0,
            -3,
            FusedActivation::Relu,
            &[3],
            &[],
            &[3],
        )
        .unwrap();
        let mut out = [0i8; 3];
        eval(&p, &[12, 20, 30], &[-5], &mut out);
        // 20: 10 - 5 = 5 -> 2.5 -> 3 -> 0; 30: 15 -> 7.5 -> 8 -> 5.
        assert_eq!(out, [-3, 0, 5]);
    }

    #[test]
    fn rejects_bad_inputs() {
        let ok = |s: f32| {
            prepare(
                1.0,
                0,
                1.0,
                0,
                s,
                0,
                FusedActivation::None,
                &[1],
                &[1],
                &[1],
            )
        };
        assert!(ok(1.0).is_ok());
        assert!(ok(0.0).is_err());
        // 2 / (2^20 * 1e-6) > 1: TFLite would abort.
        assert!(ok(1e-6).is_err());
        assert!(prepare(
            1.0,
            0,
            1.0,
            0,
            1.0,
            0,
            FusedActivation::None,
            &[2],
            &[3],
            &[3]
        )
        .is_err());
    }
}
