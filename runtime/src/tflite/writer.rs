//! A TFLite flatbuffer writer for full-integer models, independent of any ML framework.
//!
//! The trainer's exporter and the tests describe a graph tensor by tensor and operator by
//! operator; [`ModelBuilder::finish`] validates it (data length against shape, quantisation
//! against shape, operator arity, topological order) and serialises it with the field ids of
//! [`super::schema`]. Layout choices follow TFLite's converter: buffer 0 is the empty sentinel,
//! every constant gets its own buffer whose data is 16-byte aligned, operator codes are
//! deduplicated by `(builtin, version)` and carry both `deprecated_builtin_code` and
//! `builtin_code`.
//!
//! ```
//! use kdruntime::tflite::writer::*;
//! let mut b = ModelBuilder::new();
//! let x = b.add_tensor(TensorSpec::activation("x", &[1, 4], DType::U8, Quant::per_tensor(0.5, 128)));
//! let y = b.add_tensor(TensorSpec::activation("y", &[1, 4], DType::I8, Quant::per_tensor(0.5, 0)));
//! b.add_op(Op::Quantize, &[x], &[y]);
//! b.set_inputs(&[x]);
//! b.set_outputs(&[y]);
//! let bytes = b.finish().unwrap();
//! assert_eq!(&bytes[4..8], b"TFL3");
//! ```

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use flatbuffers::{FlatBufferBuilder, Push, PushAlignment, WIPOffset};

use super::schema::{self, builtin_operator as bop, builtin_options as bopt};

/// Alignment of constant data inside the file, as TFLite's converter writes it (lets kernels
/// read weights in place with wide loads).
pub const DATA_ALIGNMENT: usize = 16;

/// Element type of a tensor (the subset of `TensorType` a full-integer model uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// `FLOAT32`.
    F32,
    /// `INT32` (biases, shape and axis operands).
    I32,
    /// `UINT8` (model input images).
    U8,
    /// `INT8` (activations and weights).
    I8,
    /// `INT16`.
    I16,
    /// `INT64`.
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::I16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
        }
    }

    /// The schema's `TensorType` value.
    pub fn schema_type(self) -> i8 {
        use schema::tensor_type as t;
        match self {
            DType::F32 => t::FLOAT32,
            DType::I32 => t::INT32,
            DType::U8 => t::UINT8,
            DType::I8 => t::INT8,
            DType::I16 => t::INT16,
            DType::I64 => t::INT64,
        }
    }
}

/// Affine quantisation `real = scale * (q - zero_point)`, per tensor or per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Quant {
    /// One scale per tensor, or one per slice along `quantized_dimension`.
    pub scale: Vec<f32>,
    /// Zero points, same length as `scale`.
    pub zero_point: Vec<i64>,
    /// The axis the per-channel parameters run along (0 for per-tensor).
    pub quantized_dimension: i32,
}

impl Quant {
    /// Per-tensor parameters.
    pub fn per_tensor(scale: f32, zero_point: i64) -> Self {
        Quant {
            scale: alloc::vec![scale],
            zero_point: alloc::vec![zero_point],
            quantized_dimension: 0,
        }
    }

    /// Per-channel parameters along `axis` (one scale and zero point per slice).
    pub fn per_channel(scale: Vec<f32>, zero_point: Vec<i64>, axis: i32) -> Self {
        Quant {
            scale,
            zero_point,
            quantized_dimension: axis,
        }
    }
}

/// Description of one tensor: a constant when `data` is set, an activation otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Name shown by interpreters and in error messages.
    pub name: String,
    /// Dimensions (every one >= 1; empty for a scalar).
    pub shape: Vec<i32>,
    /// Element type.
    pub dtype: DType,
    /// Quantisation parameters, if any.
    pub quant: Option<Quant>,
    /// Little-endian element bytes of a constant; `None` for activations and graph inputs.
    pub data: Option<Vec<u8>>,
}

impl TensorSpec {
    /// A non-constant tensor with quantisation.
    pub fn activation(name: &str, shape: &[i32], dtype: DType, quant: Quant) -> Self {
        TensorSpec {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype,
            quant: Some(quant),
            data: None,
        }
    }

    /// An int8 constant (weights) with the given quantisation.
    pub fn const_i8(name: &str, shape: &[i32], values: &[i8], quant: Quant) -> Self {
        TensorSpec {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype: DType::I8,
            quant: Some(quant),
            data: Some(values.iter().map(|&v| v as u8).collect()),
        }
    }

    /// An int32 constant (bias with quantisation, or a shape/axis operand without).
    pub fn const_i32(name: &str, shape: &[i32], values: &[i32], quant: Option<Quant>) -> Self {
        TensorSpec {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype: DType::I32,
            quant,
            data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }
}

/// Handle of a tensor added to a [`ModelBuilder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId(pub usize);

/// `Padding` of convolutions and pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output size `ceil(in / stride)`, zero padding split with the extra pixel at the end.
    Same,
    /// No padding.
    Valid,
}

impl Padding {
    fn schema(self) -> i8 {
        match self {
            Padding::Same => schema::padding::SAME,
            Padding::Valid => schema::padding::VALID,
        }
    }
}

