//! int8 SOFTMAX over the last dimension (TFLite `activations.cc` SoftmaxPrepare/SoftmaxEval).
//!
//! TFLite's int8 -> int8 softmax is the same under every resolver, BUILTIN_REF included: Prepare
//! fills a 256-entry `float` table `table[255 - v] = expf(-input_scale * beta * v)`
//! (`PopulateSoftmaxLookupTable`; the product in `float`), and Eval (`optimized_ops::Softmax`)
//! does, per row, in `float`: `max` of the row, `sum += table[255 - max + x]` in element order,
//! `inv = 1 / (sum * output_scale)`, `out = roundf(table[255 - max + x] * inv) + output_zp`,
//! clamped to int8. Only output zero point -128 and scale 1/256 are accepted, as in TFLite.

use super::float_math::{expf, f32_to_i32_x86, roundf};

/// Precomputed state of one int8 SOFTMAX.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxParams {
    /// `table[255 - v] = exp(-input_scale * beta * v)` for `v` in 0..=255.
    pub table: [f32; 256],
    /// Output scale (1/256 up to TFLite's tolerance).
    pub output_scale: f32,
    /// Output zero point (-128).
    pub output_zero_point: i32,
    /// Number of rows (product of all dimensions but the last).
    pub outer: usize,
    /// Row length (the last dimension).
    pub depth: usize,
}

/// Validates quantisation and shape (rank >= 1) and builds the exponential table.
pub fn prepare(
    input_scale: f32,
    beta: f32,
    output_scale: f32,
    output_zero_point: i32,
    shape: &[usize],
) -> Result<SoftmaxParams, &'static str> {
    if !(input_scale.is_finite() && input_scale > 0.0) {
        return Err("SOFTMAX: input scale must be positive and finite");
    }
    if !beta.is_finite() {
        return Err("SOFTMAX: beta must be finite");
    }
    if output_zero_point != -128
        || (output_scale - 1.0 / 256.0).abs() > 0.001 / 256.0
        || output_scale.is_nan()
    {
        return Err("SOFTMAX: int8 output must have zero point -128 and scale 1/256");
    }
    let (&depth, rest) = shape
        .split_last()
        .ok_or("SOFTMAX: input must have rank >= 1")?;
    let outer = rest
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("SOFTMAX: too large")?;
    if outer.checked_mul(depth).is_none() {
        return Err("SOFTMAX: too large");
    }
    let scale = -input_scale * beta;
    let mut table = [0f32; 256];
    for v in 0..256usize {
        table[255 - v] = expf(scale * v as f32);
    }
    Ok(SoftmaxParams {
        table,
        output_scale,
        output_zero_point,
        outer,
        depth,
    })
}

/// Computes the softmax of every row. Does nothing if a slice length disagrees with the shape.
pub fn eval(params: &SoftmaxParams, input: &[i8], output: &mut [i8]) {
    let n = params.outer * params.depth;
    debug_assert!(input.len() == n && output.len() == n);
    if input.len() != n || output.len() != n || params.depth == 0 {
        return;
    }
    for (row, out_row) in input
        .chunks_exact(params.depth)
        .zip(output.chunks_exact_mut(params.depth))
    {
        let max = row.iter().copied().max().unwrap_or(i8::MIN) as i32;
        // table[255 - max + x] = exp(input_scale * beta * (x - max)); 255 - max + x is in 0..=255.
        let lookup = |x: i8| params.table[(255 - max + x as i32) as usize];
        let mut sum = 0f32;
        for &x in row {
            sum += lookup(x);
        }
        let inv = 1.0f32 / (sum * params.output_scale);
        for (o, &x) in out_row.iter_mut().zip(row) {
            let q = f32_to_i32_x86(roundf(lookup(x) * inv)).wrapping_add(params.output_zero_point);
            *o = q.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_inputs_share_probability() {
        // Four equal logits: 1/4 each -> 64 on scale 1/256 -> 64 - 128 = -64.
        let p = prepare(0.1, 1.0, 1.0 / 256.0, -128, &[1, 4]).unwrap();
        let mut out = [0i8; 4];
        eval(&p, &[7, 7, 7, 7], &mut out);
        assert_eq!(out, [-64; 4]);
        // One logit: probability 1 -> 256 - 128 = 128, clamped to 127.
        let p = prepare(0.1, 1.0, 1.0 / 256.0, -128, &[1]).unwrap();
        eval(&p, &[-3], &mut out[..1]);
        assert_eq!(out[0], 127);
    }

    #[test]
    fn two_logits_by_hand() {
        // Scale ln(3): logits 1 and 0 -> exp ratio 3:1 -> probabilities 0.75, 0.25
        // -> 192 and 64 on scale 1/256 -> 64 and -64.
        let p = prepare(
            core::f32::consts::LN_2 * 1.584_962_5,
            1.0,
            1.0 / 256.0,
            -128,
            &[2],
        )
        .unwrap();
        let mut out = [0i8; 2];
        eval(&p, &[1, 0], &mut out);
        assert_eq!(out, [64, -64]);
    }

    #[test]
    fn rejects_other_output_quantisation() {
        assert!(prepare(0.1, 1.0, 1.0 / 128.0, -128, &[4]).is_err());
        assert!(prepare(0.1, 1.0, 1.0 / 256.0, 0, &[4]).is_err());
        assert!(prepare(0.1, 1.0, 1.0 / 256.0, -128, &[]).is_err());
    }
}
