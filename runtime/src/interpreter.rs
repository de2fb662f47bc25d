//! The interpreter: binds each operator to its kernel, lays out the caller's arena, and runs the
//! graph. No heap: all state lives in the arena, which is laid out as
//!
//! ```text
//! | tensor plan (4 words/tensor) | op blob table (1 word/op) | op blobs | activations |
//! ```
//!
//! (each part 16-byte aligned). Op blobs hold per-channel data computed once at init (CONV_2D's
//! and DEPTHWISE_CONV_2D's fixed-point multipliers and shifts, FULLY_CONNECTED's real scales,
//! LOGISTIC's 256-entry table). Scalar kernel parameters
//! are re-derived from the model at each invoke (cheap, and keeps the arena small).
//!
//! ```
//! # fn main() -> Result<(), kdruntime::Error> {
//! let bytes = include_bytes!("../tests/fixtures/core/fc_pt_bias.tflite");
//! let model = kdruntime::Model::from_bytes(bytes)?; // zero-copy, fully validated
//! let mut arena = vec![0u8; model.arena_size()?]; // in no_std: a static buffer
//! let mut interp = kdruntime::Interpreter::new(&model, &mut arena)?;
//! let info = interp.input_info(0)?;
//! assert_eq!((info.shape.dims(), info.dtype), (&[1, 64][..], kdruntime::DType::Int8));
//! interp.input_mut(0)?.fill(0);
//! interp.invoke()?;
//! assert_eq!(interp.output(0)?.len(), 32); // raw int8 bytes
//! # Ok(())
//! # }
//! ```
//!
//! Adding an operator (e.g. one of `kernels::<op>` with `prepare`/`eval`):
//! 1. a `Bound` variant holding its validated params and the `TensorInfo`s it reads and writes;
//! 2. a `bind` match arm: check types/quantisation, read the options table, call
//!    `kern(op, <op>::prepare(...))` (the `&'static str` reason becomes `InvalidOperator` with
//!    the operator's index, opcode and version);
//! 3. a `run` match arm: `self.location(..)` for each tensor, `self.split()`, then
//!    `io(acts, base, [in0, in1, ...], out)` yields the N input slices (shared; constants come
//!    from the model) and the output slice (exclusive), and the kernel's `eval` is called;
//! 4. if it needs per-channel data or a table, a size in `Bound::blob_bytes` and a fill in
//!    `init_blob` (and skip recomputing it in `bind` when `full` is false).

use crate::bytes::{
    as_f64, as_f64_mut, as_i32, as_i32_mut, as_i8, as_i8_mut, as_u32_mut, set_u32_word, u32_word,
};
use crate::error::{Error, Result};
use crate::kernels::activations::{self, FusedActivation, ReluKind};
use crate::kernels::depthwise_conv::{self, Padding};
use crate::kernels::{
    add, concatenation, conv, dequantize, fully_connected, hard_swish, logistic, mean, mul, pad,
    pooling, quantize, reshape, softmax,
};
use crate::kernels::{pack, shape, strided_slice};
use crate::model::{DType, Model, OperatorInfo, TensorInfo, MAX_RANK};
use crate::plan::{self, align_up, ALIGN, MAX_PLANNED_TENSORS, NONE, WORDS_PER_TENSOR};
use crate::tflite::schema::{self, builtin_operator as opc, builtin_options};

/// Byte sizes of the arena's parts.
#[derive(Clone, Copy, Debug)]
struct Layout {
    plan_bytes: usize,
    table_bytes: usize,
    blobs_bytes: usize,
    activation_bytes: usize,
}

impl Layout {
    fn persistent(&self) -> usize {
        self.plan_bytes + self.table_bytes + self.blobs_bytes
    }
    /// Total including the worst-case padding to align the caller's buffer.
    fn total(&self) -> Option<usize> {
        self.persistent()
            .checked_add(self.activation_bytes)?
            .checked_add(ALIGN - 1)
    }
}

fn overflow() -> Error {
    Error::UnsupportedModel {
        reason: "arena size overflows",
    }
}

fn layout(model: &Model, recs: &mut [u32]) -> Result<Layout> {
    let activation_bytes = plan::plan(model, recs)?;
    let mut blobs_bytes = 0usize;
    for i in 0..model.num_operators() {
        let op = model.operator(i)?;
        let b = bind(model, &op, true)?;
        blobs_bytes = align_up(b.blob_bytes())
            .and_then(|n| n.checked_add(blobs_bytes))
            .ok_or_else(overflow)?;
    }
    let plan_bytes = align_up(model.num_tensors() * WORDS_PER_TENSOR * 4).ok_or_else(overflow)?;
    let table_bytes = align_up(model.num_operators() * 4).ok_or_else(overflow)?;
    Ok(Layout {
        plan_bytes,
        table_bytes,
        blobs_bytes,
        activation_bytes,
    })
}

impl<'a> Model<'a> {
    /// Arena bytes `Interpreter::new` needs for this model (includes up to 15 bytes to align the
    /// caller's buffer, so any buffer of this size works). Validates every operator on the way.
    /// Plans with a stack scratch of `16 * MAX_PLANNED_TENSORS` bytes; on small stacks use
    /// [`Model::arena_size_with_scratch`].
    pub fn arena_size(&self) -> Result<usize> {
        let n = self.num_tensors();
        if n > MAX_PLANNED_TENSORS {
            return Err(Error::TooManyTensors {
                count: n,
                max: MAX_PLANNED_TENSORS,
            });
        }
        let mut scratch = [0u32; MAX_PLANNED_TENSORS * WORDS_PER_TENSOR];
        self.arena_size_with_scratch(&mut scratch)
    }

    /// [`Model::arena_size`] with caller-provided planner scratch of at least
    /// `WORDS_PER_TENSOR * num_tensors()` words (no size limit, no stack use).
    pub fn arena_size_with_scratch(&self, scratch: &mut [u32]) -> Result<usize> {
        layout(self, scratch)?.total().ok_or_else(overflow)
    }
}