/// A fused activation (`ActivationFunctionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// No activation.
    None,
    /// max(x, 0).
    Relu,
    /// clamp(x, -1, 1).
    ReluN1To1,
    /// clamp(x, 0, 6).
    Relu6,
}

impl Activation {
    fn schema(self) -> i8 {
        use schema::activation as a;
        match self {
            Activation::None => a::NONE,
            Activation::Relu => a::RELU,
            Activation::ReluN1To1 => a::RELU_N1_TO_1,
            Activation::Relu6 => a::RELU6,
        }
    }
}

/// An operator with its builtin options. Inputs and outputs are given to [`ModelBuilder::add_op`]
/// in TFLite's order (e.g. CONV_2D: input, filter, bias).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// QUANTIZE: input (float/uint8/int8) -> int8/uint8 output.
    Quantize,
    /// DEQUANTIZE: quantised input -> float output.
    Dequantize,
    /// CONV_2D: input [N,H,W,C], filter [O,KH,KW,C], optional bias [O].
    Conv2d {
        /// Padding.
        padding: Padding,
        /// Horizontal stride.
        stride_w: i32,
        /// Vertical stride.
        stride_h: i32,
        /// Horizontal dilation.
        dilation_w: i32,
        /// Vertical dilation.
        dilation_h: i32,
        /// Fused activation.
        activation: Activation,
    },
    /// DEPTHWISE_CONV_2D: input [N,H,W,C], filter [1,KH,KW,C*M], optional bias [C*M].
    DepthwiseConv2d {
        /// Padding.
        padding: Padding,
        /// Horizontal stride.
        stride_w: i32,
        /// Vertical stride.
        stride_h: i32,
        /// Horizontal dilation.
        dilation_w: i32,
        /// Vertical dilation.
        dilation_h: i32,
        /// Output channels per input channel.
        depth_multiplier: i32,
        /// Fused activation.
        activation: Activation,
    },
    /// FULLY_CONNECTED: input, weights [O,I], optional bias [O].
    FullyConnected {
        /// Fused activation.
        activation: Activation,
        /// Keep the input's leading dimensions instead of flattening to 2-D.
        keep_num_dims: bool,
    },
    /// ADD of two tensors (with broadcasting).
    Add {
        /// Fused activation.
        activation: Activation,
    },
    /// MUL of two tensors (with broadcasting).
    Mul {
        /// Fused activation.
        activation: Activation,
    },
    /// MEAN: input, axes (int32 constant).
    Mean {
        /// Keep reduced dimensions as size 1.
        keep_dims: bool,
    },
    /// AVERAGE_POOL_2D.
    AveragePool2d {
        /// Padding.
        padding: Padding,
        /// Horizontal stride.
        stride_w: i32,
        /// Vertical stride.
        stride_h: i32,
        /// Window width.
        filter_w: i32,
        /// Window height.
        filter_h: i32,
        /// Fused activation.
        activation: Activation,
    },
    /// MAX_POOL_2D.
    MaxPool2d {
        /// Padding.
        padding: Padding,
        /// Horizontal stride.
        stride_w: i32,
        /// Vertical stride.
        stride_h: i32,
        /// Window width.
        filter_w: i32,
        /// Window height.
        filter_h: i32,
        /// Fused activation.
        activation: Activation,
    },
    /// PAD: input, paddings (int32 constant [rank, 2]); pads with the zero point.
    Pad,
    /// RESHAPE: input and optionally a shape operand (int32 [rank]).
    Reshape {
        /// `ReshapeOptions.new_shape`; `None` writes no options table.
        new_shape: Option<Vec<i32>>,
    },
    /// SQUEEZE.
    Squeeze {
        /// Dimensions to remove (empty: all of size 1).
        squeeze_dims: Vec<i32>,
    },
    /// CONCATENATION of one or more inputs.
    Concatenation {
        /// Axis (negative counts from the end).
        axis: i32,
        /// Fused activation.
        activation: Activation,
    },
    /// SOFTMAX.
    Softmax {
        /// Inverse temperature.
        beta: f32,
    },
    /// LOGISTIC (sigmoid).
    Logistic,
    /// HARD_SWISH.
    HardSwish,
    /// RELU.
    Relu,
    /// RELU6.
    Relu6,
    /// RELU_N1_TO_1.
    ReluN1To1,
}

impl Op {
    /// A CONV_2D, or a DEPTHWISE_CONV_2D with depth multiplier 1, with the same stride in both
    /// directions and no dilation: the convolution every MobileNet-style layer uses.
    pub fn conv(depthwise: bool, padding: Padding, stride: i32, activation: Activation) -> Op {
        if depthwise {
            Op::DepthwiseConv2d {
                padding,
                stride_w: stride,
                stride_h: stride,
                dilation_w: 1,
                dilation_h: 1,
                depth_multiplier: 1,
                activation,
            }
        } else {
            Op::Conv2d {
                padding,
                stride_w: stride,
                stride_h: stride,
                dilation_w: 1,
                dilation_h: 1,
                activation,
            }
        }
    }

