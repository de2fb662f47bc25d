//! The validated, zero-copy view of a TFLite model. `Model::from_bytes` walks the whole
//! flatbuffer once and checks every offset, length and index it will ever follow, so later
//! accessors can only fail on semantic grounds (an operator's kernel rejecting its tensors).
//! Nothing is copied: weights are read in place from the caller's bytes.

use crate::error::{Error, Result, TensorName};
use crate::tflite::reader::{Table, Vector};
use crate::tflite::schema::{self, builtin_operator, tensor_type};

/// Highest tensor rank kdruntime handles.
pub const MAX_RANK: usize = 6;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// `float32`
    Float32,
    /// `int32`
    Int32,
    /// `uint8`
    UInt8,
    /// `int64`
    Int64,
    /// `int16`
    Int16,
    /// `int8`
    Int8,
    /// `bool` (one byte)
    Bool,
    /// `float16`
    Float16,
}

impl DType {
    /// From the schema's `TensorType`; `None` for types kdruntime cannot size (strings...).
    pub fn from_schema(t: i8) -> Option<Self> {
        Some(match t {
            tensor_type::FLOAT32 => DType::Float32,
            tensor_type::INT32 => DType::Int32,
            tensor_type::UINT8 => DType::UInt8,
            tensor_type::INT64 => DType::Int64,
            tensor_type::INT16 => DType::Int16,
            tensor_type::INT8 => DType::Int8,
            tensor_type::BOOL => DType::Bool,
            tensor_type::FLOAT16 => DType::Float16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Float32 | DType::Int32 => 4,
            DType::Int64 => 8,
            DType::Int16 | DType::Float16 => 2,
            DType::UInt8 | DType::Int8 | DType::Bool => 1,
        }
    }

    /// The schema's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Int32 => "int32",
            DType::UInt8 => "uint8",
            DType::Int64 => "int64",
            DType::Int16 => "int16",
            DType::Int8 => "int8",
            DType::Bool => "bool",
            DType::Float16 => "float16",
        }
    }
}

/// A tensor shape held by value (rank at most [`MAX_RANK`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Shape {
    dims: [i32; MAX_RANK],
    rank: usize,
}

impl Shape {
    /// A shape from dimensions; `None` if the rank exceeds [`MAX_RANK`] or a dimension is negative.
    pub fn new(dims: &[i32]) -> Option<Self> {
        if dims.len() > MAX_RANK || dims.iter().any(|&d| d < 0) {
            return None;
        }
        let mut s = Shape {
            dims: [0; MAX_RANK],
            rank: dims.len(),
        };
        s.dims.get_mut(..dims.len())?.copy_from_slice(dims);
        Some(s)
    }

    /// The dimensions.
    pub fn dims(&self) -> &[i32] {
        self.dims.get(..self.rank).unwrap_or(&[])
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Dimension `i` as usize (0 when out of range).
    pub fn dim(&self, i: usize) -> usize {
        self.dims().get(i).map_or(0, |&d| d as usize)
    }

    /// Product of the dimensions, `None` on overflow.
    pub fn num_elements(&self) -> Option<usize> {
        self.dims()
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
    }
}

/// Affine quantisation parameters, read in place.
#[derive(Clone, Copy, Debug)]
pub struct Quant<'a> {
    scales: Option<Vector<'a>>,
    zero_points: Option<Vector<'a>>,
    /// Axis the per-channel vectors run along.
    pub quantized_dimension: usize,
}

impl<'a> Quant<'a> {
    const NONE: Quant<'static> = Quant {
        scales: None,
        zero_points: None,
        quantized_dimension: 0,
    };

    /// Number of scales (0: not quantised, 1: per-tensor, more: per-channel).
    pub fn len(&self) -> usize {
        self.scales.map_or(0, |v| v.len())
    }

    /// True when the tensor carries no scale.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Scale `i` (validated in range at load; 0.0 if absent).
    pub fn scale(&self, i: usize) -> f32 {
        self.scales.and_then(|v| v.f32(i).ok()).unwrap_or(0.0)
    }

    /// Zero point `i` (0 if absent).
    pub fn zero_point(&self, i: usize) -> i64 {
        self.zero_points.and_then(|v| v.i64(i).ok()).unwrap_or(0)
    }

    /// Iterates the scales in order.
    pub fn scales(&self) -> impl Iterator<Item = f32> + Clone + '_ {
        (0..self.len()).map(move |i| self.scale(i))
    }
}

