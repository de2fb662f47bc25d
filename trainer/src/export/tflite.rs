//! [`IntGraph`] -> TFLite flatbuffer, through kdruntime's writer
//! ([`kdruntime::tflite::writer::ModelBuilder`]).
//!
//! Operator mapping (TFLite's int8 conventions, which the graph already follows):
//!
//! | graph | TFLite |
//! |---|---|
//! | `Quantize` | QUANTIZE (uint8 -> int8) |
//! | `Conv` | CONV_2D or DEPTHWISE_CONV_2D (multiplier 1), per-channel int8 filter (axis 0 resp. 3), int32 bias |
//! | `Add` | ADD |
//! | `GlobalAvgPool` | MEAN over axes `[1, 2]`, `keep_dims = false` |
//! | `FullyConnected` | FULLY_CONNECTED, per-channel int8 weights (axis 0), int32 bias |
//!
//! Padding: a convolution whose explicit pads are all 0 is VALID; one whose pads are exactly
//! what SAME computes for its input size, kernel and stride (total `max((ceil(in/s) - 1) * s + k
//! - in, 0)`, the smaller half first) is SAME; anything else (e.g. PyTorch's symmetric `k / 2`
//! with stride 2 on an even size) becomes a PAD operator, which pads with the input's zero
//! point (real 0), followed by a VALID convolution. The padded tensor is named
//! `<conv output>/padded`.

use anyhow::{anyhow, Result};
use kdruntime::tflite::writer::{
    Activation, DType, ModelBuilder, Op, Padding, Quant, TensorId, TensorSpec,
};

use super::check_graph;
use crate::quant::graph::{ChannelWeights, ElemType, FusedAct, IntGraph, IntOp, IntTensor};

