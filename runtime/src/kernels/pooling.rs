//! int8 AVERAGE_POOL_2D and MAX_POOL_2D (TFLite `pooling.cc` +
//! `reference_integer_ops::AveragePool` / `MaxPool`), NHWC.
//!
//! Neither kernel requantises: the output uses the input's quantisation and only the fused
//! activation's clamp bounds come from the output tensor. The average sums the raw int8 values of
//! the window taps inside the image (padding taps are not counted) and divides with rounding half
//! away from zero: `(sum ± count / 2) / count` in C integer division. The max starts at -128.

use super::activations::{activation_range_quantized, check_quant, FusedActivation};
use super::depthwise_conv::{out_size_and_padding, Padding};

/// Which pooling operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// AVERAGE_POOL_2D.
    Average,
    /// MAX_POOL_2D.
    Max,
}

/// Precomputed state of one pooling operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    /// Average or max.
    pub kind: PoolKind,
    /// Input `[N, H, W, C]`.
    pub input_shape: [usize; 4],
    /// Output `[N, OH, OW, C]`.
    pub output_shape: [usize; 4],
    /// Window `(h, w)`.
    pub filter: [usize; 2],
    /// Stride `(h, w)`.
    pub stride: [usize; 2],
    /// Padding before `(top, left)`.
    pub pad: [usize; 2],
    /// Output clamp lower bound (fused activation).
    pub act_min: i32,
    /// Output clamp upper bound.
    pub act_max: i32,
}

/// Validates shapes and options and computes padding and clamp bounds (from the output's
/// quantisation, as `CalculateActivationRangeQuantized` does).
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    kind: PoolKind,
    input_shape: [usize; 4],
    output_shape: [usize; 4],
    filter: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
    activation: FusedActivation,
    output_scale: f32,
    output_zero_point: i32,
) -> Result<PoolParams, &'static str> {
    check_quant(
        output_scale,
        output_zero_point,
        "POOL_2D: output scale must be positive and finite, zero point in [-128, 127]",
    )?;
    let [n, h, w, c] = input_shape;
    let (oh, pad_h) = out_size_and_padding(padding, h, filter[0], stride[0], 1)
        .ok_or("POOL_2D: empty output height (check input, filter and stride)")?;
    let (ow, pad_w) = out_size_and_padding(padding, w, filter[1], stride[1], 1)
        .ok_or("POOL_2D: empty output width (check input, filter and stride)")?;
    if output_shape != [n, oh, ow, c] {
        return Err("POOL_2D: output shape does not match input, filter, stride and padding");
    }
    if n.checked_mul(h)
        .and_then(|x| x.checked_mul(w))
        .and_then(|x| x.checked_mul(c))
        .is_none()
        || filter[0]
            .checked_mul(filter[1])
            .is_none_or(|x| x > i32::MAX as usize / 256)
    {
        return Err("POOL_2D: tensor or window too large");
    }
    let (act_min, act_max) =
        activation_range_quantized(activation, output_scale, output_zero_point);
    Ok(PoolParams {
        kind,
        input_shape,
        output_shape,
        filter,
        stride,
        pad: [pad_h, pad_w],
        act_min,
        act_max,
    })
}

/// Computes the pooling. Does nothing if a slice length disagrees with the prepared shapes.
pub fn eval(params: &PoolParams, input: &[i8], output: &mut [i8]) {
    let [n, h, w, c] = params.input_shape;
    let [_, oh, ow, _] = params.output_shape;
    let ok = input.len() == n * h * w * c && output.len() == n * oh * ow * c;
    debug_assert!(
        ok,
        "POOL_2D: slice lengths disagree with the prepared shapes"
    );
    if !ok {
        return;
    }
    let [fh, fw] = params.filter;
    let [sh, sw] = params.stride;
    let [ph, pw] = params.pad;
    for b in 0..n {
        for oy in 0..oh {
            // Window rows inside the image: [y0, y1).
            let y_origin = (oy * sh) as isize - ph as isize;
            let y0 = y_origin.max(0) as usize;
            let y1 = ((y_origin + fh as isize).min(h as isize)).max(0) as usize;
            for ox in 0..ow {
                let x_origin = (ox * sw) as isize - pw as isize;
                let x0 = x_origin.max(0) as usize;
                let x1 = ((x_origin + fw as isize).min(w as isize)).max(0) as usize;
                for ch in 0..c {
                    let mut sum: i32 = 0;
                    let mut max: i32 = i8::MIN as i32;
                    let mut count: i32 = 0;
                    for y in y0..y1 {
                        for x in x0..x1 {
                            let v = input[((b * h + y) * w + x) * c + ch] as i32;
                            sum += v;
                            max = max.max(v);
                            count += 1;
                        }
                    }
                    let v = match params.kind {
                        PoolKind::Max => max,
                        // A window always overlaps the image for shapes `prepare` accepts;
                        // TFLite fails the op if it did not, here the average of nothing is 0.
                        PoolKind::Average if count == 0 => 0,
                        PoolKind::Average if sum > 0 => (sum + count / 2) / count,
                        PoolKind::Average => (sum - count / 2) / count,
                    };
                    output[((b * oh + oy) * ow + ox) * c + ch] =
                        v.max(params.act_min).min(params.act_max) as i8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(
        kind: PoolKind,
        padding: Padding,
        act: FusedActivation,
        input: &[i8],
        out_w: usize,
    ) -> Vec<i8> {
        let p = prepare(
            kind,
            [1, 1, input.len(), 1],
            [1, 1, out_w, 1],
            [1, 2],
            [1, 2],
            padding,
            act,
            1.0,
            0,
        )
        .unwrap();
        let mut out = vec![0i8; out_w];
        eval(&p, input, &mut out);
        out
    }

    #[test]
    fn average_rounds_half_away_from_zero() {
        // Windows of 2 with stride 2: (1+2)/2 = 1.5 -> 2, (-1-2)/2 -> -2, (3+4)/2 = 3.5 -> 4.
        assert_eq!(
            pool(
                PoolKind::Average,
                Padding::Valid,
                FusedActivation::None,
                &[1, 2, -1, -2, 3, 4],
                3
            ),
            [2, -2, 4]
        );
        // SAME with 5 inputs: last window holds one tap (padding is not counted): 7 -> 7.
        assert_eq!(
            pool(
                PoolKind::Average,
                Padding::Same,
                FusedActivation::None,
                &[1, 1, 2, 2, 7],
                3
            ),
            [1, 2, 7]
        );
    }

    #[test]
    fn max_with_relu6_bounds() {
        // Scale 1 zp 0: RELU6 clamps to [0, 6].
        assert_eq!(
            pool(
                PoolKind::Max,
                Padding::Valid,
                FusedActivation::Relu6,
                &[-5, -3, 9, 2, 4, 5],
                3
            ),
            [0, 6, 5]
        );
        assert_eq!(
            pool(
                PoolKind::Max,
                Padding::Valid,
                FusedActivation::None,
                &[-128, -128],
                1
            ),
            [-128]
        );
    }

    #[test]
    fn rejects_wrong_output_shape() {
        assert!(prepare(
            PoolKind::Max,
            [1, 4, 4, 1],
            [1, 3, 3, 1],
            [2, 2],
            [2, 2],
            Padding::Valid,
            FusedActivation::None,
            1.0,
            0
        )
        .is_err());
        assert!(prepare(
            PoolKind::Max,
            [1, 4, 4, 1],
            [1, 2, 2, 1],
            [2, 2],
            [0, 2],
            Padding::Valid,
            FusedActivation::None,
            1.0,
            0
        )
        .is_err());
    }
}