    /// The `BuiltinOperator` code.
    pub fn builtin_code(&self) -> i32 {
        match self {
            Op::Quantize => bop::QUANTIZE,
            Op::Dequantize => bop::DEQUANTIZE,
            Op::Conv2d { .. } => bop::CONV_2D,
            Op::DepthwiseConv2d { .. } => bop::DEPTHWISE_CONV_2D,
            Op::FullyConnected { .. } => bop::FULLY_CONNECTED,
            Op::Add { .. } => bop::ADD,
            Op::Mul { .. } => bop::MUL,
            Op::Mean { .. } => bop::MEAN,
            Op::AveragePool2d { .. } => bop::AVERAGE_POOL_2D,
            Op::MaxPool2d { .. } => bop::MAX_POOL_2D,
            Op::Pad => bop::PAD,
            Op::Reshape { .. } => bop::RESHAPE,
            Op::Squeeze { .. } => bop::SQUEEZE,
            Op::Concatenation { .. } => bop::CONCATENATION,
            Op::Softmax { .. } => bop::SOFTMAX,
            Op::Logistic => bop::LOGISTIC,
            Op::HardSwish => bop::HARD_SWISH,
            Op::Relu => bop::RELU,
            Op::Relu6 => bop::RELU6,
            Op::ReluN1To1 => bop::RELU_N1_TO_1,
        }
    }

    /// The schema name (e.g. `CONV_2D`).
    pub fn name(&self) -> &'static str {
        bop::name(self.builtin_code())
    }

    /// Allowed number of inputs (min, max).
    fn input_arity(&self) -> (usize, usize) {
        match self {
            Op::Conv2d { .. } | Op::DepthwiseConv2d { .. } | Op::FullyConnected { .. } => (2, 3),
            Op::Add { .. } | Op::Mul { .. } | Op::Mean { .. } | Op::Pad => (2, 2),
            Op::Reshape { .. } => (1, 2),
            Op::Concatenation { .. } => (1, usize::MAX),
            _ => (1, 1),
        }
    }
}

/// Operator version as TFLite's converter assigns it (tensorflow/lite/tools/versioning/op_version.cc)
/// for the types a full-integer model uses. `input_types`/`output_types` are the dtypes in order;
/// `scales` are the first two inputs' and the output's first scale (for MUL).
pub fn op_version(op: &Op, input_types: &[DType], output_types: &[DType], scales: [f32; 3]) -> i32 {
    let in0 = input_types.first().copied();
    let in1 = input_types.get(1).copied();
    let out0 = output_types.first().copied();
    let int8 = in0 == Some(DType::I8);
    let int16 = in0 == Some(DType::I16);
    match op {
        Op::Conv2d { .. } | Op::DepthwiseConv2d { .. } => {
            if int8 && in1 == Some(DType::I8) && out0 == Some(DType::I8) {
                3
            } else if let Op::DepthwiseConv2d {
                dilation_w,
                dilation_h,
                ..
            } = op
            {
                if *dilation_w != 1 || *dilation_h != 1 {
                    2
                } else {
                    1
                }
            } else {
                1
            }
        }
        Op::FullyConnected { keep_num_dims, .. } => {
            if input_types.len() == 2 {
                6
            } else if *keep_num_dims {
                5
            } else if int8 && in1 == Some(DType::I8) && out0 == Some(DType::I8) {
                4
            } else {
                1
            }
        }
        Op::Mul { .. } => {
            let [s1, s2, so] = scales;
            if int16 {
                4
            } else if s1 != 0.0
                && s2 != 0.0
                && so != 0.0
                && f64::from(s1) * f64::from(s2) / f64::from(so) >= 1.0
            {
                3
            } else if int8 {
                2
            } else {
                1
            }
        }
        Op::Quantize => {
            if out0 == Some(DType::I16) {
                2
            } else {
                1
            }
        }
        Op::Dequantize => {
            if int16 {
                3
            } else if int8 {
                2
            } else {
                1
            }
        }
        Op::AveragePool2d { .. }
        | Op::MaxPool2d { .. }
        | Op::Softmax { .. }
        | Op::Mean { .. }
        | Op::Relu6
        | Op::Logistic
        | Op::Concatenation { .. } => {
            if int16 {
                3
            } else if int8 {
                2
            } else {
                1
            }
        }
        // BUILTIN_REF (register_ref.cc) registers RELU_N1_TO_1 at version 1 only, and its int8
        // kernel runs under that version.
        Op::ReluN1To1 => 1,
        Op::Relu => {
            if int16 {
                3
            } else if int8 || in0 == Some(DType::U8) {
                2
            } else {
                1
            }
        }
        Op::Add { .. } => {
            if int16 {
                3
            } else if int8 {
                2
            } else {
                1
            }
        }
        Op::Pad => {
            if input_types.is_empty() {
                1
            } else if int16 {
                3
            } else if int8 {
                2
            } else {
                1
            }
        }
        Op::Reshape { .. } | Op::Squeeze { .. } | Op::HardSwish => 1,
    }
}