/// The pads TFLite's SAME padding applies to one spatial axis: `(before, after)`.
pub fn same_pads(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

fn activation(act: FusedAct) -> Activation {
    match act {
        FusedAct::None => Activation::None,
        FusedAct::Relu => Activation::Relu,
        FusedAct::Relu6 => Activation::Relu6,
    }
}

fn dims(shape: &[usize]) -> Result<Vec<i32>> {
    shape
        .iter()
        .map(|&d| i32::try_from(d).map_err(|_| anyhow!("dimension {d} does not fit int32")))
        .collect()
}

fn activation_spec(t: &IntTensor) -> Result<TensorSpec> {
    let dtype = match t.elem {
        ElemType::U8 => DType::U8,
        ElemType::I8 => DType::I8,
    };
    Ok(TensorSpec::activation(
        &t.name,
        &dims(&t.shape)?,
        dtype,
        Quant::per_tensor(t.q.scale, t.q.zero_point.into()),
    ))
}

/// Adds the per-channel filter (quantised along `axis`) and its int32 bias.
fn add_weights(
    b: &mut ModelBuilder,
    name: &str,
    w: &ChannelWeights,
    axis: i32,
    input_scale: f32,
) -> Result<(TensorId, TensorId)> {
    let n = w.scales.len();
    let filter = b.add_tensor(TensorSpec::const_i8(
        &format!("{name}/weights"),
        &dims(&w.shape)?,
        &w.values,
        Quant::per_channel(w.scales.clone(), vec![0; n], axis),
    ));
    // TFLite derives the bias scale from input and filter scales; the value here is what its
    // converter writes (float product).
    let bias_scales: Vec<f32> = w.scales.iter().map(|s| input_scale * s).collect();
    let bias = b.add_tensor(TensorSpec::const_i32(
        &format!("{name}/bias"),
        &[n as i32],
        &w.bias,
        Some(Quant::per_channel(bias_scales, vec![0; n], 0)),
    ));
    Ok((filter, bias))
}

/// Writes `graph` as a TFLite flatbuffer (uint8 input, int8 output) with model `description`.
///
/// Errors when the graph fails [`check_graph`] or the writer refuses it (naming the tensor or
/// operator).
pub fn write(graph: &IntGraph, description: &str) -> Result<Vec<u8>> {
    check_graph(graph)?;
    let mut b = ModelBuilder::new();
    b.set_description(description);
    let ids: Vec<TensorId> = graph
        .tensors
        .iter()
        .map(|t| activation_spec(t).map(|s| b.add_tensor(s)))
        .collect::<Result<_>>()?;
    for op in &graph.ops {
        match op {
            IntOp::Quantize { input, output } => {
                b.add_op(Op::Quantize, &[ids[*input]], &[ids[*output]]);
            }
            IntOp::Conv {
                input,
                output,
                weights,
                depthwise,
                stride,
                pads,
                act,
            } => {
                let x = &graph.tensors[*input];
                let y = &graph.tensors[*output];
                let (kh, kw) = (weights.shape[1], weights.shape[2]);
                let (h, w) = (x.shape[1], x.shape[2]);
                let [t, bo, l, r] = *pads;
                let (sh, sw) = (same_pads(h, kh, *stride), same_pads(w, kw, *stride));
                let same_out = [h.div_ceil(*stride), w.div_ceil(*stride)];
                let (padding, conv_in) = if *pads == [0; 4] {
                    (Padding::Valid, ids[*input])
                } else if (t, bo) == sh && (l, r) == sw && y.shape[1..3] == same_out {
                    (Padding::Same, ids[*input])
                } else {
                    let mut shape = x.shape.clone();
                    shape[1] += t + bo;
                    shape[2] += l + r;
                    let padded = b.add_tensor(activation_spec(&IntTensor {
                        name: format!("{}/padded", y.name),
                        shape,
                        elem: x.elem,
                        q: x.q,
                    })?);
                    let p = dims(&[0, 0, t, bo, l, r, 0, 0])?;
                    let paddings = b.add_tensor(TensorSpec::const_i32(
                        &format!("{}/paddings", y.name),
                        &[4, 2],
                        &p,
                        None,
                    ));
                    b.add_op(Op::Pad, &[ids[*input], paddings], &[padded]);
                    (Padding::Valid, padded)
                };
                let axis = if *depthwise { 3 } else { 0 };
                let (filter, bias) = add_weights(&mut b, &y.name, weights, axis, x.q.scale)?;
                let s = *stride as i32;
                let activation = activation(*act);
                let op = Op::conv(*depthwise, padding, s, activation);
                b.add_op(op, &[conv_in, filter, bias], &[ids[*output]]);
            }
            IntOp::Add {
                a,
                b: rhs,
                output,
                act,
            } => {
                b.add_op(
                    Op::Add {
                        activation: activation(*act),
                    },
                    &[ids[*a], ids[*rhs]],
                    &[ids[*output]],
                );
            }
            IntOp::GlobalAvgPool { input, output } => {
                let axes = b.add_tensor(TensorSpec::const_i32(
                    &format!("{}/axes", graph.tensors[*output].name),
                    &[2],
                    &[1, 2],
                    None,
                ));
                b.add_op(
                    Op::Mean { keep_dims: false },
                    &[ids[*input], axes],
                    &[ids[*output]],
                );
            }
            IntOp::FullyConnected {
                input,
                output,
                weights,
                act,
            } => {
                let (w, bias) = add_weights(
                    &mut b,
                    &graph.tensors[*output].name,
                    weights,
                    0,
                    graph.tensors[*input].q.scale,
                )?;
                b.add_op(
                    Op::FullyConnected {
                        activation: activation(*act),
                        keep_num_dims: false,
                    },
                    &[ids[*input], w, bias],
                    &[ids[*output]],
                );
            }
        }
    }
    b.set_inputs(&[ids[graph.input]]);
    b.set_outputs(&[ids[graph.output]]);
    b.finish().map_err(|e| anyhow!("TFLite writer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::same_pads;

    #[test]
    fn same_pads_by_hand() {
        // 224, k3, s2: out 112, total (111 * 2 + 3) - 224 = 1 -> (0, 1) (PyTorch pads (1, 1)).
        assert_eq!(same_pads(224, 3, 2), (0, 1));
        // 25, k3, s2: out 13, total 24 + 3 - 25 = 2 -> (1, 1).
        assert_eq!(same_pads(25, 3, 2), (1, 1));
        // Stride 1: total k - 1.
        assert_eq!(same_pads(10, 3, 1), (1, 1));
        assert_eq!(same_pads(10, 5, 1), (2, 2));
        // 1x1 stride 2 on an odd size: out 3 from 5, total 4 + 1 - 5 = 0.
        assert_eq!(same_pads(5, 1, 2), (0, 0));
    }
}