/// One tensor of subgraph 0, as described by the model.
#[derive(Clone, Copy, Debug)]
pub struct TensorInfo<'a> {
    /// Index in subgraph 0.
    pub index: usize,
    /// Name bytes (empty when absent).
    pub name: &'a [u8],
    /// Element type.
    pub dtype: DType,
    /// Static shape.
    pub shape: Shape,
    /// Quantisation (per-tensor scale and zero point are entry 0).
    pub quant: Quant<'a>,
    /// Constant data, when the tensor's buffer holds any (weights, biases, axes...).
    pub data: Option<&'a [u8]>,
}

impl<'a> TensorInfo<'a> {
    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.num_elements().unwrap_or(0)
    }
    /// Size of the tensor's data in bytes (validated not to overflow at load).
    pub fn byte_size(&self) -> usize {
        self.num_elements() * self.dtype.size()
    }
    /// Per-tensor scale (entry 0), 0.0 when unquantised.
    pub fn scale(&self) -> f32 {
        self.quant.scale(0)
    }
    /// Per-tensor zero point (entry 0).
    pub fn zero_point(&self) -> i64 {
        self.quant.zero_point(0)
    }
    /// The name as UTF-8, when it is valid UTF-8.
    pub fn name_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.name).ok()
    }
    /// The name as an error-friendly copy.
    pub fn error_name(&self) -> TensorName {
        TensorName::new(self.name)
    }
    /// Error about this tensor.
    pub fn error(&self, reason: &'static str) -> Error {
        Error::BadTensor {
            index: self.index,
            name: self.error_name(),
            reason,
        }
    }
}

/// One operator of subgraph 0.
#[derive(Clone, Copy, Debug)]
pub struct OperatorInfo<'a> {
    /// Index in execution order.
    pub index: usize,
    /// Builtin opcode (-1 for custom operators).
    pub opcode: i32,
    /// Operator version.
    pub version: i32,
    /// Input tensor indices (-1 = optional input omitted).
    pub inputs: Vector<'a>,
    /// Output tensor indices.
    pub outputs: Vector<'a>,
    /// `BuiltinOptions` union tag.
    pub options_type: u8,
    /// The options table, when present.
    pub options: Option<Table<'a>>,
}

impl<'a> OperatorInfo<'a> {
    /// Schema name of the opcode.
    pub fn name(&self) -> &'static str {
        if self.opcode < 0 {
            "CUSTOM"
        } else {
            builtin_operator::name(self.opcode)
        }
    }

    /// Error: this operator is invalid for `reason`.
    pub fn invalid(&self, reason: &'static str) -> Error {
        Error::InvalidOperator {
            op_index: self.index,
            opcode: self.opcode,
            name: self.name(),
            version: self.version,
            reason,
        }
    }

    /// Error: tensor `t` is invalid as an operand of this operator, for `reason`.
    pub fn invalid_tensor(&self, t: &TensorInfo, reason: &'static str) -> Error {
        Error::InvalidOperand {
            op_index: self.index,
            opcode: self.opcode,
            name: self.name(),
            version: self.version,
            tensor: t.index,
            tensor_name: t.error_name(),
            reason,
        }
    }

    /// Error: this operator is not implemented.
    pub fn unsupported(&self) -> Error {
        Error::UnsupportedOperator {
            op_index: self.index,
            opcode: self.opcode,
            name: self.name(),
            version: self.version,
        }
    }

    /// Tensor index of input `i`, `None` when omitted (-1) or absent.
    pub fn input(&self, i: usize) -> Option<usize> {
        self.inputs
            .i32(i)
            .ok()
            .and_then(|t| usize::try_from(t).ok())
    }

    /// Tensor index of output `i`.
    pub fn output(&self, i: usize) -> Option<usize> {
        self.outputs
            .i32(i)
            .ok()
            .and_then(|t| usize::try_from(t).ok())
    }
}