/// Why [`ModelBuilder::finish`] refused a graph. Every variant names the tensor or operator at
/// fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// A tensor's own description is inconsistent.
    Tensor {
        /// Tensor index.
        index: usize,
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An operator is malformed or out of order.
    Operator {
        /// Operator index in execution order.
        index: usize,
        /// Operator name (e.g. `CONV_2D`).
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The subgraph's inputs/outputs are wrong.
    Graph(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Tensor {
                index,
                name,
                reason,
            } => write!(f, "tensor {index} '{name}': {reason}"),
            WriteError::Operator { index, op, reason } => {
                write!(f, "operator {index} ({op}): {reason}")
            }
            WriteError::Graph(reason) => write!(f, "graph: {reason}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WriteError {}

struct OpEntry {
    op: Op,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
}

/// Builds one single-subgraph TFLite model.
pub struct ModelBuilder {
    tensors: Vec<TensorSpec>,
    ops: Vec<OpEntry>,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    description: String,
}

impl Default for ModelBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// A byte whose vector is aligned to [`DATA_ALIGNMENT`] (flatbuffers aligns a vector to its
/// element's alignment; this is how constant data gets the converter's 16-byte alignment).
struct AlignedByte(u8);

impl Push for AlignedByte {
    type Output = u8;
    unsafe fn push(&self, dst: &mut [u8], _written_len: usize) {
        dst[0] = self.0;
    }
    fn size() -> usize {
        1
    }
    fn alignment() -> PushAlignment {
        PushAlignment::new(DATA_ALIGNMENT)
    }
}

/// vtable offset of a table field id.
fn vt(field: u16) -> u16 {
    4 + 2 * field
}

impl ModelBuilder {
    /// An empty model.
    pub fn new() -> Self {
        ModelBuilder {
            tensors: Vec::new(),
            ops: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            description: "kdedge".to_string(),
        }
    }

    /// Adds a tensor; validation happens in [`finish`](Self::finish).
    pub fn add_tensor(&mut self, spec: TensorSpec) -> TensorId {
        self.tensors.push(spec);
        TensorId(self.tensors.len() - 1)
    }

    /// The description of a tensor added earlier.
    pub fn tensor(&self, id: TensorId) -> Option<&TensorSpec> {
        self.tensors.get(id.0)
    }

    /// Appends an operator (operators run in the order they are added).
    pub fn add_op(&mut self, op: Op, inputs: &[TensorId], outputs: &[TensorId]) {
        self.ops.push(OpEntry {
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        });
    }

    /// Sets the subgraph inputs.
    pub fn set_inputs(&mut self, inputs: &[TensorId]) {
        self.inputs = inputs.to_vec();
    }

    /// Sets the subgraph outputs.
    pub fn set_outputs(&mut self, outputs: &[TensorId]) {
        self.outputs = outputs.to_vec();
    }

    /// Sets the model's `description` string (default "kdedge").
    pub fn set_description(&mut self, description: &str) {
        self.description = description.to_string();
    }

    fn check_tensor(&self, index: usize) -> Result<(), WriteError> {
        let t = &self.tensors[index];
        let err = |reason: String| WriteError::Tensor {
            index,
            name: t.name.clone(),
            reason,
        };
        let mut count: usize = 1;
        for (d, &dim) in t.shape.iter().enumerate() {
            if dim < 1 {
                return Err(err(format!(
                    "dimension {d} is {dim}; every dimension must be >= 1"
                )));
            }
            count = count
                .checked_mul(dim as usize)
                .ok_or_else(|| err(format!("shape {:?} overflows the element count", t.shape)))?;
        }
        if let Some(data) = &t.data {
            let expected = count * t.dtype.size();
            if data.len() != expected {
                return Err(err(format!(
                    "data is {} bytes but shape {:?} of {:?} needs {expected}",
                    data.len(),
                    t.shape,
                    t.dtype
                )));
            }
        }
        if let Some(q) = &t.quant {
            if q.scale.is_empty() || q.scale.len() != q.zero_point.len() {
                return Err(err(format!(
                    "quantisation has {} scales and {} zero points; need the same non-zero number",
                    q.scale.len(),
                    q.zero_point.len()
                )));
            }
            if let Some(s) = q.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(err(format!(
                    "quantisation scale {s} is not a finite positive number"
                )));
            }
            if q.scale.len() > 1 {
                let axis = q.quantized_dimension;
                let dim = usize::try_from(axis)
                    .ok()
                    .and_then(|a| t.shape.get(a))
                    .ok_or_else(|| {
                        err(format!(
                            "quantized_dimension {axis} is outside the rank {} shape",
                            t.shape.len()
                        ))
                    })?;
                if q.scale.len() != *dim as usize {
                    return Err(err(format!(
                        "{} per-channel scales but dimension {axis} has size {dim}",
                        q.scale.len()
                    )));
                }
            }
            let (lo, hi) = match t.dtype {
                DType::U8 => (0, 255),
                DType::I8 => (-128, 127),
                DType::I16 => (-32768, 32767),
                _ => (i64::from(i32::MIN), i64::from(i32::MAX)),
            };
            if let Some(z) = q.zero_point.iter().find(|z| !(lo..=hi).contains(*z)) {
                return Err(err(format!(
                    "zero point {z} is outside the {:?} range",
                    t.dtype
                )));
            }
        }
        Ok(())
    }

    fn check_graph(&self) -> Result<(), WriteError> {
        let n = self.tensors.len();
        for i in 0..n {
            self.check_tensor(i)?;
        }
        let mut available: Vec<bool> = self.tensors.iter().map(|t| t.data.is_some()).collect();
        let mut produced = alloc::vec![false; n];
        for &TensorId(i) in &self.inputs {
            let t = self
                .tensors
                .get(i)
                .ok_or_else(|| WriteError::Graph(format!("input tensor {i} does not exist")))?;
            if t.data.is_some() {
                return Err(WriteError::Graph(format!(
                    "input tensor {i} '{}' is a constant",
                    t.name
                )));
            }
            available[i] = true;
        }
        for (index, e) in self.ops.iter().enumerate() {
            let err = |reason: String| WriteError::Operator {
                index,
                op: e.op.name(),
                reason,
            };
            let (lo, hi) = e.op.input_arity();
            if e.inputs.len() < lo || e.inputs.len() > hi {
                let want = if lo == hi {
                    format!("{lo}")
                } else if hi == usize::MAX {
                    format!("at least {lo}")
                } else {
                    format!("{lo} or {hi}")
                };
                return Err(err(format!("has {} inputs, needs {want}", e.inputs.len())));
            }
            if e.outputs.len() != 1 {
                return Err(err(format!("has {} outputs, needs 1", e.outputs.len())));
            }
            for (k, &TensorId(i)) in e.inputs.iter().enumerate() {
                let t = self
                    .tensors
                    .get(i)
                    .ok_or_else(|| err(format!("input {k} is tensor {i}, which does not exist")))?;
                if !available[i] {
                    return Err(err(format!(
                        "input {k} '{}' is neither a constant, a graph input nor the output of an earlier operator",
                        t.name
                    )));
                }
            }
            for &TensorId(i) in &e.outputs {
                let t = self
                    .tensors
                    .get(i)
                    .ok_or_else(|| err(format!("output tensor {i} does not exist")))?;
                if t.data.is_some() {
                    return Err(err(format!("output '{}' is a constant", t.name)));
                }
                if available[i] {
                    return Err(err(format!(
                        "output '{}' is already a graph input or written by an earlier operator",
                        t.name
                    )));
                }
                available[i] = true;
                produced[i] = true;
            }
        }
        if self.outputs.is_empty() {
            return Err(WriteError::Graph("no outputs set".into()));
        }
        for &TensorId(i) in &self.outputs {
            let t = self
                .tensors
                .get(i)
                .ok_or_else(|| WriteError::Graph(format!("output tensor {i} does not exist")))?;
            if !produced[i] && !self.inputs.contains(&TensorId(i)) {
                return Err(WriteError::Graph(format!(
                    "output '{}' is not computed by any operator",
                    t.name
                )));
            }
        }
        Ok(())
    }

    /// Validates the graph and serialises it to TFLite flatbuffer bytes.
    pub fn finish(&self) -> Result<Vec<u8>, WriteError> {
        self.check_graph()?;
        let mut fbb = FlatBufferBuilder::with_capacity(
            1024 + self
                .tensors
                .iter()
                .map(|t| t.data.as_ref().map_or(0, |d| d.len() + 32))
                .sum::<usize>(),
        );

        // Buffers: 0 is the empty sentinel, then one per constant in tensor order.
        let mut buffer_of = alloc::vec![0u32; self.tensors.len()];
        let mut buffers = Vec::new();
        let empty = fbb.start_table();
        buffers.push(fbb.end_table(empty));
        for (i, t) in self.tensors.iter().enumerate() {
            if let Some(data) = &t.data {
                let bytes: Vec<AlignedByte> = data.iter().map(|&b| AlignedByte(b)).collect();
                let v = fbb.create_vector(&bytes);
                let s = fbb.start_table();
                fbb.push_slot_always(vt(schema::buffer::DATA), v);
                buffers.push(fbb.end_table(s));
                buffer_of[i] = (buffers.len() - 1) as u32;
            }
        }

        // Tensors.
        let mut tensors = Vec::with_capacity(self.tensors.len());
        for (i, t) in self.tensors.iter().enumerate() {
            let shape = fbb.create_vector(&t.shape);
            let name = fbb.create_string(&t.name);
            let quant = t.quant.as_ref().map(|q| {
                let scale = fbb.create_vector(&q.scale);
                let zp = fbb.create_vector(&q.zero_point);
                let s = fbb.start_table();
                fbb.push_slot_always(vt(schema::quantization::SCALE), scale);
                fbb.push_slot_always(vt(schema::quantization::ZERO_POINT), zp);
                fbb.push_slot_always(
                    vt(schema::quantization::QUANTIZED_DIMENSION),
                    q.quantized_dimension,
                );
                fbb.end_table(s)
            });
            let s = fbb.start_table();
            fbb.push_slot_always(vt(schema::tensor::SHAPE), shape);
            fbb.push_slot_always(vt(schema::tensor::BUFFER), buffer_of[i]);
            fbb.push_slot_always(vt(schema::tensor::NAME), name);
            if let Some(q) = quant {
                fbb.push_slot_always(vt(schema::tensor::QUANTIZATION), q);
            }
            fbb.push_slot_always(vt(schema::tensor::TYPE), t.dtype.schema_type());
            tensors.push(fbb.end_table(s));
        }

        // Operator codes, deduplicated by (builtin code, version).
        let mut codes: Vec<(i32, i32)> = Vec::new();
        let mut operators = Vec::with_capacity(self.ops.len());
        for e in &self.ops {
            let dtypes = |ids: &[TensorId]| {
                ids.iter()
                    .map(|id| self.tensors[id.0].dtype)
                    .collect::<Vec<_>>()
            };
            let scale = |id: Option<&TensorId>| {
                id.and_then(|id| self.tensors[id.0].quant.as_ref())
                    .and_then(|q| q.scale.first().copied())
                    .unwrap_or(0.0)
            };
            let version = op_version(
                &e.op,
                &dtypes(&e.inputs),
                &dtypes(&e.outputs),
                [
                    scale(e.inputs.first()),
                    scale(e.inputs.get(1)),
                    scale(e.outputs.first()),
                ],
            );
            let key = (e.op.builtin_code(), version);
            let opcode_index = match codes.iter().position(|c| *c == key) {
                Some(p) => p,
                None => {
                    codes.push(key);
                    codes.len() - 1
                }
            } as u32;
            let ins: Vec<i32> = e.inputs.iter().map(|t| t.0 as i32).collect();
            let outs: Vec<i32> = e.outputs.iter().map(|t| t.0 as i32).collect();
            let ins = fbb.create_vector(&ins);
            let outs = fbb.create_vector(&outs);
            let (tag, options) = write_options(&mut fbb, &e.op);
            let s = fbb.start_table();
            fbb.push_slot_always(vt(schema::operator::OPCODE_INDEX), opcode_index);
            fbb.push_slot_always(vt(schema::operator::INPUTS), ins);
            fbb.push_slot_always(vt(schema::operator::OUTPUTS), outs);
            if let Some(o) = options {
                fbb.push_slot_always(vt(schema::operator::BUILTIN_OPTIONS), o);
            }
            fbb.push_slot_always(vt(schema::operator::BUILTIN_OPTIONS_TYPE), tag);
            operators.push(fbb.end_table(s));
        }
        let mut opcodes = Vec::with_capacity(codes.len());
        for &(code, version) in &codes {
            let s = fbb.start_table();
            fbb.push_slot_always(vt(schema::operator_code::BUILTIN_CODE), code);
            fbb.push_slot_always(vt(schema::operator_code::VERSION), version);
            let deprecated = code.min(bop::PLACEHOLDER_FOR_GREATER_OP_CODES) as i8;
            fbb.push_slot_always(
                vt(schema::operator_code::DEPRECATED_BUILTIN_CODE),
                deprecated,
            );
            opcodes.push(fbb.end_table(s));
        }

        // Subgraph and model.
        let tensors = fbb.create_vector(&tensors);
        let inputs: Vec<i32> = self.inputs.iter().map(|t| t.0 as i32).collect();
        let outputs: Vec<i32> = self.outputs.iter().map(|t| t.0 as i32).collect();
        let inputs = fbb.create_vector(&inputs);
        let outputs = fbb.create_vector(&outputs);
        let operators = fbb.create_vector(&operators);
        let sg_name = fbb.create_string("main");
        let s = fbb.start_table();
        fbb.push_slot_always(vt(schema::subgraph::TENSORS), tensors);
        fbb.push_slot_always(vt(schema::subgraph::INPUTS), inputs);
        fbb.push_slot_always(vt(schema::subgraph::OUTPUTS), outputs);
        fbb.push_slot_always(vt(schema::subgraph::OPERATORS), operators);
        fbb.push_slot_always(vt(schema::subgraph::NAME), sg_name);
        let subgraph = fbb.end_table(s);

        let opcodes = fbb.create_vector(&opcodes);
        let subgraphs = fbb.create_vector(&[subgraph]);
        let description = fbb.create_string(&self.description);
        let buffers = fbb.create_vector(&buffers);
        let s = fbb.start_table();
        fbb.push_slot_always(vt(schema::model::VERSION), schema::SCHEMA_VERSION);
        fbb.push_slot_always(vt(schema::model::OPERATOR_CODES), opcodes);
        fbb.push_slot_always(vt(schema::model::SUBGRAPHS), subgraphs);
        fbb.push_slot_always(vt(schema::model::DESCRIPTION), description);
        fbb.push_slot_always(vt(schema::model::BUFFERS), buffers);
        let model = fbb.end_table(s);
        let ident = core::str::from_utf8(schema::FILE_IDENTIFIER).unwrap_or("TFL3");
        fbb.finish(model, Some(ident));
        Ok(fbb.finished_data().to_vec())
    }
}

type Table = WIPOffset<flatbuffers::TableFinishedWIPOffset>;

/// Writes the builtin options table of `op`; returns the union tag and the table (if any).
fn write_options(fbb: &mut FlatBufferBuilder, op: &Op) -> (u8, Option<Table>) {
    match op {
        Op::Conv2d {
            padding,
            stride_w,
            stride_h,
            dilation_w,
            dilation_h,
            activation,
        } => {
            use schema::conv2d_options as f;
            let s = fbb.start_table();
            fbb.push_slot_always(vt(f::STRIDE_W), *stride_w);
            fbb.push_slot_always(vt(f::STRIDE_H), *stride_h);
            fbb.push_slot_always(vt(f::DILATION_W_FACTOR), *dilation_w);
            fbb.push_slot_always(vt(f::DILATION_H_FACTOR), *dilation_h);
            fbb.push_slot_always(vt(f::PADDING), padding.schema());
            fbb.push_slot_always(vt(f::FUSED_ACTIVATION_FUNCTION), activation.schema());
            (bopt::CONV2D_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::DepthwiseConv2d {
            padding,
            stride_w,
            stride_h,
            dilation_w,
            dilation_h,
            depth_multiplier,
            activation,
        } => {
            use schema::depthwise_conv2d_options as f;
            let s = fbb.start_table();
            fbb.push_slot_always(vt(f::STRIDE_W), *stride_w);
            fbb.push_slot_always(vt(f::STRIDE_H), *stride_h);
            fbb.push_slot_always(vt(f::DEPTH_MULTIPLIER), *depth_multiplier);
            fbb.push_slot_always(vt(f::DILATION_W_FACTOR), *dilation_w);
            fbb.push_slot_always(vt(f::DILATION_H_FACTOR), *dilation_h);
            fbb.push_slot_always(vt(f::PADDING), padding.schema());
            fbb.push_slot_always(vt(f::FUSED_ACTIVATION_FUNCTION), activation.schema());
            (bopt::DEPTHWISE_CONV2D_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::AveragePool2d {
            padding,
            stride_w,
            stride_h,
            filter_w,
            filter_h,
            activation,
        }
        | Op::MaxPool2d {
            padding,
            stride_w,
            stride_h,
            filter_w,
            filter_h,
            activation,
        } => {
            use schema::pool2d_options as f;
            let s = fbb.start_table();
            fbb.push_slot_always(vt(f::STRIDE_W), *stride_w);
            fbb.push_slot_always(vt(f::STRIDE_H), *stride_h);
            fbb.push_slot_always(vt(f::FILTER_WIDTH), *filter_w);
            fbb.push_slot_always(vt(f::FILTER_HEIGHT), *filter_h);
            fbb.push_slot_always(vt(f::PADDING), padding.schema());
            fbb.push_slot_always(vt(f::FUSED_ACTIVATION_FUNCTION), activation.schema());
            (bopt::POOL2D_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::FullyConnected {
            activation,
            keep_num_dims,
        } => {
            use schema::fully_connected_options as f;
            let s = fbb.start_table();
            fbb.push_slot_always(vt(f::FUSED_ACTIVATION_FUNCTION), activation.schema());
            fbb.push_slot_always(vt(f::WEIGHTS_FORMAT), 0i8);
            fbb.push_slot_always(vt(f::KEEP_NUM_DIMS), *keep_num_dims);
            fbb.push_slot_always(vt(f::ASYMMETRIC_QUANTIZE_INPUTS), false);
            (bopt::FULLY_CONNECTED_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::Add { activation } => {
            let s = fbb.start_table();
            fbb.push_slot_always(
                vt(schema::add_options::FUSED_ACTIVATION_FUNCTION),
                activation.schema(),
            );
            (bopt::ADD_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::Mul { activation } => {
            let s = fbb.start_table();
            fbb.push_slot_always(
                vt(schema::mul_options::FUSED_ACTIVATION_FUNCTION),
                activation.schema(),
            );
            (bopt::MUL_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::Mean { keep_dims } => {
            let s = fbb.start_table();
            fbb.push_slot_always(vt(schema::reducer_options::KEEP_DIMS), *keep_dims);
            (bopt::REDUCER_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::Pad => {
            // PadOptions has no fields; the converter still writes the (empty) table.
            let s = fbb.start_table();
            (bopt::PAD_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::Reshape { new_shape } => match new_shape {
            Some(shape) => {
                let v = fbb.create_vector(shape);
                let s = fbb.start_table();
                fbb.push_slot_always(vt(schema::reshape_options::NEW_SHAPE), v);
                (bopt::RESHAPE_OPTIONS, Some(fbb.end_table(s)))
            }
            None => (bopt::NONE, None),
        },
        Op::Squeeze { squeeze_dims } => {
            let v = fbb.create_vector(squeeze_dims);
            let s = fbb.start_table();
            fbb.push_slot_always(vt(schema::squeeze_options::SQUEEZE_DIMS), v);
            (bopt::SQUEEZE_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::Concatenation { axis, activation } => {
            use schema::concatenation_options as f;
            let s = fbb.start_table();
            fbb.push_slot_always(vt(f::AXIS), *axis);
            fbb.push_slot_always(vt(f::FUSED_ACTIVATION_FUNCTION), activation.schema());
            (bopt::CONCATENATION_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::Softmax { beta } => {
            let s = fbb.start_table();
            fbb.push_slot_always(vt(schema::softmax_options::BETA), *beta);
            (bopt::SOFTMAX_OPTIONS, Some(fbb.end_table(s)))
        }
        Op::Quantize
        | Op::Dequantize
        | Op::Logistic
        | Op::HardSwish
        | Op::Relu
        | Op::Relu6
        | Op::ReluN1To1 => (bopt::NONE, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_u32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    fn tiny() -> ModelBuilder {
        let mut b = ModelBuilder::new();
        let x = b.add_tensor(TensorSpec::activation(
            "x",
            &[1, 3],
            DType::I8,
            Quant::per_tensor(0.1, 0),
        ));
        let w = b.add_tensor(TensorSpec::const_i8(
            "w",
            &[2, 3],
            &[1, 2, 3, 4, 5, 6],
            Quant::per_channel(alloc::vec![0.5, 0.25], alloc::vec![0, 0], 0),
        ));
        let bias = b.add_tensor(TensorSpec::const_i32(
            "b",
            &[2],
            &[7, -7],
            Some(Quant::per_channel(
                alloc::vec![0.05, 0.025],
                alloc::vec![0, 0],
                0,
            )),
        ));
        let y = b.add_tensor(TensorSpec::activation(
            "y",
            &[1, 2],
            DType::I8,
            Quant::per_tensor(0.2, -3),
        ));
        b.add_op(
            Op::FullyConnected {
                activation: Activation::None,
                keep_num_dims: false,
            },
            &[x, w, bias],
            &[y],
        );
        b.set_inputs(&[x]);
        b.set_outputs(&[y]);
        b
    }

    #[test]
    fn writes_identifier_and_aligned_constant_data() {
        let bytes = tiny().finish().unwrap();
        assert_eq!(&bytes[4..8], schema::FILE_IDENTIFIER);
        // The weights (1..=6) and bias (7, -7 as LE i32) appear once each, 16-byte aligned and
        // preceded by their length prefix.
        for needle in [
            &[1u8, 2, 3, 4, 5, 6][..],
            &[7, 0, 0, 0, 0xf9, 0xff, 0xff, 0xff][..],
        ] {
            let pos = bytes
                .windows(needle.len())
                .position(|w| w == needle)
                .expect("constant data present");
            assert_eq!(pos % DATA_ALIGNMENT, 0, "data at {pos} is not aligned");
            assert_eq!(read_u32(&bytes, pos - 4) as usize, needle.len());
        }
    }

    #[test]
    fn rejects_data_length_mismatch_naming_the_tensor() {
        let mut b = tiny();
        b.tensors[1].data = Some(alloc::vec![0; 5]);
        let e = b.finish().unwrap_err();
        assert_eq!(
            e.to_string(),
            "tensor 1 'w': data is 5 bytes but shape [2, 3] of I8 needs 6"
        );
    }

    #[test]
    fn rejects_bad_quantisation() {
        let mut b = tiny();
        b.tensors[1].quant = Some(Quant::per_channel(
            alloc::vec![0.5, 0.5, 0.5],
            alloc::vec![0, 0, 0],
            0,
        ));
        assert!(b
            .finish()
            .unwrap_err()
            .to_string()
            .contains("3 per-channel scales but dimension 0 has size 2"));
        let mut b = tiny();
        b.tensors[0].quant = Some(Quant::per_tensor(0.1, 200));
        assert!(b
            .finish()
            .unwrap_err()
            .to_string()
            .contains("zero point 200 is outside the I8 range"));
        let mut b = tiny();
        b.tensors[3].quant = Some(Quant::per_tensor(0.0, 0));
        assert!(b
            .finish()
            .unwrap_err()
            .to_string()
            .starts_with("tensor 3 'y': quantisation scale 0"));
    }

    #[test]
    fn rejects_bad_operators_naming_the_operator() {
        let mut b = tiny();
        b.ops[0].inputs.push(TensorId(0));
        b.ops[0].inputs.push(TensorId(0));
        assert_eq!(
            b.finish().unwrap_err().to_string(),
            "operator 0 (FULLY_CONNECTED): has 5 inputs, needs 2 or 3"
        );
        let mut b = tiny();
        b.ops[0].inputs[0] = TensorId(99);
        assert!(b
            .finish()
            .unwrap_err()
            .to_string()
            .contains("tensor 99, which does not exist"));
        let mut b = tiny();
        b.set_inputs(&[]);
        assert!(b
            .finish()
            .unwrap_err()
            .to_string()
            .contains("input 0 'x' is neither a constant"));
        let mut b = tiny();
        b.set_outputs(&[TensorId(1)]);
        assert!(b
            .finish()
            .unwrap_err()
            .to_string()
            .contains("output 'w' is not computed"));
    }

    #[test]
    fn converter_versions_for_int8() {
        use DType::*;
        let conv = Op::Conv2d {
            padding: Padding::Same,
            stride_w: 1,
            stride_h: 1,
            dilation_w: 2,
            dilation_h: 1,
            activation: Activation::None,
        };
        assert_eq!(op_version(&conv, &[I8, I8, I32], &[I8], [0.0; 3]), 3);
        let fc = Op::FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
        };
        assert_eq!(op_version(&fc, &[I8, I8, I32], &[I8], [0.0; 3]), 4);
        assert_eq!(op_version(&fc, &[I8, I8], &[I8], [0.0; 3]), 6);
        let fck = Op::FullyConnected {
            activation: Activation::None,
            keep_num_dims: true,
        };
        assert_eq!(op_version(&fck, &[I8, I8, I32], &[I8], [0.0; 3]), 5);
        let mul = Op::Mul {
            activation: Activation::None,
        };
        assert_eq!(op_version(&mul, &[I8, I8], &[I8], [0.5, 0.5, 0.5]), 2);
        assert_eq!(op_version(&mul, &[I8, I8], &[I8], [2.0, 1.0, 2.0]), 3);
        assert_eq!(op_version(&Op::Quantize, &[U8], &[I8], [0.0; 3]), 1);
        assert_eq!(op_version(&Op::HardSwish, &[I8], &[I8], [0.0; 3]), 1);
    }
}
