//! The interpreter: binds each operator to its kernel once, lays out the caller's arena, and
//! runs the graph. No heap: all state lives in the arena, which is laid out as
//!
//! ```text
//! | tensor plan (4 words/tensor) | op records | op blobs | activations |
//! ```
//!
//! (the arena's start and each part on a 64-byte cache line; tensors and reference-path blobs
//! within their part 16-byte aligned, packed-path blobs on cache lines). `Interpreter::new` validates every operator and prepares it
//! once: options and quantisation are read from the flatbuffer, the kernels' `prepare` computes
//! multipliers, shifts, clamp bounds and broadcast walks, and each tensor operand is resolved to
//! a `Span` (an activation-region range, or a range of the model bytes for constants). The
//! result, a `Prepared` value per operator, is encoded into the op records (see
//! `crate::record` for why words rather than typed values); per-channel data (CONV_2D's and
//! DEPTHWISE_CONV_2D's fixed-point multipliers and shifts, FULLY_CONNECTED's real scales) goes
//! to the op blobs. `invoke` only decodes each record and calls the kernel's `eval`: it reads no
//! flatbuffer table and validates nothing.
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
//! 1. a `Prepared` variant holding its `*Params` and the `Span`s of its operands, and the
//!    same field list in the `record_enum!(Prepared { .. })` below it (a forgotten field is a
//!    compile error), plus a `record_struct!` line for the params type in `crate::record`;
//! 2. a `bind` match arm: check types/quantisation, read the options table, call
//!    `kern(op, <op>::prepare(...))` (the `&'static str` reason becomes `InvalidOperator` with
//!    the operator's index, opcode and version), then `ctx.io(op, [&in0, ..], &out)` for the
//!    operand spans (checks the planner's placement);
//! 3. an `eval` match arm: `io(acts, model, [in0, ..], out)` yields the input slices (shared;
//!    constants come from the model) and the output slice (exclusive); call the kernel's `eval`;
//! 4. per-channel data or tables: `ctx.blob(bytes)` in `bind` (fill it when the slice is
//!    `Some`; compute and validate the same values when it is `None`, the sizing pass of
//!    `Model::arena_size`), and `blobs.get(..)` in `eval`.
//!
//! Optimised kernels: `eval` is the one place that maps a prepared operator to a kernel
//! function; it hands the interpreter's `kernels::simd::Path` (fixed at init, where packed
//! weights are laid out for it) to `kernels::simd`, which picks the kernel and falls back to the
//! reference one; each optimised kernel is tested bit-exactly against the reference it replaces.

use crate::bytes::{as_f64, as_i32, as_i8, as_i8_mut, as_u32_mut, set_u32_word, u32_word};
use crate::error::{Error, Result};
use crate::kernels::activations::{self, FusedActivation, ReluKind};
use crate::kernels::depthwise_conv::{self, Padding};
use crate::kernels::simd::{Kernels, Path};
use crate::kernels::{
    add, concatenation, conv, dequantize, fully_connected, hard_swish, logistic, mean, mul, pad,
    pooling, quantize, reshape, simd, softmax,
};
use crate::kernels::{pack, shape, strided_slice};
use crate::model::{DType, Model, OperatorInfo, TensorInfo, MAX_RANK};
use crate::plan::{self, align_line, align_up, LINE, MAX_PLANNED_TENSORS, NONE, WORDS_PER_TENSOR};
use crate::record::{record_enum, record_struct, Reader, Record, Writer};
use crate::tflite::schema::{self, builtin_operator as opc, builtin_options};
use crate::workers::Workers;

/// Byte sizes of the arena's parts.
#[derive(Clone, Copy, Debug)]
struct Layout {
    plan_bytes: usize,
    record_bytes: usize,
    blobs_bytes: usize,
    activation_bytes: usize,
}

impl Layout {
    fn persistent(&self) -> usize {
        self.plan_bytes + self.record_bytes + self.blobs_bytes
    }
    /// Total including the worst-case padding to align the caller's buffer.
    fn total(&self) -> Option<usize> {
        self.persistent()
            .checked_add(self.activation_bytes)?
            .checked_add(LINE - 1)
    }
}

/// The alignment of activation tensors and op blobs on `path`: 16 bytes for the portable
/// kernels (so the arena stays within TFLite Micro's), a cache line for the packed ones.
fn tensor_align(path: Path) -> usize {
    match path {
        Path::Reference | Path::InPlace => plan::ALIGN,
        #[allow(unreachable_patterns)] // the packed paths exist on some targets only
        _ => LINE,
    }
}

fn overflow() -> Error {
    Error::UnsupportedModel {
        reason: "arena size overflows",
    }
}

