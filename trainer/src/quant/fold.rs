//! Exact float rewrites done before quantising: BatchNorm folded into the preceding
//! convolution, and the input normalisation folded into the first convolution.

use tch::Tensor;

use super::graph::QParams;
use crate::pipeline::Normalization;

/// Folds an inference-mode BatchNorm into the convolution before it:
/// `w' = w * gamma / sqrt(var + eps)` (per output channel) and
/// `b' = beta + (b - mean) * gamma / sqrt(var + eps)` (`b` = 0 for a bias-free conv), so that
/// `conv(x, w') + b' == bn(conv(x, w) + b)`. Differentiable in `w`, `gamma`, `beta`, `b`.
pub fn fold_batch_norm(
    w: &Tensor,
    conv_bias: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> (Tensor, Tensor) {
    let factor = gamma / (var + eps).sqrt();
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1i64, w.dim() - 1));
    let wf = w * factor.reshape(shape);
    let centred = match conv_bias {
        Some(b) => b - mean,
        None => -mean,
    };
    (wf, beta + centred * factor)
}

/// How the uint8 letterboxed bytes `p` enter the integer graph, and what the first convolution
/// must absorb so that it still sees the network's normalised input.
///
/// The network reads `x[c] = (p[c] - mean[c]) / std[c]` ([`Normalization`]); the integer graph's
/// uint8 input represents `r = scale * (p - zero_point)`, one `(scale, zero_point)` for all three
/// channels (TFLite quantises per tensor). Then `x[c] = r * channel_scale[c] + channel_shift[c]`
/// with `channel_scale[c] = 1 / (scale * std[c])` and `channel_shift[c] = (zero_point - mean[c])
/// / std[c]`, which the first convolution absorbs: its weights are multiplied by
/// `channel_scale[c]` along the input channel and `sum(w[o, c] * channel_shift[c])` is added to
/// its bias.
///
/// The choice:
/// * equal means that are whole numbers in `[0, 255]` and equal stds (every student's
///   [`Normalization::STUDENT`], `(p - 127) / 128`): `zero_point = mean`, `scale = 1 / std`, and
///   nothing to absorb (`channel_scale = 1`, `channel_shift = 0`): the uint8 input *is* the
///   normalised input, exactly, padding included;
/// * otherwise: `zero_point = round(average mean)`, `scale = 1 / average std`, the difference
///   absorbed as above. Exact inside the image; at the border the network pads `x = 0` (byte
///   `mean[c]`) while the folded convolution pads `r = 0` (byte `zero_point`), which differ by
///   `channel_shift[c]` per padded tap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputQuant {
    /// uint8 input quantisation (the int8 tensor after QUANTIZE has the same scale and
    /// `zero_point - 128`).
    pub q: QParams,
    /// Multiplier of the first convolution's weights per input channel (R, G, B).
    pub channel_scale: [f32; 3],
    /// Per-channel input offset absorbed into the first convolution's bias.
    pub channel_shift: [f32; 3],
}

impl InputQuant {
    /// The choice for `n` (see the type's docs).
    pub fn for_normalization(n: &Normalization) -> InputQuant {
        let uniform = n.mean.iter().all(|&m| m == n.mean[0])
            && n.std.iter().all(|&s| s == n.std[0])
            && n.mean[0].fract() == 0.0
            && (0.0..=255.0).contains(&n.mean[0]);
        if uniform {
            return InputQuant {
                q: QParams {
                    scale: 1.0 / n.std[0],
                    zero_point: n.mean[0] as i32,
                },
                channel_scale: [1.0; 3],
                channel_shift: [0.0; 3],
            };
        }
        let mean = n.mean.iter().map(|&m| f64::from(m)).sum::<f64>() / 3.0;
        let std = n.std.iter().map(|&s| f64::from(s)).sum::<f64>() / 3.0;
        let zero_point = mean.round().clamp(0.0, 255.0) as i32;
        let scale = (1.0 / std) as f32;
        let mut channel_scale = [0.0; 3];
        let mut channel_shift = [0.0; 3];
        for c in 0..3 {
            let s = f64::from(n.std[c]);
            channel_scale[c] = (1.0 / (f64::from(scale) * s)) as f32;
            channel_shift[c] = ((f64::from(zero_point) - f64::from(n.mean[c])) / s) as f32;
        }
        InputQuant {
            q: QParams { scale, zero_point },
            channel_scale,
            channel_shift,
        }
    }

    /// Whether the first convolution has nothing to absorb.
    pub fn is_identity(&self) -> bool {
        self.channel_scale == [1.0; 3] && self.channel_shift == [0.0; 3]
    }

    /// The int8 tensor after QUANTIZE(uint8 -> int8): same scale, `zero_point - 128`.
    pub fn int8(&self) -> QParams {
        QParams {
            scale: self.q.scale,
            zero_point: self.q.zero_point - 128,
        }
    }
}
