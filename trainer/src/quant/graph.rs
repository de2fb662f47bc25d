//! The integer model: the full-integer graph that post-training quantisation and QAT produce
//! ([`crate::quant`]) and that every exporter writes ([`crate::export`]: TFLite, ONNX, C array).
//!
//! One description, so the TFLite file, the ONNX file and the trainer's own integer evaluation
//! cannot disagree about a scale or a zero point. It holds exactly what TFLite's int8 kernels
//! need, in TFLite's conventions:
//!
//! * activations NHWC, per-tensor asymmetric int8 (`real = scale * (q - zero_point)`);
//! * the graph input is uint8 `[1, S, S, 3]` (letterboxed RGB bytes) followed by a
//!   [`IntOp::Quantize`] to int8 with the same scale and `zero_point - 128`, as TFLite's
//!   QUANTIZE(uint8 -> int8) computes it; the graph output is int8 (logits, or probabilities
//!   when the graph ends with a softmax/logistic);
//! * weights per-channel symmetric int8 (zero point 0, values in `[-127, 127]`), biases int32
//!   with `scale = input_scale * weight_scale[c]`, zero point 0;
//! * every padding explicit: PyTorch pads `k / 2` on each side, which TFLite's SAME does not
//!   reproduce for stride 2 on even sizes, so a convolution carries its four pad amounts and
//!   the exporters emit PAD + VALID (TFLite) or `pads` (ONNX) as needed.

use serde::{Deserialize, Serialize};

/// Index of a tensor in [`IntGraph::tensors`].
pub type TensorIx = usize;

/// Per-tensor affine quantisation: `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    /// Step size, > 0.
    pub scale: f32,
    /// The integer that represents real 0 (int8: -128..=127; uint8: 0..=255).
    pub zero_point: i32,
}

/// Element type of an activation tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElemType {
    /// The graph input only.
    U8,
    /// Every other activation.
    I8,
}

/// An activation tensor (constants live inside their operator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntTensor {
    /// Unique name (kept in the TFLite/ONNX files; errors name it).
    pub name: String,
    /// NHWC shape (`[1, H, W, C]`), or `[1, C]` after pooling.
    pub shape: Vec<usize>,
    /// Element type.
    pub elem: ElemType,
    /// Quantisation.
    pub q: QParams,
}

/// Fused activation of a convolution, fully connected layer or add (applied by clamping the
/// int8 output to the representable part of the range, as TFLite does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FusedAct {
    /// No clamp beyond int8's range.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

/// Per-channel int8 weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelWeights {
    /// Shape in TFLite order: CONV `[O, KH, KW, I]`, DEPTHWISE `[1, KH, KW, C]`,
    /// FULLY_CONNECTED `[O, I]`.
    pub shape: Vec<usize>,
    /// Row-major values in `shape` order, in `[-127, 127]`.
    pub values: Vec<i8>,
    /// One scale per output channel (> 0).
    pub scales: Vec<f32>,
    /// int32 bias per output channel, scale `input_scale * scales[c]`.
    pub bias: Vec<i32>,
}

/// One operator of the integer graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum IntOp {
    /// uint8 -> int8 (TFLite QUANTIZE; ONNX DequantizeLinear + QuantizeLinear).
    Quantize {
        /// uint8 graph input.
        input: TensorIx,
        /// int8 tensor.
        output: TensorIx,
    },
    /// 2-D convolution, regular (`depthwise == false`, weights `[O,KH,KW,I]`) or depthwise with
    /// multiplier 1 (weights `[1,KH,KW,C]`).
    Conv {
        /// Input activation.
        input: TensorIx,
        /// Output activation.
        output: TensorIx,
        /// Weights and bias.
        weights: ChannelWeights,
        /// Depthwise (groups == channels).
        depthwise: bool,
        /// Stride (same in both directions).
        stride: usize,
        /// Zero padding `[top, bottom, left, right]` (in real zeros, i.e. the input's zero point).
        pads: [usize; 4],
        /// Fused activation.
        act: FusedAct,
    },
    /// Element-wise sum of two same-shape tensors (residual connection).
    Add {
        /// First operand.
        a: TensorIx,
        /// Second operand.
        b: TensorIx,
        /// Sum.
        output: TensorIx,
        /// Fused activation.
        act: FusedAct,
    },
    /// Global average pooling `[1,H,W,C] -> [1,C]` (TFLite MEAN over axes 1,2 without
    /// keep_dims; ONNX QLinearGlobalAveragePool + reshape).
    GlobalAvgPool {
        /// Input activation.
        input: TensorIx,
        /// Output `[1, C]`.
        output: TensorIx,
    },
    /// Fully connected `[1,I] -> [1,O]`, weights `[O,I]`.
    FullyConnected {
        /// Input activation.
        input: TensorIx,
        /// Output activation.
        output: TensorIx,
        /// Weights and bias.
        weights: ChannelWeights,
        /// Fused activation.
        act: FusedAct,
    },
}

/// A full-integer classifier graph, operators in execution order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntGraph {
    /// Activation tensors.
    pub tensors: Vec<IntTensor>,
    /// Operators, each reading only tensors produced earlier (or the input).
    pub ops: Vec<IntOp>,
    /// The uint8 input tensor.
    pub input: TensorIx,
    /// The int8 output tensor (`[1, classes]` logits).
    pub output: TensorIx,
}