/// Plans the activations into `recs` and sizes the op records and blobs by preparing every
/// operator (the sizing pass: the same validation and arithmetic as init, nothing stored).
fn layout(model: &Model, recs: &mut [u32], path: Path) -> Result<Layout> {
    let activation_bytes = plan::plan(model, recs, tensor_align(path))?;
    let mut ctx = Ctx::new(model, recs, activation_bytes, None, path);
    let mut words = Writer::new(None);
    for i in 0..model.num_operators() {
        let op = model.operator(i)?;
        bind(&op, &mut ctx)?.put(&mut words);
        if !words.ok() {
            return Err(op.invalid("a prepared parameter does not fit 32 bits"));
        }
    }
    let record_bytes = words
        .len
        .checked_mul(4)
        .and_then(align_line)
        .ok_or_else(overflow)?;
    let plan_bytes = align_line(model.num_tensors() * WORDS_PER_TENSOR * 4).ok_or_else(overflow)?;
    Ok(Layout {
        plan_bytes,
        record_bytes,
        blobs_bytes: align_line(ctx.blob_len).ok_or_else(overflow)?,
        activation_bytes,
    })
}

impl<'a> Model<'a> {
    /// Arena bytes `Interpreter::new` needs for this model (includes up to 63 bytes to align the
    /// caller's buffer to a cache line, so any buffer of this size works). Validates every operator on the way,
    /// exactly as `Interpreter::new` does, so a model accepted here fails `new` only with
    /// `ArenaTooSmall`. Plans with a stack scratch of `16 * MAX_PLANNED_TENSORS` bytes; on small
    /// stacks use [`Model::arena_size_with_scratch`].
    pub fn arena_size(&self) -> Result<usize> {
        self.arena_size_for(Kernels::default())
    }

    /// [`Model::arena_size`] for an interpreter running `kernels` (packed optimised kernels
    /// keep rearranged weights in the arena; [`Kernels::Reference`] needs the least).
    pub fn arena_size_for(&self, kernels: Kernels) -> Result<usize> {
        let n = self.num_tensors();
        if n > MAX_PLANNED_TENSORS {
            return Err(Error::TooManyTensors {
                count: n,
                max: MAX_PLANNED_TENSORS,
            });
        }
        let mut scratch = [0u32; MAX_PLANNED_TENSORS * WORDS_PER_TENSOR];
        total_size(self, &mut scratch, kernels.path())
    }

    /// [`Model::arena_size`] with caller-provided planner scratch of at least
    /// `WORDS_PER_TENSOR * num_tensors()` words (no size limit, no stack use).
    pub fn arena_size_with_scratch(&self, scratch: &mut [u32]) -> Result<usize> {
        total_size(self, scratch, Kernels::default().path())
    }
}

/// The arena bytes an interpreter on `path` needs (planned in `scratch`).
fn total_size(model: &Model, scratch: &mut [u32], path: Path) -> Result<usize> {
    layout(model, scratch, path)?.total().ok_or_else(overflow)
}

/// Where one operand's bytes are, resolved at init: `len` bytes at `start` in the activation
/// region, or in the model bytes for a constant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    in_model: bool,
    start: usize,
    len: usize,
}
record_struct!(Span {
    in_model,
    start,
    len
});

/// `len` bytes at `at` in the op-blob region (16-byte aligned; 64 on the packed paths).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Blob {
    at: usize,
    len: usize,
}
record_struct!(Blob { at, len });

/// Most inputs a CONCATENATION may have (TFLite Micro allows 10).
pub const MAX_CONCAT_INPUTS: usize = 16;

/// CONCATENATION's and PACK's inputs: the count, then that many spans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Spans {
    n: usize,
    spans: [Span; MAX_CONCAT_INPUTS],
}

impl Record for Spans {
    fn put(&self, w: &mut Writer) {
        self.n.put(w);
        for s in self.spans.get(..self.n).unwrap_or(&[]) {
            s.put(w);
        }
    }
    fn get(r: &mut Reader) -> Option<Self> {
        let mut v = Spans {
            n: usize::get(r)?,
            ..Spans::default()
        };
        for s in v.spans.get_mut(..v.n)? {
            *s = Span::get(r)?;
        }
        Some(v)
    }
}