/// An operator bound to its kernel: validated parameters plus where its data lives.
#[derive(Clone, Copy, Debug)]
enum Bound<'m> {
    Conv {
        params: conv::ConvParams,
        input: TensorInfo<'m>,
        filter: TensorInfo<'m>,
        bias: Option<&'m [u8]>,
        output: TensorInfo<'m>,
    },
    FullyConnected {
        params: fully_connected::FcParams,
        input: TensorInfo<'m>,
        filter: TensorInfo<'m>,
        bias: Option<&'m [u8]>,
        output: TensorInfo<'m>,
    },
    Quantize {
        params: quantize::QuantizeParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    Dequantize {
        params: dequantize::DequantizeParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    Mean {
        params: mean::MeanParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    Reshape {
        params: reshape::ReshapeParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    DepthwiseConv {
        params: depthwise_conv::DepthwiseConvParams,
        input: TensorInfo<'m>,
        filter: TensorInfo<'m>,
        bias: Option<&'m [u8]>,
        output: TensorInfo<'m>,
    },
    Add {
        params: add::AddParams,
        a: TensorInfo<'m>,
        b: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    Mul {
        params: mul::MulParams,
        a: TensorInfo<'m>,
        b: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    Pool {
        params: pooling::PoolParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    Pad {
        params: pad::PadParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    /// The inputs are re-read from the operator at run time (there may be up to
    /// [`MAX_CONCAT_INPUTS`] of them).
    Concat {
        params: concatenation::ConcatParams,
        output: TensorInfo<'m>,
    },
    Softmax {
        params: softmax::SoftmaxParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    /// The 256-entry table lives in the op blob (built once at init).
    Logistic {
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    HardSwish {
        params: hard_swish::HardSwishParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    Relu {
        params: activations::ReluParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    // Shape arithmetic that TFLiteConverter emits for a dynamic batch (SHAPE -> STRIDED_SLICE
    // -> PACK -> RESHAPE's shape input); see `bind_shape_op`.
    Shape {
        params: shape::ShapeParams,
        output: TensorInfo<'m>,
    },
    StridedSlice {
        params: strided_slice::StridedSliceParams,
        input: TensorInfo<'m>,
        output: TensorInfo<'m>,
    },
    /// The inputs are re-read from the operator at run time, like CONCATENATION's.
    Pack {
        params: pack::PackParams,
        output: TensorInfo<'m>,
    },
}

/// Most inputs a CONCATENATION may have (TFLite Micro allows 10).
pub const MAX_CONCAT_INPUTS: usize = 16;

impl Bound<'_> {
    /// Persistent bytes the op needs (per channel: two i32 for conv and depthwise, one f64 for
    /// FC; LOGISTIC's 256-byte table).
    fn blob_bytes(&self) -> usize {
        match self {
            Bound::Conv { params, .. } => params.out_c * 8,
            Bound::FullyConnected { params, .. } => params.out_depth * 8,
            Bound::DepthwiseConv { params, .. } => params.filter_shape[3] * 8,
            Bound::Logistic { .. } => 256,
            _ => 0,
        }
    }
}

fn input_tensor<'m>(model: &Model<'m>, op: &OperatorInfo<'m>, i: usize) -> Result<TensorInfo<'m>> {
    let t = op.input(i).ok_or(op.invalid("missing input tensor"))?;
    model.tensor(t)
}

fn output_tensor<'m>(model: &Model<'m>, op: &OperatorInfo<'m>, i: usize) -> Result<TensorInfo<'m>> {
    let t = op.output(i).ok_or(op.invalid("missing output tensor"))?;
    let info = model.tensor(t)?;
    if info.data.is_some() {
        return Err(op.invalid_tensor(&info, "output tensor is constant"));
    }
    if (0..op.inputs.len()).any(|k| op.input(k) == Some(t)) {
        return Err(op.invalid_tensor(&info, "operator writes one of its own inputs"));
    }
    Ok(info)
}

fn expect_type(op: &OperatorInfo, t: &TensorInfo, ty: DType, what: &'static str) -> Result<()> {
    if t.dtype == ty {
        Ok(())
    } else {
        Err(op.invalid_tensor(t, what))
    }
}

fn per_tensor_quant(op: &OperatorInfo, t: &TensorInfo, what: &'static str) -> Result<()> {
    if t.quant.len() == 1 {
        Ok(())
    } else {
        Err(op.invalid_tensor(t, what))
    }
}

/// An int8 activation tensor with per-tensor quantisation; returns `(scale, zero point)` with
/// the zero point checked to fit int8.
fn int8_activation(op: &OperatorInfo, t: &TensorInfo) -> Result<(f32, i32)> {
    expect_type(op, t, DType::Int8, "must be int8")?;
    per_tensor_quant(
        op,
        t,
        "needs per-tensor quantisation (one scale and zero point)",
    )?;
    let zp = i32::try_from(t.zero_point())
        .ok()
        .filter(|z| (-128..=127).contains(z))
        .ok_or(op.invalid_tensor(t, "zero point outside the int8 range"))?;
    Ok((t.scale(), zp))
}

fn dims4(op: &OperatorInfo, t: &TensorInfo, what: &'static str) -> Result<[usize; 4]> {
    let s = t.shape;
    if s.rank() != 4 {
        return Err(op.invalid_tensor(t, what));
    }
    Ok([s.dim(0), s.dim(1), s.dim(2), s.dim(3)])
}

/// A shape as usize dimensions on the stack; use `&dims[..rank]`.
fn udims(t: &TensorInfo) -> ([usize; MAX_RANK], usize) {
    let mut d = [0usize; MAX_RANK];
    for (k, v) in d.iter_mut().enumerate().take(t.shape.rank()) {
        *v = t.shape.dim(k);
    }
    (d, t.shape.rank())
}

/// A stride, dilation or window option: must be at least 1.
fn positive(op: &OperatorInfo, v: i32, what: &'static str) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or(op.invalid(what))
}

fn fused(op: &OperatorInfo, code: i8) -> Result<FusedActivation> {
    kern(op, FusedActivation::from_schema(code))
}

fn padding_option(op: &OperatorInfo, code: i8) -> Result<Padding> {
    kern(op, Padding::from_schema(code))
}

/// The options table if present with tag `tag`; `None` when absent (defaults apply); an error
/// when another options type is attached.
fn options_or_default<'m>(
    op: &OperatorInfo<'m>,
    tag: u8,
) -> Result<Option<crate::tflite::reader::Table<'m>>> {
    match op.options {
        None => Ok(None),
        Some(t) if op.options_type == tag => Ok(Some(t)),
        Some(_) => Err(op.invalid("options table of the wrong type")),
    }
}

/// `(input, (scale, zero point), output, (scale, zero point))` of an elementwise operator.
type Unary<'m> = (TensorInfo<'m>, (f32, i32), TensorInfo<'m>, (f32, i32));

/// Single int8 input, single int8 output of the same shape (elementwise activations).
fn unary_int8<'m>(model: &Model<'m>, op: &OperatorInfo<'m>) -> Result<Unary<'m>> {
    let input = input_tensor(model, op, 0)?;
    let output = output_tensor(model, op, 0)?;
    let iq = int8_activation(op, &input)?;
    let oq = int8_activation(op, &output)?;
    if input.shape != output.shape {
        return Err(op.invalid_tensor(&output, "output shape differs from the input shape"));
    }
    Ok((input, iq, output, oq))
}

/// The options table when the union tag matches `tag`.
fn options<'m>(
    op: &OperatorInfo<'m>,
    tag: u8,
    what: &'static str,
) -> Result<crate::tflite::reader::Table<'m>> {
    match op.options {
        Some(t) if op.options_type == tag => Ok(t),
        _ => Err(op.invalid(what)),
    }
}

/// Filter checks shared by CONV_2D and FULLY_CONNECTED: int8, constant, symmetric, one scale or
/// one per output channel along dimension 0.
fn check_filter(op: &OperatorInfo, filter: &TensorInfo, out_channels: usize) -> Result<()> {
    expect_type(op, filter, DType::Int8, "filter must be int8")?;
    if filter.data.is_none() {
        return Err(op.invalid("filter must be constant"));
    }
    let n = filter.quant.len();
    if n != 1 && !(n == out_channels && filter.quant.quantized_dimension == 0) {
        return Err(op.invalid("filter needs one scale or one per output channel on dimension 0"));
    }
    if (0..n).any(|c| filter.quant.zero_point(c) != 0) {
        return Err(op.invalid("filter zero points must be 0"));
    }
    Ok(())
}

fn check_bias<'m>(
    model: &Model<'m>,
    op: &OperatorInfo<'m>,
    channels: usize,
) -> Result<Option<&'m [u8]>> {
    let Some(t) = op.input(2) else {
        return Ok(None);
    };
    let bias = model.tensor(t)?;
    expect_type(op, &bias, DType::Int32, "bias must be int32")?;
    let data = bias.data.ok_or(op.invalid("bias must be constant"))?;
    if bias.num_elements() != channels {
        return Err(op.invalid("bias length differs from the output channel count"));
    }
    Ok(Some(data))
}

fn int8_kind(op: &OperatorInfo, t: &TensorInfo) -> Result<quantize::Int8Kind> {
    match t.dtype {
        DType::Int8 => Ok(quantize::Int8Kind::Signed),
        DType::UInt8 => Ok(quantize::Int8Kind::Unsigned),
        _ => Err(op.invalid("QUANTIZE supports float32/int8/uint8 input and int8/uint8 output")),
    }
}

/// Wraps a kernel's reason with the operator's identity.
fn kern<T>(op: &OperatorInfo, r: core::result::Result<T, &'static str>) -> Result<T> {
    r.map_err(|reason| op.invalid(reason))
}

/// Validates operator `op` and derives its kernel parameters. `full` is false on the invoke
/// path, where the operator was already validated at init and only the work whose result lives
/// in the op blob (LOGISTIC's table) is skipped.
fn bind<'m>(model: &Model<'m>, op: &OperatorInfo<'m>, full: bool) -> Result<Bound<'m>> {
    match op.opcode {
        opc::CONV_2D => {
            let input = input_tensor(model, op, 0)?;
            let filter = input_tensor(model, op, 1)?;
            let output = output_tensor(model, op, 0)?;
            expect_type(op, &input, DType::Int8, "input must be int8")?;
            expect_type(op, &output, DType::Int8, "output must be int8")?;
            per_tensor_quant(op, &input, "input needs per-tensor quantisation")?;
            per_tensor_quant(op, &output, "output needs per-tensor quantisation")?;
            let fd = dims4(op, &filter, "filter must be 4-D (OHWI)")?;
            check_filter(op, &filter, fd[0])?;
            let bias = check_bias(model, op, fd[0])?;
            use schema::conv2d_options as f;
            let o = options(op, builtin_options::CONV2D_OPTIONS, "missing Conv2DOptions")?;
            let spec = conv::ConvSpec {
                input: dims4(op, &input, "input must be 4-D (NHWC)")?,
                filter: fd,
                output: dims4(op, &output, "output must be 4-D (NHWC)")?,
                stride: (o.i32(f::STRIDE_H, 0)?, o.i32(f::STRIDE_W, 0)?),
                dilation: (
                    o.i32(f::DILATION_H_FACTOR, 1)?,
                    o.i32(f::DILATION_W_FACTOR, 1)?,
                ),
                padding: o.i8(f::PADDING, schema::padding::SAME)?,
                activation: o.i8(f::FUSED_ACTIVATION_FUNCTION, 0)?,
                input_zero_point: input.zero_point(),
                output_zero_point: output.zero_point(),
                output_scale: output.scale(),
            };
            Ok(Bound::Conv {
                params: kern(op, conv::prepare(&spec))?,
                input,
                filter,
                bias,
                output,
            })
        }
        opc::FULLY_CONNECTED => {
            let input = input_tensor(model, op, 0)?;
            let filter = input_tensor(model, op, 1)?;
            let output = output_tensor(model, op, 0)?;
            expect_type(op, &input, DType::Int8, "input must be int8")?;
            expect_type(op, &output, DType::Int8, "output must be int8")?;
            per_tensor_quant(op, &input, "input needs per-tensor quantisation")?;
            per_tensor_quant(op, &output, "output needs per-tensor quantisation")?;
            if filter.shape.rank() != 2 {
                return Err(op.invalid("filter must be 2-D [out, in]"));
            }
            let fd = [filter.shape.dim(0), filter.shape.dim(1)];
            check_filter(op, &filter, fd[0])?;
            let bias = check_bias(model, op, fd[0])?;
            use schema::fully_connected_options as f;
            let o = options(
                op,
                builtin_options::FULLY_CONNECTED_OPTIONS,
                "missing FullyConnectedOptions",
            )?;
            if o.i8(f::WEIGHTS_FORMAT, 0)? != 0 {
                return Err(op.invalid("only the DEFAULT weights format is supported"));
            }
            let spec = fully_connected::FcSpec {
                input_elements: input.num_elements(),
                filter: fd,
                input_dims: input.shape.dims(),
                output_dims: output.shape.dims(),
                keep_num_dims: o.bool(f::KEEP_NUM_DIMS, false)?,
                activation: o.i8(f::FUSED_ACTIVATION_FUNCTION, 0)?,
                input_zero_point: input.zero_point(),
                output_zero_point: output.zero_point(),
                output_scale: output.scale(),
            };
            // `spec` borrows the TensorInfos' shapes; prepare copies what it needs.
            let params = kern(op, fully_connected::prepare(&spec))?;
            Ok(Bound::FullyConnected {
                params,
                input,
                filter,
                bias,
                output,
            })
        }
        opc::QUANTIZE => {
            let input = input_tensor(model, op, 0)?;
            let output = output_tensor(model, op, 0)?;
            if input.num_elements() != output.num_elements() {
                return Err(op.invalid("input and output element counts differ"));
            }
            per_tensor_quant(op, &output, "output needs per-tensor quantisation")?;
            let out_kind = int8_kind(op, &output)?;
            let params = if input.dtype == DType::Float32 {
                kern(
                    op,
                    quantize::prepare_affine(out_kind, output.scale(), output.zero_point()),
                )?
            } else {
                per_tensor_quant(op, &input, "input needs per-tensor quantisation")?;
                kern(
                    op,
                    quantize::prepare_requantize(
                        int8_kind(op, &input)?,
                        input.scale(),
                        input.zero_point(),
                        out_kind,
                        output.scale(),
                        output.zero_point(),
                    ),
                )?
            };
            Ok(Bound::Quantize {
                params,
                input,
                output,
            })
        }
        opc::DEQUANTIZE => {
            let input = input_tensor(model, op, 0)?;
            let output = output_tensor(model, op, 0)?;
            expect_type(op, &output, DType::Float32, "output must be float32")?;
            per_tensor_quant(op, &input, "input needs per-tensor quantisation")?;
            if input.num_elements() != output.num_elements() {
                return Err(op.invalid("input and output element counts differ"));
            }
            let params = match input.dtype {
                DType::Int8 => dequantize::prepare(input.scale(), input.zero_point()),
                DType::UInt8 => dequantize::prepare_uint8(input.scale(), input.zero_point()),
                _ => return Err(op.invalid_tensor(&input, "input must be int8 or uint8")),
            };
            Ok(Bound::Dequantize {
                params: kern(op, params)?,
                input,
                output,
            })
        }
        opc::MEAN => {
            let input = input_tensor(model, op, 0)?;
            let axis = input_tensor(model, op, 1)?;
            let output = output_tensor(model, op, 0)?;
            expect_type(op, &input, DType::Int8, "input must be int8")?;
            expect_type(op, &output, DType::Int8, "output must be int8")?;
            expect_type(op, &axis, DType::Int32, "axis must be int32")?;
            per_tensor_quant(op, &input, "input needs per-tensor quantisation")?;
            per_tensor_quant(op, &output, "output needs per-tensor quantisation")?;
            let axis_data = axis.data.ok_or(op.invalid("axis must be constant"))?;
            let mut axes = [0i32; 8];
            let n_axes = axis.num_elements();
            if n_axes > axes.len() {
                return Err(op.invalid("more than 8 axes"));
            }
            for (a, c) in axes.iter_mut().zip(axis_data.chunks_exact(4)) {
                *a = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            let keep_dims = match op.options {
                Some(t) if op.options_type == builtin_options::REDUCER_OPTIONS => {
                    t.bool(schema::reducer_options::KEEP_DIMS, false)?
                }
                _ => false,
            };
            let spec = mean::MeanSpec {
                input_dims: input.shape.dims(),
                axes: axes.get(..n_axes).unwrap_or(&[]),
                keep_dims,
                output_dims: output.shape.dims(),
                input_scale: input.scale(),
                input_zero_point: input.zero_point(),
                output_scale: output.scale(),
                output_zero_point: output.zero_point(),
            };
            let params = kern(op, mean::prepare(&spec))?;
            Ok(Bound::Mean {
                params,
                input,
                output,
            })
        }
        opc::RESHAPE | opc::SQUEEZE => {
            let input = input_tensor(model, op, 0)?;
            let output = output_tensor(model, op, 0)?;
            if input.dtype != output.dtype {
                return Err(op.invalid("input and output types differ"));
            }
            let params = kern(op, reshape::prepare(input.byte_size(), output.byte_size()))?;
            Ok(Bound::Reshape {
                params,
                input,
                output,
            })
        }
        opc::DEPTHWISE_CONV_2D => {
            let input = input_tensor(model, op, 0)?;
            let filter = input_tensor(model, op, 1)?;
            let output = output_tensor(model, op, 0)?;
            let (in_s, in_zp) = int8_activation(op, &input)?;
            let (out_s, out_zp) = int8_activation(op, &output)?;
            let fd = dims4(op, &filter, "filter must be 4-D [1, KH, KW, C * M]")?;
            expect_type(op, &filter, DType::Int8, "filter must be int8")?;
            if filter.data.is_none() {
                return Err(op.invalid_tensor(&filter, "filter must be constant"));
            }
            let n = filter.quant.len();
            if n != 1 && !(n == fd[3] && filter.quant.quantized_dimension == 3) {
                return Err(op.invalid_tensor(
                    &filter,
                    "filter needs one scale or one per output channel on dimension 3",
                ));
            }
            if (0..n).any(|c| filter.quant.zero_point(c) != 0) {
                return Err(op.invalid_tensor(&filter, "filter zero points must be 0"));
            }
            let bias = check_bias(model, op, fd[3])?;
            use schema::depthwise_conv2d_options as f;
            let o = options(
                op,
                builtin_options::DEPTHWISE_CONV2D_OPTIONS,
                "missing DepthwiseConv2DOptions",
            )?;
            let in_dims = dims4(op, &input, "input must be 4-D (NHWC)")?;
            // TFLite derives the multiplier from the channel counts when the option is 0.
            let dm = match o.i32(f::DEPTH_MULTIPLIER, 0)? {
                0 if in_dims[3] > 0 => fd[3] / in_dims[3],
                m => positive(op, m, "depth_multiplier must be positive")?,
            };
            let params = kern(
                op,
                depthwise_conv::prepare(
                    in_dims,
                    fd,
                    dims4(op, &output, "output must be 4-D (NHWC)")?,
                    [
                        positive(op, o.i32(f::STRIDE_H, 0)?, "stride_h must be positive")?,
                        positive(op, o.i32(f::STRIDE_W, 0)?, "stride_w must be positive")?,
                    ],
                    [
                        positive(
                            op,
                            o.i32(f::DILATION_H_FACTOR, 1)?,
                            "dilation_h must be positive",
                        )?,
                        positive(
                            op,
                            o.i32(f::DILATION_W_FACTOR, 1)?,
                            "dilation_w must be positive",
                        )?,
                    ],
                    padding_option(op, o.i8(f::PADDING, schema::padding::SAME)?)?,
                    dm,
                    fused(op, o.i8(f::FUSED_ACTIVATION_FUNCTION, 0)?)?,
                    in_s,
                    in_zp,
                    out_s,
                    out_zp,
                ),
            )?;
            Ok(Bound::DepthwiseConv {
                params,
                input,
                filter,
                bias,
                output,
            })
        }
        opc::ADD | opc::MUL => {
            let a = input_tensor(model, op, 0)?;
            let b = input_tensor(model, op, 1)?;
            let output = output_tensor(model, op, 0)?;
            let (a_s, a_zp) = int8_activation(op, &a)?;
            let (b_s, b_zp) = int8_activation(op, &b)?;
            let (o_s, o_zp) = int8_activation(op, &output)?;
            let (ad, ar) = udims(&a);
            let (bd, br) = udims(&b);
            let (od, or) = udims(&output);
            let (ad, bd, od) = (&ad[..ar], &bd[..br], &od[..or]);
            if op.opcode == opc::ADD {
                use schema::add_options as f;
                let o = options_or_default(op, builtin_options::ADD_OPTIONS)?;
                let act = fused(
                    op,
                    o.map_or(Ok(0), |o| o.i8(f::FUSED_ACTIVATION_FUNCTION, 0))?,
                )?;
                let params = kern(
                    op,
                    add::prepare(a_s, a_zp, b_s, b_zp, o_s, o_zp, act, ad, bd, od),
                )?;
                Ok(Bound::Add {
                    params,
                    a,
                    b,
                    output,
                })
            } else {
                use schema::mul_options as f;
                let o = options_or_default(op, builtin_options::MUL_OPTIONS)?;
                let act = fused(
                    op,
                    o.map_or(Ok(0), |o| o.i8(f::FUSED_ACTIVATION_FUNCTION, 0))?,
                )?;
                let params = kern(
                    op,
                    mul::prepare(a_s, a_zp, b_s, b_zp, o_s, o_zp, act, ad, bd, od),
                )?;
                Ok(Bound::Mul {
                    params,
                    a,
                    b,
                    output,
                })
            }
        }
        opc::AVERAGE_POOL_2D | opc::MAX_POOL_2D => {
            let input = input_tensor(model, op, 0)?;
            let output = output_tensor(model, op, 0)?;
            int8_activation(op, &input)?;
            let (o_s, o_zp) = int8_activation(op, &output)?;
            use schema::pool2d_options as f;
            let o = options(op, builtin_options::POOL2D_OPTIONS, "missing Pool2DOptions")?;
            let kind = if op.opcode == opc::MAX_POOL_2D {
                pooling::PoolKind::Max
            } else {
                pooling::PoolKind::Average
            };
            let params = kern(
                op,
                pooling::prepare(
                    kind,
                    dims4(op, &input, "input must be 4-D (NHWC)")?,
                    dims4(op, &output, "output must be 4-D (NHWC)")?,
                    [
                        positive(
                            op,
                            o.i32(f::FILTER_HEIGHT, 0)?,
                            "filter_height must be positive",
                        )?,
                        positive(
                            op,
                            o.i32(f::FILTER_WIDTH, 0)?,
                            "filter_width must be positive",
                        )?,
                    ],
                    [
                        positive(op, o.i32(f::STRIDE_H, 0)?, "stride_h must be positive")?,
                        positive(op, o.i32(f::STRIDE_W, 0)?, "stride_w must be positive")?,
                    ],
                    padding_option(op, o.i8(f::PADDING, schema::padding::SAME)?)?,
                    fused(op, o.i8(f::FUSED_ACTIVATION_FUNCTION, 0)?)?,
                    o_s,
                    o_zp,
                ),
            )?;
            Ok(Bound::Pool {
                params,
                input,
                output,
            })
        }
        opc::PAD => {
            let input = input_tensor(model, op, 0)?;
            let paddings = input_tensor(model, op, 1)?;
            let output = output_tensor(model, op, 0)?;
            int8_activation(op, &input)?;
            let (_, o_zp) = int8_activation(op, &output)?;
            let data = paddings
                .data
                .ok_or(op.invalid_tensor(&paddings, "paddings must be constant"))?;
            let rank = input.shape.rank();
            if paddings.shape.dims() != [rank as i32, 2] {
                return Err(
                    op.invalid_tensor(&paddings, "paddings must have shape [input rank, 2]")
                );
            }
            let mut pads = [0i32; 2 * MAX_RANK];
            let pads = pads
                .get_mut(..2 * rank)
                .ok_or(op.invalid_tensor(&input, "rank too high"))?;
            match paddings.dtype {
                DType::Int32 => {
                    for (p, c) in pads.iter_mut().zip(data.chunks_exact(4)) {
                        *p = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                }
                DType::Int64 => {
                    for (p, c) in pads.iter_mut().zip(data.chunks_exact(8)) {
                        let v =
                            i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                        *p = i32::try_from(v).map_err(|_| {
                            op.invalid_tensor(&paddings, "padding value does not fit int32")
                        })?;
                    }
                }
                _ => return Err(op.invalid_tensor(&paddings, "paddings must be int32 or int64")),
            }
            let (id, ir) = udims(&input);
            let (od, or) = udims(&output);
            let params = kern(op, pad::prepare(&id[..ir], pads, &od[..or], o_zp))?;
            Ok(Bound::Pad {
                params,
                input,
                output,
            })
        }
        opc::CONCATENATION => {
            let output = output_tensor(model, op, 0)?;
            let oq = int8_activation(op, &output)?;
            let n = op.inputs.len();
            if n == 0 || n > MAX_CONCAT_INPUTS {
                return Err(op.invalid("CONCATENATION takes 1 to 16 inputs"));
            }
            let mut dims = [[0usize; MAX_RANK]; MAX_CONCAT_INPUTS];
            let mut ranks = [0usize; MAX_CONCAT_INPUTS];
            let mut quants = [(0f32, 0i32); MAX_CONCAT_INPUTS];
            for k in 0..n {
                let t = input_tensor(model, op, k)?;
                quants[k] = int8_activation(op, &t)?;
                (dims[k], ranks[k]) = udims(&t);
            }
            let mut shapes: [&[usize]; MAX_CONCAT_INPUTS] = [&[]; MAX_CONCAT_INPUTS];
            for k in 0..n {
                shapes[k] = &dims[k][..ranks[k]];
            }
            use schema::concatenation_options as f;
            let o = options(
                op,
                builtin_options::CONCATENATION_OPTIONS,
                "missing ConcatenationOptions",
            )?;
            fused(op, o.i8(f::FUSED_ACTIVATION_FUNCTION, 0)?)?;
            let (od, or) = udims(&output);
            let params = kern(
                op,
                concatenation::prepare(
                    &shapes[..n],
                    &quants[..n],
                    &od[..or],
                    oq,
                    o.i32(f::AXIS, 0)?,
                ),
            )?;
            Ok(Bound::Concat { params, output })
        }
        opc::SOFTMAX => {
            let (input, (i_s, _), output, (o_s, o_zp)) = unary_int8(model, op)?;
            let o = options(
                op,
                builtin_options::SOFTMAX_OPTIONS,
                "missing SoftmaxOptions",
            )?;
            let beta = o.f32(schema::softmax_options::BETA, 0.0)?;
            let (d, r) = udims(&input);
            let params = kern(op, softmax::prepare(i_s, beta, o_s, o_zp, &d[..r]))?;
            Ok(Bound::Softmax {
                params,
                input,
                output,
            })
        }
        opc::LOGISTIC => {
            let (input, (i_s, i_zp), output, (o_s, o_zp)) = unary_int8(model, op)?;
            if full {
                kern(op, logistic::prepare(i_s, i_zp, o_s, o_zp))?;
            }
            Ok(Bound::Logistic { input, output })
        }
        opc::HARD_SWISH => {
            let (input, (i_s, i_zp), output, (o_s, o_zp)) = unary_int8(model, op)?;
            let params = kern(op, hard_swish::prepare(i_s, i_zp, o_s, o_zp))?;
            Ok(Bound::HardSwish {
                params,
                input,
                output,
            })
        }
        opc::RELU | opc::RELU6 | opc::RELU_N1_TO_1 => {
            let (input, (i_s, i_zp), output, (o_s, o_zp)) = unary_int8(model, op)?;
            let kind = match op.opcode {
                opc::RELU => ReluKind::Relu,
                opc::RELU6 => ReluKind::Relu6,
                _ => ReluKind::ReluN1To1,
            };
            let params = kern(op, activations::prepare_relu(kind, i_s, i_zp, o_s, o_zp))?;
            Ok(Bound::Relu {
                params,
                input,
                output,
            })
        }
        opc::SHAPE | opc::STRIDED_SLICE | opc::PACK => bind_shape_op(model, op),
        _ => Err(op.unsupported()),
    }
}

/// A data-moving operator's element size; int8/uint8 tensors must carry `reference`'s
/// quantisation, since the bytes are copied unchanged.
fn same_meaning(op: &OperatorInfo, t: &TensorInfo, reference: &TensorInfo) -> Result<usize> {
    if t.dtype != reference.dtype {
        return Err(op.invalid_tensor(t, "type differs from the output's"));
    }
    if matches!(t.dtype, DType::Int8 | DType::UInt8)
        && (t.quant.len() != 1
            || reference.quant.len() != 1
            || t.scale() != reference.scale()
            || t.zero_point() != reference.zero_point())
    {
        return Err(op.invalid_tensor(t, "quantisation differs from the output's"));
    }
    Ok(t.dtype.size())
}

/// A constant 1-D int32 tensor (STRIDED_SLICE's begin/end/strides) into `buf`.
fn const_i32s<'b>(
    op: &OperatorInfo,
    t: &TensorInfo,
    buf: &'b mut [i32; strided_slice::MAX_DIMS],
) -> Result<&'b [i32]> {
    expect_type(op, t, DType::Int32, "must be int32")?;
    let data = t.data.ok_or(op.invalid_tensor(t, "must be constant"))?;
    let n = t.num_elements();
    if t.shape.rank() != 1 || n > buf.len() || data.len() != 4 * n {
        return Err(op.invalid_tensor(t, "must be 1-D with at most 5 entries"));
    }
    for (v, c) in buf.iter_mut().zip(data.chunks_exact(4)) {
        *v = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(&buf[..n])
}

/// SHAPE, STRIDED_SLICE and PACK: the int32 shape arithmetic TFLiteConverter emits when a Keras
/// model has a dynamic batch (e.g. Flatten, or squeeze-excite's Reshape). kdruntime's shapes are
/// static, so these compute exactly what TFLite computes at run time.
fn bind_shape_op<'m>(model: &Model<'m>, op: &OperatorInfo<'m>) -> Result<Bound<'m>> {
    let output = output_tensor(model, op, 0)?;
    let (od, or) = udims(&output);
    match op.opcode {
        opc::SHAPE => {
            let input = input_tensor(model, op, 0)?;
            let elem = match output.dtype {
                DType::Int32 | DType::Int64 => output.dtype.size(),
                _ => return Err(op.invalid_tensor(&output, "output must be int32 or int64")),
            };
            let (id, ir) = udims(&input);
            let params = kern(op, shape::prepare(&id[..ir], &od[..or], elem))?;
            Ok(Bound::Shape { params, output })
        }
        opc::STRIDED_SLICE => {
            let input = input_tensor(model, op, 0)?;
            let elem = same_meaning(op, &input, &output)?;
            use schema::strided_slice_options as f;
            let o = options_or_default(op, builtin_options::STRIDED_SLICE_OPTIONS)?;
            let get = |id| o.map_or(Ok(0), |t| t.i32(id, 0));
            if get(f::ELLIPSIS_MASK)? != 0 || get(f::NEW_AXIS_MASK)? != 0 {
                return Err(op.invalid("ellipsis_mask and new_axis_mask are not supported"));
            }
            if o.map_or(Ok(false), |t| t.bool(f::OFFSET, false))? {
                return Err(op.invalid("offset=true is not supported"));
            }
            let (mut b, mut e, mut s) = ([0; 5], [0; 5], [0; 5]);
            let spec = strided_slice::SliceSpec {
                begin: const_i32s(op, &input_tensor(model, op, 1)?, &mut b)?,
                end: const_i32s(op, &input_tensor(model, op, 2)?, &mut e)?,
                strides: const_i32s(op, &input_tensor(model, op, 3)?, &mut s)?,
                begin_mask: get(f::BEGIN_MASK)?,
                end_mask: get(f::END_MASK)?,
                shrink_axis_mask: get(f::SHRINK_AXIS_MASK)?,
            };
            let (id, ir) = udims(&input);
            let params = kern(
                op,
                strided_slice::prepare(&id[..ir], &spec, &od[..or], elem),
            )?;
            Ok(Bound::StridedSlice {
                params,
                input,
                output,
            })
        }
        _ => {
            let n = op.inputs.len();
            if n == 0 || n > MAX_CONCAT_INPUTS {
                return Err(op.invalid("PACK takes 1 to 16 inputs"));
            }
            let first = input_tensor(model, op, 0)?;
            let mut elem = 0;
            for k in 0..n {
                let t = input_tensor(model, op, k)?;
                elem = same_meaning(op, &t, &output)?;
                if t.shape != first.shape {
                    return Err(op.invalid_tensor(&t, "PACK inputs differ in shape"));
                }
            }
            use schema::pack_options as f;
            let o = options(op, builtin_options::PACK_OPTIONS, "missing PackOptions")?;
            if usize::try_from(o.i32(f::VALUES_COUNT, 0)?) != Ok(n) {
                return Err(op.invalid("values_count differs from the number of inputs"));
            }
            let (id, ir) = udims(&first);
            let params = kern(
                op,
                pack::prepare(&id[..ir], n, o.i32(f::AXIS, 0)?, &od[..or], elem),
            )?;
            Ok(Bound::Pack { params, output })
        }
    }
}

/// Runs a validated model in a caller-supplied arena. Allocates nothing.
pub struct Interpreter<'m, 'a> {
    model: Model<'m>,
    /// The caller's arena from its first 16-byte-aligned byte.
    arena: &'a mut [u8],
    table_start: usize,
    activation_start: usize,
}

impl<'m, 'a> Interpreter<'m, 'a> {
    /// Plans the arena, validates every operator and precomputes per-channel data. Fails with
    /// `ArenaTooSmall { needed, given }` when `arena` is shorter than `model.arena_size()`.
    pub fn new(model: &Model<'m>, arena: &'a mut [u8]) -> Result<Self> {
        let model = *model;
        let given = arena.len();
        let pad = arena.as_ptr().align_offset(ALIGN);
        let n_t = model.num_tensors();
        let plan_bytes = align_up(n_t * WORDS_PER_TENSOR * 4).ok_or_else(overflow)?;
        if pad > given || given - pad < plan_bytes {
            // Not even room to plan: report the full need (computed with stack scratch).
            let needed = model.arena_size()?;
            return Err(Error::ArenaTooSmall { needed, given });
        }
        let arena = &mut arena[pad..];
        let recs = as_u32_mut(&mut arena[..plan_bytes]).ok_or_else(overflow)?;
        let lay = layout(&model, recs)?;
        let needed = lay.total().ok_or_else(overflow)?;
        if given < needed {
            return Err(Error::ArenaTooSmall { needed, given });
        }
        let table_start = lay.plan_bytes;
        let activation_start = lay.persistent();
        // Per-op blobs, filled once.
        let mut blob = table_start + lay.table_bytes;
        for i in 0..model.num_operators() {
            let op = model.operator(i)?;
            let b = bind(&model, &op, true)?;
            let n = b.blob_bytes();
            let (head, rest) = arena.split_at_mut(blob);
            let word = if n == 0 { NONE } else { blob as u32 };
            if !set_u32_word(&mut head[table_start..], i, word) {
                return Err(overflow());
            }
            if n > 0 {
                let bytes = rest.get_mut(..n).ok_or_else(overflow)?;
                init_blob(&op, &b, bytes)?;
            }
            blob += align_up(n).ok_or_else(overflow)?;
        }
        Ok(Self {
            model,
            arena,
            table_start,
            activation_start,
        })
    }

    /// The model being run.
    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// Where tensor `t`'s data lives.
    fn location(&self, t: &TensorInfo<'m>) -> Result<Loc<'m>> {
        if let Some(d) = t.data {
            return Ok(Loc::Const(d));
        }
        let off = u32_word(self.arena, WORDS_PER_TENSOR * t.index).unwrap_or(NONE);
        if off == NONE {
            return Err(t.error("tensor has no data and no arena slot"));
        }
        Ok(Loc::Arena(
            self.activation_start + off as usize,
            t.byte_size(),
        ))
    }

    /// Description of graph input `i`.
    pub fn input_info(&self, i: usize) -> Result<TensorInfo<'m>> {
        self.model.tensor(self.model.input_tensor_index(i)?)
    }

    /// Description of graph output `i`.
    pub fn output_info(&self, i: usize) -> Result<TensorInfo<'m>> {
        self.model.tensor(self.model.output_tensor_index(i)?)
    }

    /// Raw bytes of graph input `i`, to be filled before `invoke`.
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [u8]> {
        let info = self.input_info(i)?;
        match self.location(&info)? {
            Loc::Arena(start, len) => self.arena.get_mut(start..start + len).ok_or_else(overflow),
            Loc::Const(_) => Err(info.error("graph input is a constant tensor")),
        }
    }

    /// Raw bytes of graph output `i` (int8 data as u8, floats little-endian).
    pub fn output(&self, i: usize) -> Result<&[u8]> {
        let info = self.output_info(i)?;
        match self.location(&info)? {
            Loc::Arena(start, len) => self.arena.get(start..start + len).ok_or_else(overflow),
            Loc::Const(d) => Ok(d),
        }
    }

    /// Runs every operator in order.
    pub fn invoke(&mut self) -> Result<()> {
        for i in 0..self.model.num_operators() {
            let op = self.model.operator(i)?;
            let b = bind(&self.model, &op, false)?;
            self.run(&op, &b)?;
        }
        Ok(())
    }

    fn run(&mut self, op: &OperatorInfo<'m>, b: &Bound<'m>) -> Result<()> {
        let blob_at =
            u32_word(self.arena.get(self.table_start..).unwrap_or(&[]), op.index).unwrap_or(NONE);
        let bad_arena = || op.invalid("arena layout inconsistent with the model");
        match *b {
            Bound::Conv {
                ref params,
                input,
                filter,
                bias,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (persist, acts, base) = self.split();
                let (mult, shift) = blob(persist, blob_at, params.out_c).ok_or_else(bad_arena)?;
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                conv::eval(
                    params,
                    mult,
                    shift,
                    as_i8(x),
                    as_i8(filter.data.unwrap_or(&[])),
                    bias,
                    as_i8_mut(y),
                );
            }
            Bound::FullyConnected {
                ref params,
                input,
                filter,
                bias,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (persist, acts, base) = self.split();
                let scales = real_blob(persist, blob_at, params.out_depth).ok_or_else(bad_arena)?;
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                fully_connected::eval(
                    params,
                    scales,
                    as_i8(x),
                    as_i8(filter.data.unwrap_or(&[])),
                    bias,
                    as_i8_mut(y),
                );
            }
            Bound::Quantize {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                quantize::eval(params, x, y);
            }
            Bound::Dequantize {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                if input.dtype == DType::UInt8 {
                    dequantize::eval_uint8(params, x, y);
                } else {
                    dequantize::eval(params, as_i8(x), y);
                }
            }
            Bound::Mean {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                mean::eval(params, as_i8(x), as_i8_mut(y));
            }
            Bound::Reshape {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                reshape::eval(params, x, y);
            }
            Bound::DepthwiseConv {
                ref params,
                input,
                filter,
                bias,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (persist, acts, base) = self.split();
                let (mult, shift) =
                    blob(persist, blob_at, params.filter_shape[3]).ok_or_else(bad_arena)?;
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                depthwise_conv::eval_split(
                    params,
                    mult,
                    shift,
                    as_i8(x),
                    as_i8(filter.data.unwrap_or(&[])),
                    bias,
                    as_i8_mut(y),
                );
            }
            Bound::Add {
                ref params,
                a,
                b,
                output,
            } => {
                let (la, lb) = (self.location(&a)?, self.location(&b)?);
                let o = self.location(&output)?;
                let (_, acts, base) = self.split();
                let ([x1, x2], y) = io(acts, base, [la, lb], o).ok_or_else(bad_arena)?;
                add::eval(params, as_i8(x1), as_i8(x2), as_i8_mut(y));
            }
            Bound::Mul {
                ref params,
                a,
                b,
                output,
            } => {
                let (la, lb) = (self.location(&a)?, self.location(&b)?);
                let o = self.location(&output)?;
                let (_, acts, base) = self.split();
                let ([x1, x2], y) = io(acts, base, [la, lb], o).ok_or_else(bad_arena)?;
                mul::eval(params, as_i8(x1), as_i8(x2), as_i8_mut(y));
            }
            Bound::Pool {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                pooling::eval(params, as_i8(x), as_i8_mut(y));
            }
            Bound::Pad {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                pad::eval(params, as_i8(x), as_i8_mut(y));
            }
            Bound::Concat { ref params, output } => {
                let n = op.inputs.len().min(MAX_CONCAT_INPUTS);
                let mut locs = [Loc::Const(&[]); MAX_CONCAT_INPUTS];
                for (k, l) in locs.iter_mut().enumerate().take(n) {
                    *l = self.location(&input_tensor(&self.model, op, k)?)?;
                }
                let o = self.location(&output)?;
                let (_, acts, base) = self.split();
                let (xs, y) = io(acts, base, locs, o).ok_or_else(bad_arena)?;
                let mut ins: [&[i8]; MAX_CONCAT_INPUTS] = [&[]; MAX_CONCAT_INPUTS];
                for (d, x) in ins.iter_mut().zip(xs) {
                    *d = as_i8(x);
                }
                concatenation::eval(params, ins.get(..n).unwrap_or(&[]), as_i8_mut(y));
            }
            Bound::Softmax {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                softmax::eval(params, as_i8(x), as_i8_mut(y));
            }
            Bound::Logistic { input, output } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (persist, acts, base) = self.split();
                let table = table_blob(persist, blob_at).ok_or_else(bad_arena)?;
                let mut params = logistic::LogisticParams { table: [0; 256] };
                for (d, &v) in params.table.iter_mut().zip(table) {
                    *d = v as i8;
                }
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                logistic::eval(&params, as_i8(x), as_i8_mut(y));
            }
            Bound::HardSwish {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                hard_swish::eval(params, as_i8(x), as_i8_mut(y));
            }
            Bound::Relu {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                activations::eval_relu(params, as_i8(x), as_i8_mut(y));
            }
            Bound::Shape { ref params, output } => {
                let o = self.location(&output)?;
                let (_, acts, base) = self.split();
                let ([], y) = io(acts, base, [], o).ok_or_else(bad_arena)?;
                shape::eval(params, y);
            }
            Bound::StridedSlice {
                ref params,
                input,
                output,
            } => {
                let (i, o) = (self.location(&input)?, self.location(&output)?);
                let (_, acts, base) = self.split();
                let ([x], y) = io(acts, base, [i], o).ok_or_else(bad_arena)?;
                strided_slice::eval(params, x, y);
            }
            Bound::Pack { ref params, output } => {
                let n = op.inputs.len().min(MAX_CONCAT_INPUTS);
                let mut locs = [Loc::Const(&[]); MAX_CONCAT_INPUTS];
                for (k, l) in locs.iter_mut().enumerate().take(n) {
                    *l = self.location(&input_tensor(&self.model, op, k)?)?;
                }
                let o = self.location(&output)?;
                let (_, acts, base) = self.split();
                let (xs, y) = io(acts, base, locs, o).ok_or_else(bad_arena)?;
                pack::eval(params, xs.get(..n).unwrap_or(&[]), y);
            }
        }
        Ok(())
    }

    /// (persistent region, activation region, activation region's offset in the arena).
    fn split(&mut self) -> (&[u8], &mut [u8], usize) {
        let (p, a) = self.arena.split_at_mut(self.activation_start);
        (p, a, self.activation_start)
    }
}

/// Where a tensor's bytes are: in the model, or `(start, len)` in the arena.
#[derive(Clone, Copy, Debug)]
enum Loc<'m> {
    Const(&'m [u8]),
    Arena(usize, usize),
}

/// Splits the activation region into `N` shared input slices and one exclusive output slice.
/// Inputs must not overlap the output (the planner guarantees it; checked anyway).
fn io<'s, 'm: 's, const N: usize>(
    acts: &'s mut [u8],
    base: usize,
    inputs: [Loc<'m>; N],
    output: Loc<'m>,
) -> Option<([&'s [u8]; N], &'s mut [u8])> {
    let Loc::Arena(os, ol) = output else {
        return None;
    };
    let os = os.checked_sub(base)?;
    let oe = os.checked_add(ol)?;
    if oe > acts.len() {
        return None;
    }
    let (lo, rest) = acts.split_at_mut(os);
    let (out, hi) = rest.split_at_mut(ol);
    let (lo, hi): (&'s [u8], &'s [u8]) = (lo, hi);
    let mut ins: [&'s [u8]; N] = [&[]; N];
    for (slot, loc) in ins.iter_mut().zip(inputs) {
        *slot = match loc {
            Loc::Const(d) => d,
            Loc::Arena(s, l) => {
                let s = s.checked_sub(base)?;
                let e = s.checked_add(l)?;
                if e <= os {
                    lo.get(s..e)?
                } else if s >= oe {
                    hi.get(s - oe..e - oe)?
                } else {
                    return None;
                }
            }
        };
    }
    Some((ins, out))
}

/// The per-channel multipliers and shifts of an op blob.
fn blob(persist: &[u8], at: u32, channels: usize) -> Option<(&[i32], &[i32])> {
    if at == NONE {
        return None;
    }
    let at = at as usize;
    let words = as_i32(persist.get(at..at + 8 * channels)?)?;
    Some(words.split_at(channels))
}

/// LOGISTIC's 256-byte table.
fn table_blob(persist: &[u8], at: u32) -> Option<&[u8]> {
    if at == NONE {
        return None;
    }
    let at = at as usize;
    persist.get(at..at.checked_add(256)?)
}

/// The per-channel real scales of a FULLY_CONNECTED blob.
fn real_blob(persist: &[u8], at: u32, channels: usize) -> Option<&[f64]> {
    if at == NONE {
        return None;
    }
    let at = at as usize;
    as_f64(persist.get(at..at + 8 * channels)?)
}

fn init_blob(op: &OperatorInfo, b: &Bound, bytes: &mut [u8]) -> Result<()> {
    let misaligned = || op.invalid("misaligned op blob");
    match b {
        Bound::Conv {
            input,
            filter,
            output,
            params,
            ..
        } => {
            let words = as_i32_mut(bytes).ok_or_else(misaligned)?;
            let (mult, shift) = words.split_at_mut(params.out_c);
            kern(
                op,
                conv::populate_multipliers(
                    input.scale(),
                    filter.quant.scales(),
                    output.scale(),
                    mult,
                    shift,
                ),
            )
        }
        Bound::FullyConnected {
            input,
            filter,
            output,
            ..
        } => {
            let scales = as_f64_mut(bytes).ok_or_else(misaligned)?;
            kern(
                op,
                fully_connected::populate_scales(
                    input.scale(),
                    filter.quant.scales(),
                    output.scale(),
                    scales,
                ),
            )
        }
        Bound::DepthwiseConv {
            input,
            filter,
            output,
            params,
            ..
        } => {
            let words = as_i32_mut(bytes).ok_or_else(misaligned)?;
            let (mult, shift) = words.split_at_mut(params.filter_shape[3]);
            let n = filter.quant.len();
            for (c, (m, s)) in mult.iter_mut().zip(shift.iter_mut()).enumerate() {
                let fs = filter.quant.scale(if n == 1 { 0 } else { c });
                let q = depthwise_conv::prepare_channel(input.scale(), fs, output.scale());
                if q.shift > crate::quant::MAX_LEFT_SHIFT {
                    return Err(op.invalid_tensor(
                        filter,
                        "requantisation multiplier input_scale * filter_scale / output_scale is 2^30 or more",
                    ));
                }
                (*m, *s) = (q.multiplier, q.shift);
            }
            Ok(())
        }
        Bound::Logistic { input, output } => {
            let (i_s, i_zp) = int8_activation(op, input)?;
            let (o_s, o_zp) = int8_activation(op, output)?;
            let p = kern(op, logistic::prepare(i_s, i_zp, o_s, o_zp))?;
            for (d, &v) in bytes.iter_mut().zip(p.table.iter()) {
                *d = v as u8;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