/// A validated TFLite model borrowed from the caller's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    bytes: &'a [u8],
    version: u32,
    description: &'a [u8],
    opcodes: Vector<'a>,
    buffers: Vector<'a>,
    tensors: Vector<'a>,
    operators: Vector<'a>,
    inputs: Vector<'a>,
    outputs: Vector<'a>,
}

impl<'a> Model<'a> {
    /// Parses and validates a model in place. Every structure the runtime will follow is checked
    /// here, so a model accepted by `from_bytes` cannot make a later accessor read out of bounds.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 8 {
            return Err(Error::Malformed {
                offset: 0,
                what: "file shorter than a flatbuffer header",
            });
        }
        if bytes.get(4..8) != Some(&schema::FILE_IDENTIFIER[..]) {
            return Err(Error::UnsupportedModel {
                reason: "missing TFL3 file identifier",
            });
        }
        use schema::model as f;
        let root = Table::root(bytes, "Model table")?;
        let version = root.u32(f::VERSION, 0)?;
        let description = root
            .string(f::DESCRIPTION, "Model.description")?
            .unwrap_or(&[]);
        let opcodes = root.vector_or_empty(f::OPERATOR_CODES, 4, "Model.operator_codes")?;
        let buffers = root.vector_or_empty(f::BUFFERS, 4, "Model.buffers")?;
        let subgraphs = root.vector_or_empty(f::SUBGRAPHS, 4, "Model.subgraphs")?;
        if subgraphs.is_empty() {
            return Err(Error::UnsupportedModel {
                reason: "model has no subgraph",
            });
        }
        let sg = subgraphs.table(0)?;
        use schema::subgraph as s;
        let tensors = sg.vector_or_empty(s::TENSORS, 4, "SubGraph.tensors")?;
        let operators = sg.vector_or_empty(s::OPERATORS, 4, "SubGraph.operators")?;
        let inputs = sg.vector_or_empty(s::INPUTS, 4, "SubGraph.inputs")?;
        let outputs = sg.vector_or_empty(s::OUTPUTS, 4, "SubGraph.outputs")?;
        let model = Model {
            bytes,
            version,
            description,
            opcodes,
            buffers,
            tensors,
            operators,
            inputs,
            outputs,
        };
        model.validate()?;
        Ok(model)
    }

    fn validate(&self) -> Result<()> {
        // The planner stores op indices in u32 and tensor indices in i32; the schema allows no more.
        if self.tensors.len() > i32::MAX as usize || self.operators.len() > i32::MAX as usize {
            return Err(Error::UnsupportedModel {
                reason: "too many tensors or operators",
            });
        }
        for i in 0..self.opcodes.len() {
            self.opcode(i)?;
        }
        for i in 0..self.tensors.len() {
            self.tensor(i)?;
        }
        for (v, what) in [
            (self.inputs, "SubGraph.inputs"),
            (self.outputs, "SubGraph.outputs"),
        ] {
            for i in 0..v.len() {
                let t = v.i32(i)?;
                if t < 0 || t as usize >= self.tensors.len() {
                    return Err(Error::Malformed {
                        offset: v.offset() + 4 * i,
                        what,
                    });
                }
            }
        }
        for i in 0..self.operators.len() {
            self.operator(i)?;
        }
        Ok(())
    }

    /// The model bytes this view borrows.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Schema version field.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Model description string (raw bytes).
    pub fn description(&self) -> &'a [u8] {
        self.description
    }

    /// Number of tensors in subgraph 0.
    pub fn num_tensors(&self) -> usize {
        self.tensors.len()
    }

    /// Number of operators in subgraph 0.
    pub fn num_operators(&self) -> usize {
        self.operators.len()
    }

    /// Number of graph inputs.
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Number of graph outputs.
    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Tensor index of graph input `i`.
    pub fn input_tensor_index(&self, i: usize) -> Result<usize> {
        Self::graph_io(self.inputs, i, "graph input")
    }

    /// Tensor index of graph output `i`.
    pub fn output_tensor_index(&self, i: usize) -> Result<usize> {
        Self::graph_io(self.outputs, i, "graph output")
    }

    fn graph_io(v: Vector<'a>, i: usize, what: &'static str) -> Result<usize> {
        if i >= v.len() {
            return Err(Error::IndexOutOfRange {
                what,
                index: i,
                len: v.len(),
            });
        }
        Ok(v.i32(i)? as usize)
    }

    /// `(builtin code, version)` of operator code `i`; custom codes report -1.
    fn opcode(&self, i: usize) -> Result<(i32, i32)> {
        use schema::operator_code as f;
        let t = self.opcodes.table(i)?;
        let deprecated = t.i8(f::DEPRECATED_BUILTIN_CODE, 0)? as i32;
        let code = t.i32(f::BUILTIN_CODE, 0)?;
        let version = t.i32(f::VERSION, 1)?;
        t.string(f::CUSTOM_CODE, "OperatorCode.custom_code")?;
        // TFLite's GetBuiltinCode: the larger of the two fields (old files only set the byte).
        let code = code.max(deprecated);
        const CUSTOM: i32 = 32;
        Ok((if code == CUSTOM { -1 } else { code }, version))
    }

    /// Tensor `i` of subgraph 0, fully validated.
    pub fn tensor(&self, i: usize) -> Result<TensorInfo<'a>> {
        if i >= self.tensors.len() {
            return Err(Error::IndexOutOfRange {
                what: "tensor",
                index: i,
                len: self.tensors.len(),
            });
        }
        use schema::tensor as f;
        let t = self.tensors.table(i)?;
        let name = t.string(f::NAME, "Tensor.name")?.unwrap_or(&[]);
        let bad = |reason| Error::BadTensor {
            index: i,
            name: TensorName::new(name),
            reason,
        };
        let shape_v = t.vector_or_empty(f::SHAPE, 4, "Tensor.shape")?;
        if shape_v.len() > MAX_RANK {
            return Err(bad("rank above 6"));
        }
        let mut dims = [0i32; MAX_RANK];
        for (k, d) in dims.iter_mut().enumerate().take(shape_v.len()) {
            *d = shape_v.i32(k)?;
        }
        let shape = Shape::new(dims.get(..shape_v.len()).unwrap_or(&[]))
            .ok_or_else(|| bad("negative dimension"))?;
        let dtype = DType::from_schema(t.i8(f::TYPE, 0)?).ok_or_else(|| bad("unsupported type"))?;
        let n = shape
            .num_elements()
            .ok_or_else(|| bad("element count overflows"))?;
        let size = n
            .checked_mul(dtype.size())
            .filter(|&s| s <= i32::MAX as usize)
            .ok_or_else(|| bad("byte size overflows"))?;
        let buf_idx = t.u32(f::BUFFER, 0)? as usize;
        if buf_idx >= self.buffers.len() && !(buf_idx == 0 && self.buffers.is_empty()) {
            return Err(bad("buffer index out of range"));
        }
        let data = if self.buffers.is_empty() {
            None
        } else {
            self.buffer(buf_idx)?
        };
        if let Some(d) = data {
            if d.len() != size {
                return Err(bad("constant data size does not match shape and type"));
            }
        }
        let quant = match t.table(f::QUANTIZATION, "Tensor.quantization")? {
            None => Quant::NONE,
            Some(q) => {
                use schema::quantization as qf;
                let scales = q.vector(qf::SCALE, 4, "QuantizationParameters.scale")?;
                let zps = q.vector(qf::ZERO_POINT, 8, "QuantizationParameters.zero_point")?;
                q.vector(qf::MIN, 4, "QuantizationParameters.min")?;
                q.vector(qf::MAX, 4, "QuantizationParameters.max")?;
                let qd = q.i32(qf::QUANTIZED_DIMENSION, 0)?;
                let ns = scales.map_or(0, |v| v.len());
                let nz = zps.map_or(0, |v| v.len());
                if nz != 0 && nz != ns {
                    return Err(bad("zero_point count differs from scale count"));
                }
                if ns > 1 {
                    if qd < 0 || qd as usize >= shape.rank() {
                        return Err(bad("quantized_dimension out of range"));
                    }
                    if shape.dim(qd as usize) != ns {
                        return Err(bad(
                            "per-channel scale count differs from the quantized dimension",
                        ));
                    }
                }
                let quant = Quant {
                    scales,
                    zero_points: zps,
                    quantized_dimension: qd.max(0) as usize,
                };
                for k in 0..ns {
                    let s = quant.scale(k);
                    if !s.is_finite() || s < 0.0 {
                        return Err(bad("scale is negative or not finite"));
                    }
                }
                quant
            }
        };
        Ok(TensorInfo {
            index: i,
            name,
            dtype,
            shape,
            quant,
            data,
        })
    }

    /// Data of buffer `i` (`None` when empty): inline `Buffer.data`, or `Buffer.offset/size`
    /// relative to the start of the file (the layout used for models above 2 GB).
    fn buffer(&self, i: usize) -> Result<Option<&'a [u8]>> {
        use schema::buffer as f;
        let b = self.buffers.table(i)?;
        if let Some(v) = b.vector(f::DATA, 1, "Buffer.data")? {
            return Ok(if v.is_empty() { None } else { Some(v.bytes()) });
        }
        let off = b.u64(f::OFFSET, 0)?;
        let size = b.u64(f::SIZE, 0)?;
        if off > 1 && size > 0 {
            let data = usize::try_from(off)
                .ok()
                .zip(usize::try_from(size).ok())
                .and_then(|(o, s)| self.bytes.get(o..o.checked_add(s)?));
            return match data {
                Some(d) => Ok(Some(d)),
                None => Err(Error::Malformed {
                    offset: b.offset(),
                    what: "Buffer.offset/size beyond the file",
                }),
            };
        }
        Ok(None)
    }

    /// Operator `i` of subgraph 0, with its opcode resolved and tensor indices checked.
    pub fn operator(&self, i: usize) -> Result<OperatorInfo<'a>> {
        if i >= self.operators.len() {
            return Err(Error::IndexOutOfRange {
                what: "operator",
                index: i,
                len: self.operators.len(),
            });
        }
        use schema::operator as f;
        let t = self.operators.table(i)?;
        let opcode_index = t.u32(f::OPCODE_INDEX, 0)? as usize;
        if opcode_index >= self.opcodes.len() {
            return Err(Error::Malformed {
                offset: t.offset(),
                what: "Operator.opcode_index out of range",
            });
        }
        let (opcode, version) = self.opcode(opcode_index)?;
        let inputs = t.vector_or_empty(f::INPUTS, 4, "Operator.inputs")?;
        let outputs = t.vector_or_empty(f::OUTPUTS, 4, "Operator.outputs")?;
        for (v, optional_ok) in [(inputs, true), (outputs, false)] {
            for k in 0..v.len() {
                let ti = v.i32(k)?;
                let ok =
                    (ti >= 0 && (ti as usize) < self.tensors.len()) || (optional_ok && ti == -1);
                if !ok {
                    return Err(Error::Malformed {
                        offset: v.offset() + 4 * k,
                        what: "Operator tensor index out of range",
                    });
                }
            }
        }
        let options_type = t.u8(f::BUILTIN_OPTIONS_TYPE, 0)?;
        let options = t.table(f::BUILTIN_OPTIONS, "Operator.builtin_options")?;
        t.vector(f::CUSTOM_OPTIONS, 1, "Operator.custom_options")?;
        Ok(OperatorInfo {
            index: i,
            opcode,
            version,
            inputs,
            outputs,
            options_type,
            options,
        })
    }

    /// Iterates the tensors (each already validated by `from_bytes`).
    pub fn tensors(&self) -> impl Iterator<Item = Result<TensorInfo<'a>>> + '_ {
        (0..self.num_tensors()).map(move |i| self.tensor(i))
    }

    /// Iterates the operators in execution order.
    pub fn operators(&self) -> impl Iterator<Item = Result<OperatorInfo<'a>>> + '_ {
        (0..self.num_operators()).map(move |i| self.operator(i))
    }
}