/// An operator prepared at init: its kernel (the variant), the kernel's validated parameters,
/// and where its operands live. Lifetime-free plain data, stored encoded in the op records.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Prepared {
    /// `quant`: `out_c` i32 multipliers then `out_c` i32 shifts; `packed`: the weights
    /// rearranged for the interpreter's kernel path (empty unless that path packs this shape).
    Conv {
        params: conv::ConvParams,
        input: Span,
        filter: Span,
        bias: Option<Span>,
        output: Span,
        quant: Blob,
        packed: Blob,
    },
    /// `scales`: `out_depth` f64 real scales; `packed` as for `Conv`.
    FullyConnected {
        params: fully_connected::FcParams,
        input: Span,
        filter: Span,
        bias: Option<Span>,
        output: Span,
        scales: Blob,
        packed: Blob,
    },
    Quantize {
        params: quantize::QuantizeParams,
        input: Span,
        output: Span,
    },
    Dequantize {
        params: dequantize::DequantizeParams,
        /// uint8 input (else int8).
        unsigned: bool,
        input: Span,
        output: Span,
    },
    Mean {
        params: mean::MeanParams,
        input: Span,
        output: Span,
    },
    Reshape {
        params: reshape::ReshapeParams,
        input: Span,
        output: Span,
    },
    /// `quant`: one i32 multiplier then one i32 shift per output channel (as CONV_2D);
    /// `packed` as for `Conv`.
    DepthwiseConv {
        params: depthwise_conv::DepthwiseConvParams,
        input: Span,
        filter: Span,
        bias: Option<Span>,
        output: Span,
        quant: Blob,
        packed: Blob,
    },
    Add {
        params: add::AddParams,
        a: Span,
        b: Span,
        output: Span,
    },
    Mul {
        params: mul::MulParams,
        a: Span,
        b: Span,
        output: Span,
    },
    Pool {
        params: pooling::PoolParams,
        input: Span,
        output: Span,
    },
    Pad {
        params: pad::PadParams,
        input: Span,
        output: Span,
    },
    Concat {
        params: concatenation::ConcatParams,
        inputs: Spans,
        output: Span,
    },
    Softmax {
        params: softmax::SoftmaxParams,
        input: Span,
        output: Span,
    },
    /// The 256-entry table is part of the record.
    Logistic {
        params: logistic::LogisticParams,
        input: Span,
        output: Span,
    },
    HardSwish {
        params: hard_swish::HardSwishParams,
        input: Span,
        output: Span,
    },
    Relu {
        params: activations::ReluParams,
        input: Span,
        output: Span,
    },
    // Shape arithmetic that TFLiteConverter emits for a dynamic batch (SHAPE -> STRIDED_SLICE
    // -> PACK -> RESHAPE's shape input); see `bind_shape_op`.
    /// Reads no input data: the dimensions are in `params`.
    Shape {
        params: shape::ShapeParams,
        output: Span,
    },
    StridedSlice {
        params: strided_slice::StridedSliceParams,
        input: Span,
        output: Span,
    },
    Pack {
        params: pack::PackParams,
        inputs: Spans,
        output: Span,
    },
}

record_enum!(Prepared {
    0 => Conv { params, input, filter, bias, output, quant, packed },
    1 => FullyConnected { params, input, filter, bias, output, scales, packed },
    2 => Quantize { params, input, output },
    3 => Dequantize { params, unsigned, input, output },
    4 => Mean { params, input, output },
    5 => Reshape { params, input, output },
    6 => DepthwiseConv { params, input, filter, bias, output, quant, packed },
    7 => Add { params, a, b, output },
    8 => Mul { params, a, b, output },
    9 => Pool { params, input, output },
    10 => Pad { params, input, output },
    11 => Concat { params, inputs, output },
    12 => Softmax { params, input, output },
    13 => Logistic { params, input, output },
    14 => HardSwish { params, input, output },
    15 => Relu { params, input, output },
    16 => Shape { params, output },
    17 => StridedSlice { params, input, output },
    18 => Pack { params, inputs, output },
});

/// A blob to read and one to fill, at init.
type ReadWrite<'b> = (&'b [u8], &'b mut [u8]);

/// What `bind` needs besides the operator: the model, the activation plan (to resolve spans)
/// and the op-blob region (`None` in the sizing pass, where allocations are only counted).
struct Ctx<'m, 'p, 'b> {
    model: Model<'m>,
    recs: &'p [u32],
    activation_bytes: usize,
    blobs: Option<&'b mut [u8]>,
    /// Blob bytes allocated so far (each allocation rounded up to `plan::ALIGN`).
    blob_len: usize,
    /// The kernel path convolutions and fully connected layers are prepared for.
    path: Path,
}

impl<'m, 'p, 'b> Ctx<'m, 'p, 'b> {
    fn new(
        model: &Model<'m>,
        recs: &'p [u32],
        activation_bytes: usize,
        blobs: Option<&'b mut [u8]>,
        path: Path,
    ) -> Self {
        Self {
            model: *model,
            recs,
            activation_bytes,
            blobs,
            blob_len: 0,
            path,
        }
    }

    /// Where tensor `t`'s bytes are: a constant's range of the model bytes, or its planned
    /// range of the activation region (checked to lie inside it).
    fn span(&self, op: &OperatorInfo, t: &TensorInfo) -> Result<Span> {
        if let Some(d) = t.data {
            // Constants are sub-slices of the model buffer (zero-copy); store the offset, not
            // the reference, so the prepared state is lifetime-free.
            let bytes = self.model.bytes();
            let start = (d.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
            let inside = bytes
                .get(start..start.saturating_add(d.len()))
                .is_some_and(|s| core::ptr::eq(s, d));
            if !inside {
                return Err(op.invalid_tensor(t, "constant data outside the model buffer"));
            }
            return Ok(Span {
                in_model: true,
                start,
                len: d.len(),
            });
        }
        let off = self
            .recs
            .get(WORDS_PER_TENSOR * t.index)
            .copied()
            .unwrap_or(NONE);
        let len = t.byte_size();
        if off == NONE || (off as usize).saturating_add(len) > self.activation_bytes {
            return Err(op.invalid_tensor(t, "tensor has no data and no arena slot"));
        }
        Ok(Span {
            in_model: false,
            start: off as usize,
            len,
        })
    }

    /// The output's span, checked not to overlap `input` (the planner guarantees it for
    /// operands live at the same operator; checked so `eval` can rely on it).
    fn disjoint(&self, op: &OperatorInfo, out: Span, input: Span) -> Result<()> {
        // Exactly `io`'s test: an arena input ends before the output starts or starts after it.
        let clear = input.in_model
            || input.start + input.len <= out.start
            || input.start >= out.start + out.len;
        if out.in_model || !clear {
            return Err(op.invalid("arena plan places an input over the output"));
        }
        Ok(())
    }

    /// Spans of `N` inputs and one output, checked for placement.
    fn io<const N: usize>(
        &self,
        op: &OperatorInfo,
        inputs: [&TensorInfo; N],
        output: &TensorInfo,
    ) -> Result<([Span; N], Span)> {
        let out = self.span(op, output)?;
        let mut spans = [Span::default(); N];
        for (s, t) in spans.iter_mut().zip(inputs) {
            *s = self.span(op, t)?;
            self.disjoint(op, out, *s)?;
        }
        Ok((spans, out))
    }

    /// Allocates `bytes` of packed weights after the blob `earlier` (allocated before it);
    /// at init also yields `earlier`'s bytes to read while filling the new slice.
    fn packed_blob(
        &mut self,
        bytes: usize,
        earlier: Blob,
    ) -> Result<(Blob, Option<ReadWrite<'_>>)> {
        let (blob, _) = self.blob(bytes)?;
        let pair = match self.blobs.as_deref_mut() {
            Some(b) => {
                let (head, tail) = b.split_at_mut_checked(blob.at).ok_or_else(overflow)?;
                let read = head
                    .get(earlier.at..earlier.at + earlier.len)
                    .ok_or_else(overflow)?;
                Some((read, tail.get_mut(..bytes).ok_or_else(overflow)?))
            }
            None => None,
        };
        Ok((blob, pair))
    }

    /// Allocates `bytes` of op blob; the slice to fill at init, `None` in the sizing pass. On the
    /// packed paths each blob starts on a cache line ([`LINE`]).
    fn blob(&mut self, bytes: usize) -> Result<(Blob, Option<&mut [u8]>)> {
        let at = plan::align_to(self.blob_len, tensor_align(self.path)).ok_or_else(overflow)?;
        self.blob_len = align_up(bytes)
            .and_then(|n| n.checked_add(at))
            .ok_or_else(overflow)?;
        let dst = match self.blobs.as_deref_mut() {
            Some(b) => Some(b.get_mut(at..at + bytes).ok_or_else(overflow)?),
            None => None,
        };
        Ok((Blob { at, len: bytes }, dst))
    }
}

/// Channel `c`'s bias, multiplier and shift, from the bias data and an op's multiplier blob
/// (`channels` multipliers then `channels` shifts, as `bind` writes them).
fn per_channel(quant: &[u8], channels: usize, bias: Option<&[u8]>, c: usize) -> (i32, i32, i32) {
    let word = |i| u32_word(quant, i).unwrap_or(0) as i32;
    (conv::bias_at(bias, c), word(c), word(channels + c))
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
) -> Result<Option<TensorInfo<'m>>> {
    let Some(t) = op.input(2) else {
        return Ok(None);
    };
    let bias = model.tensor(t)?;
    expect_type(op, &bias, DType::Int32, "bias must be int32")?;
    if bias.data.is_none() {
        return Err(op.invalid("bias must be constant"));
    }
    if bias.num_elements() != channels {
        return Err(op.invalid("bias length differs from the output channel count"));
    }
    Ok(Some(bias))
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

/// Validates operator `op`, derives its kernel parameters and resolves its operands: the one
/// place where an operator is checked. Per-channel data is computed (and validated) in both
/// passes and stored when `ctx` has the blob region.
fn bind<'m>(op: &OperatorInfo<'m>, ctx: &mut Ctx<'m, '_, '_>) -> Result<Prepared> {
    // A copy (a few words), so that `ctx` stays free to be borrowed mutably below.
    let model = &{ ctx.model };
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
            let params = kern(op, conv::prepare(&spec))?;
            let ([input_s, filter_s], output_s) = ctx.io(op, [&input, &filter], &output)?;
            let bias_data = bias.as_ref().and_then(|b| b.data);
            let bias = bias.map(|b| ctx.span(op, &b)).transpose()?;
            let n = params.out_c;
            let (quant, mut dst) = ctx.blob(8 * n)?;
            if n == 0 {
                // No channel to compute; still run the whole-filter checks.
                kern(
                    op,
                    conv::populate_multipliers(
                        input.scale(),
                        filter.quant.scales(),
                        output.scale(),
                        &mut [],
                        &mut [],
                    ),
                )?;
            }
            for c in 0..n {
                // One channel at a time, so the sizing pass validates without storage.
                let fs = filter
                    .quant
                    .scale(if filter.quant.len() == 1 { 0 } else { c });
                let (mut m, mut s) = ([0i32], [0i32]);
                kern(
                    op,
                    conv::populate_multipliers(
                        input.scale(),
                        core::iter::once(fs),
                        output.scale(),
                        &mut m,
                        &mut s,
                    ),
                )?;
                if let Some(d) = dst.as_deref_mut() {
                    set_word(d, c, m[0] as u32)?;
                    set_word(d, n + c, s[0] as u32)?;
                }
            }
            let path = ctx.path;
            let (packed, dst) = ctx.packed_blob(simd::conv_packed_bytes(path, &params), quant)?;
            if let Some((quant, dst)) = dst {
                let weights = as_i8(filter.data.unwrap_or(&[]));
                simd::pack_conv(
                    path,
                    &params,
                    weights,
                    |c| per_channel(quant, n, bias_data, c),
                    dst,
                );
            }
            Ok(Prepared::Conv {
                params,
                input: input_s,
                filter: filter_s,
                bias,
                output: output_s,
                quant,
                packed,
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
            let ([input_s, filter_s], output_s) = ctx.io(op, [&input, &filter], &output)?;
            let bias_data = bias.as_ref().and_then(|b| b.data);
            let bias = bias.map(|b| ctx.span(op, &b)).transpose()?;
            let (scales, mut dst) = ctx.blob(8 * params.out_depth)?;
            if params.out_depth == 0 {
                kern(
                    op,
                    fully_connected::populate_scales(
                        input.scale(),
                        filter.quant.scales(),
                        output.scale(),
                        &mut [],
                    ),
                )?;
            }
            for c in 0..params.out_depth {
                let fs = filter
                    .quant
                    .scale(if filter.quant.len() == 1 { 0 } else { c });
                let mut s = [0f64];
                kern(
                    op,
                    fully_connected::populate_scales(
                        input.scale(),
                        core::iter::once(fs),
                        output.scale(),
                        &mut s,
                    ),
                )?;
                if let Some(d) = dst.as_deref_mut() {
                    d.get_mut(8 * c..8 * c + 8)
                        .ok_or_else(overflow)?
                        .copy_from_slice(&s[0].to_ne_bytes());
                }
            }
            let path = ctx.path;
            let (packed, dst) = ctx.packed_blob(simd::fc_packed_bytes(path, &params), scales)?;
            if let Some((_, dst)) = dst {
                let weights = as_i8(filter.data.unwrap_or(&[]));
                let bias = |c| conv::bias_at(bias_data, c);
                simd::pack_fc(path, &params, weights, bias, dst);
            }
            Ok(Prepared::FullyConnected {
                params,
                input: input_s,
                filter: filter_s,
                bias,
                output: output_s,
                scales,
                packed,
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
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Quantize {
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
            let unsigned = input.dtype == DType::UInt8;
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Dequantize {
                params: kern(op, params)?,
                unsigned,
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
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Mean {
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
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Reshape {
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
            let ([input_s, filter_s], output_s) = ctx.io(op, [&input, &filter], &output)?;
            let bias_data = bias.as_ref().and_then(|b| b.data);
            let bias = bias.map(|b| ctx.span(op, &b)).transpose()?;
            let ch = fd[3];
            let (quant, mut dst) = ctx.blob(8 * ch)?;
            for c in 0..ch {
                let fs = filter.quant.scale(if n == 1 { 0 } else { c });
                let q = depthwise_conv::prepare_channel(in_s, fs, out_s);
                if q.shift > crate::quant::MAX_LEFT_SHIFT {
                    return Err(op.invalid_tensor(
                        &filter,
                        "requantisation multiplier input_scale * filter_scale / output_scale is 2^30 or more",
                    ));
                }
                if let Some(d) = dst.as_deref_mut() {
                    set_word(d, c, q.multiplier as u32)?;
                    set_word(d, ch + c, q.shift as u32)?;
                }
            }
            let path = ctx.path;
            let bytes = simd::depthwise_packed_bytes(path, &params);
            let (packed, dst) = ctx.packed_blob(bytes, quant)?;
            if let Some((quant, dst)) = dst {
                let weights = as_i8(filter.data.unwrap_or(&[]));
                let quant = |c| per_channel(quant, ch, bias_data, c);
                simd::pack_depthwise(path, &params, weights, quant, dst);
            }
            Ok(Prepared::DepthwiseConv {
                params,
                input: input_s,
                filter: filter_s,
                bias,
                output: output_s,
                quant,
                packed,
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
                let ([a, b], output) = ctx.io(op, [&a, &b], &output)?;
                Ok(Prepared::Add {
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
                let ([a, b], output) = ctx.io(op, [&a, &b], &output)?;
                Ok(Prepared::Mul {
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
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Pool {
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
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Pad {
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
            let out = ctx.span(op, &output)?;
            let mut inputs = Spans {
                n,
                ..Spans::default()
            };
            for (k, s) in inputs.spans.iter_mut().enumerate().take(n) {
                *s = ctx.span(op, &input_tensor(model, op, k)?)?;
                ctx.disjoint(op, out, *s)?;
            }
            Ok(Prepared::Concat {
                params,
                inputs,
                output: out,
            })
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
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Softmax {
                params,
                input,
                output,
            })
        }
        opc::LOGISTIC => {
            let (input, (i_s, i_zp), output, (o_s, o_zp)) = unary_int8(model, op)?;
            let params = kern(op, logistic::prepare(i_s, i_zp, o_s, o_zp))?;
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Logistic {
                params,
                input,
                output,
            })
        }
        opc::HARD_SWISH => {
            let (input, (i_s, i_zp), output, (o_s, o_zp)) = unary_int8(model, op)?;
            let params = kern(op, hard_swish::prepare(i_s, i_zp, o_s, o_zp))?;
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::HardSwish {
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
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::Relu {
                params,
                input,
                output,
            })
        }
        opc::SHAPE | opc::STRIDED_SLICE | opc::PACK => bind_shape_op(op, ctx),
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
fn bind_shape_op<'m>(op: &OperatorInfo<'m>, ctx: &mut Ctx<'m, '_, '_>) -> Result<Prepared> {
    let model = &{ ctx.model };
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
            // Only the input's (static) shape is read, never its data.
            let ([], output) = ctx.io(op, [], &output)?;
            Ok(Prepared::Shape { params, output })
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
            let ([input], output) = ctx.io(op, [&input], &output)?;
            Ok(Prepared::StridedSlice {
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
            // As CONCATENATION: the count, then one checked span per input.
            let out = ctx.span(op, &output)?;
            let mut inputs = Spans {
                n,
                ..Spans::default()
            };
            for (k, s) in inputs.spans.iter_mut().enumerate().take(n) {
                *s = ctx.span(op, &input_tensor(model, op, k)?)?;
                ctx.disjoint(op, out, *s)?;
            }
            Ok(Prepared::Pack {
                params,
                inputs,
                output: out,
            })
        }
    }
}

/// Writes native-endian word `i` of an op blob.
fn set_word(b: &mut [u8], i: usize, v: u32) -> Result<()> {
    if set_u32_word(b, i, v) {
        Ok(())
    } else {
        Err(overflow())
    }
}

/// Runs a validated model in a caller-supplied arena. Allocates nothing.
pub struct Interpreter<'m, 'a> {
    model: Model<'m>,
    /// The caller's arena from its first 64-byte-aligned byte.
    arena: &'a mut [u8],
    /// Byte range of the op records in `arena`.
    records: (usize, usize),
    /// Byte range of the op blobs in `arena`.
    blobs: (usize, usize),
    activation_start: usize,
    /// Operator count (one record each).
    n_ops: usize,
    /// The kernel path every operator was prepared for (from the `Kernels` given to init).
    path: Path,
    /// Worker threads the packed convolution kernels split their output over (`None`: the
    /// calling thread alone).
    workers: Option<Workers>,
}

impl<'m, 'a> Interpreter<'m, 'a> {
    /// Plans the arena, validates and prepares every operator (see the module docs). Fails with
    /// `ArenaTooSmall { needed, given }` when `arena` is shorter than `model.arena_size()`; every
    /// other error is one `model.arena_size()` reports too.
    pub fn new(model: &Model<'m>, arena: &'a mut [u8]) -> Result<Self> {
        Self::with_kernels(model, arena, Kernels::default())
    }

    /// [`Interpreter::new`] running `kernels` (the arena must hold
    /// `model.arena_size_for(kernels)` bytes).
    pub fn with_kernels(model: &Model<'m>, arena: &'a mut [u8], kernels: Kernels) -> Result<Self> {
        let model = *model;
        let path = kernels.path();
        let given = arena.len();
        let pad = arena.as_ptr().align_offset(LINE);
        let n_t = model.num_tensors();
        let plan_bytes = align_line(n_t * WORDS_PER_TENSOR * 4).ok_or_else(overflow)?;
        if pad > given || given - pad < plan_bytes {
            // Not even room to plan: report the full need (computed with stack scratch).
            let needed = model.arena_size_for(kernels)?;
            return Err(Error::ArenaTooSmall { needed, given });
        }
        let arena = &mut arena[pad..];
        let lay = {
            let recs = as_u32_mut(&mut arena[..plan_bytes]).ok_or_else(overflow)?;
            layout(&model, recs, path)?
        };
        let needed = lay.total().ok_or_else(overflow)?;
        if given < needed {
            return Err(Error::ArenaTooSmall { needed, given });
        }
        let records = (plan_bytes, plan_bytes + lay.record_bytes);
        let blobs = (records.1, records.1 + lay.blobs_bytes);
        let activation_start = lay.persistent();
        {
            let (plan_part, rest) = arena
                .split_at_mut_checked(plan_bytes)
                .ok_or_else(overflow)?;
            let (record_part, rest) = rest
                .split_at_mut_checked(lay.record_bytes)
                .ok_or_else(overflow)?;
            let blob_part = rest.get_mut(..lay.blobs_bytes).ok_or_else(overflow)?;
            let recs = as_u32_mut(plan_part).ok_or_else(overflow)?;
            let mut ctx = Ctx::new(&model, recs, lay.activation_bytes, Some(blob_part), path);
            let mut words = Writer::new(Some(record_part));
            for i in 0..model.num_operators() {
                let op = model.operator(i)?;
                bind(&op, &mut ctx)?.put(&mut words);
                if !words.ok() {
                    return Err(op.invalid("a prepared parameter does not fit 32 bits"));
                }
            }
        }
        Ok(Self {
            model,
            arena,
            records,
            blobs,
            activation_start,
            n_ops: model.num_operators(),
            path,
            workers: None,
        })
    }

    /// Splits each large convolution over `threads` threads (std builds; packed kernels only;
    /// 0 is taken as 1). One thread, the default, runs everything on the caller's thread; more
    /// start `threads - 1` worker threads here, which live until the next call or the
    /// interpreter's drop (see [`crate::workers`]). `invoke` allocates nothing either way.
    /// Where the OS refuses a thread, fewer run: [`Interpreter::threads`] says how many.
    #[cfg(feature = "std")]
    pub fn set_threads(&mut self, threads: usize) {
        if threads != self.threads() {
            self.workers = None; // joins the old workers first
            self.workers = (threads > 1).then(|| Workers::new(threads));
        }
    }

    /// Threads convolutions use, the caller's included (see [`Interpreter::set_threads`]).
    pub fn threads(&self) -> usize {
        self.workers.as_ref().map_or(1, Workers::threads)
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

    /// Runs every operator in order: decodes its record and calls its kernel. Everything was
    /// validated at init; the `Result` stays for API stability (an error here would mean the
    /// arena's persistent region was corrupted, which safe code cannot do).
    pub fn invoke(&mut self) -> Result<()> {
        self.invoke_with(|_| {})
    }

    /// [`Interpreter::invoke`], calling `after_op(i)` when operator `i` has finished (a
    /// profiler reads a clock there; the interpreter itself has none).
    pub fn invoke_with(&mut self, mut after_op: impl FnMut(usize)) -> Result<()> {
        let model = self.model.bytes();
        let (persist, acts) = self.arena.split_at_mut(self.activation_start);
        let records = persist.get(self.records.0..self.records.1).unwrap_or(&[]);
        let blobs = persist.get(self.blobs.0..self.blobs.1).unwrap_or(&[]);
        let mut r = Reader::new(records);
        for i in 0..self.n_ops {
            let done = Prepared::get(&mut r)
                .and_then(|p| eval(&p, model, blobs, acts, self.path, self.workers.as_ref()));
            if done.is_none() {
                return Err(match self.model.operator(i) {
                    Ok(op) => op.invalid("arena layout inconsistent with the model"),
                    Err(e) => e,
                });
            }
            after_op(i);
        }
        Ok(())
    }
}

/// Runs one prepared operator on the interpreter's kernel `path`: the single place that maps a
/// prepared operator to its kernel function. `None` only if the spans disagree with the arena, which init rules out.
fn eval(
    p: &Prepared,
    model: &[u8],
    blobs: &[u8],
    acts: &mut [u8],
    path: Path,
    workers: Option<&Workers>,
) -> Option<()> {
    let loc = |s: Span| -> Option<Loc> {
        if s.in_model {
            Some(Loc::Const(model.get(s.start..s.start.checked_add(s.len)?)?))
        } else {
            Some(Loc::Arena(s.start, s.len))
        }
    };
    let blob = |b: Blob| blobs.get(b.at..b.at.checked_add(b.len)?);
    // Filters and biases are constants (checked at init).
    let konst = |s: Span| match loc(s)? {
        Loc::Const(d) => Some(d),
        Loc::Arena(..) => None,
    };
    match *p {
        Prepared::Conv {
            ref params,
            input,
            filter,
            bias,
            output,
            quant,
            packed,
        } => {
            let words = as_i32(blob(quant)?)?;
            let (mult, shift) = words.split_at_checked(params.out_c)?;
            let filter = konst(filter)?;
            let bias = match bias {
                Some(b) => Some(konst(b)?),
                None => None,
            };
            let packed = blob(packed)?;
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            let (x, filter, y) = (as_i8(x), as_i8(filter), as_i8_mut(y));
            simd::conv(
                path, params, mult, shift, packed, x, filter, bias, y, workers,
            );
        }
        Prepared::FullyConnected {
            ref params,
            input,
            filter,
            bias,
            output,
            scales,
            packed,
        } => {
            let scales = as_f64(blob(scales)?)?;
            let filter = konst(filter)?;
            let bias = match bias {
                Some(b) => Some(konst(b)?),
                None => None,
            };
            let packed = blob(packed)?;
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            let (x, filter, y) = (as_i8(x), as_i8(filter), as_i8_mut(y));
            simd::fully_connected(path, params, scales, packed, x, filter, bias, y);
        }
        Prepared::Quantize {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            simd::quantize(path, params, x, y);
        }
        Prepared::Dequantize {
            ref params,
            unsigned,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            if unsigned {
                dequantize::eval_uint8(params, x, y);
            } else {
                dequantize::eval(params, as_i8(x), y);
            }
        }
        Prepared::Mean {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            simd::mean(path, params, as_i8(x), as_i8_mut(y));
        }
        Prepared::Reshape {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            reshape::eval(params, x, y);
        }
        Prepared::DepthwiseConv {
            ref params,
            input,
            filter,
            bias,
            output,
            quant,
            packed,
        } => {
            let words = as_i32(blob(quant)?)?;
            let (mult, shift) = words.split_at_checked(params.filter_shape[3])?;
            let filter = konst(filter)?;
            let bias = match bias {
                Some(b) => Some(konst(b)?),
                None => None,
            };
            let packed = blob(packed)?;
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            let (x, filter, y) = (as_i8(x), as_i8(filter), as_i8_mut(y));
            simd::depthwise(
                path, params, mult, shift, packed, x, filter, bias, y, workers,
            );
        }
        Prepared::Add {
            ref params,
            a,
            b,
            output,
        } => {
            let ([x1, x2], y) = io(acts, [loc(a)?, loc(b)?], loc(output)?)?;
            simd::add(path, params, as_i8(x1), as_i8(x2), as_i8_mut(y));
        }
        Prepared::Mul {
            ref params,
            a,
            b,
            output,
        } => {
            let ([x1, x2], y) = io(acts, [loc(a)?, loc(b)?], loc(output)?)?;
            mul::eval(params, as_i8(x1), as_i8(x2), as_i8_mut(y));
        }
        Prepared::Pool {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            pooling::eval(params, as_i8(x), as_i8_mut(y));
        }
        Prepared::Pad {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            pad::eval(params, as_i8(x), as_i8_mut(y));
        }
        Prepared::Concat {
            ref params,
            ref inputs,
            output,
        } => {
            let mut locs = [Loc::Const(&[]); MAX_CONCAT_INPUTS];
            for (l, s) in locs.iter_mut().zip(inputs.spans.get(..inputs.n)?) {
                *l = loc(*s)?;
            }
            let (xs, y) = io(acts, locs, loc(output)?)?;
            let mut ins: [&[i8]; MAX_CONCAT_INPUTS] = [&[]; MAX_CONCAT_INPUTS];
            for (d, x) in ins.iter_mut().zip(xs) {
                *d = as_i8(x);
            }
            concatenation::eval(params, ins.get(..inputs.n)?, as_i8_mut(y));
        }
        Prepared::Softmax {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            softmax::eval(params, as_i8(x), as_i8_mut(y));
        }
        Prepared::Logistic {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            logistic::eval(params, as_i8(x), as_i8_mut(y));
        }
        Prepared::HardSwish {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            hard_swish::eval(params, as_i8(x), as_i8_mut(y));
        }
        Prepared::Relu {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            activations::eval_relu(params, as_i8(x), as_i8_mut(y));
        }
        Prepared::Shape { ref params, output } => {
            let ([], y) = io(acts, [], loc(output)?)?;
            shape::eval(params, y);
        }
        Prepared::StridedSlice {
            ref params,
            input,
            output,
        } => {
            let ([x], y) = io(acts, [loc(input)?], loc(output)?)?;
            strided_slice::eval(params, x, y);
        }
        Prepared::Pack {
            ref params,
            ref inputs,
            output,
        } => {
            let mut locs = [Loc::Const(&[]); MAX_CONCAT_INPUTS];
            for (l, s) in locs.iter_mut().zip(inputs.spans.get(..inputs.n)?) {
                *l = loc(*s)?;
            }
            let (xs, y) = io(acts, locs, loc(output)?)?;
            pack::eval(params, xs.get(..inputs.n)?, y);
        }
    }
    Some(())
}

/// Where a tensor's bytes are: in the model, or `(start, len)` in the arena (for `io`: in the
/// activation region).
#[derive(Clone, Copy, Debug)]
enum Loc<'m> {
    Const(&'m [u8]),
    Arena(usize, usize),
}

/// Splits the activation region into `N` shared input slices and one exclusive output slice.
/// Inputs must not overlap the output (checked at init; checked again here for soundness).
fn io<'s, 'm: 's, const N: usize>(
    acts: &'s mut [u8],
    inputs: [Loc<'m>; N],
    output: Loc<'m>,
) -> Option<([&'s [u8]; N], &'s mut [u8])> {
    let Loc::Arena(os, ol) = output else {
        return None;
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operator of every fixture network: its prepared state survives the record
    /// encoding exactly, and the sizing pass counts the words init writes.
    #[test]
    fn prepared_records_round_trip() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        for name in [
            "nets/all_ops",
            "core/pipeline_u8_classifier",
            "core/fc_pc_bias_relu",
            "core/fc_external_buffers",
            "core/conv_same_s2_pc_relu6",
        ] {
            let bytes = std::fs::read(std::format!("{dir}{name}.tflite")).unwrap();
            let model = Model::from_bytes(&bytes).unwrap();
            let mut recs = std::vec![0u32; WORDS_PER_TENSOR * model.num_tensors()];
            let lay = layout(&model, &mut recs, Path::Reference).unwrap();
            let mut ctx = Ctx::new(&model, &recs, lay.activation_bytes, None, Path::Reference);
            let mut total = 0;
            for i in 0..model.num_operators() {
                let p = bind(&model.operator(i).unwrap(), &mut ctx).unwrap();
                let mut count = Writer::new(None);
                p.put(&mut count);
                let mut buf = std::vec![0u8; 4 * count.len];
                let mut w = Writer::new(Some(&mut buf));
                p.put(&mut w);
                assert!(w.ok() && w.len == count.len, "{name} op {i}");
                let mut r = Reader::new(&buf);
                assert_eq!(Prepared::get(&mut r), Some(p), "{name} op {i}");
                assert_eq!(r.next(), None, "{name} op {i}: words left over");
                total += count.len;
            }
            assert_eq!(align_line(4 * total), Some(lay.record_bytes), "{name}");
        }
    }
}
