//! Facts from TFLite's public flatbuffer schema (`schema.fbs`): table field ids, enum values and
//! the builtin-options union tags used by kdedge. The reader and the writer both take them from
//! here, so the two can never disagree. Field ids are vtable slot numbers (declaration order in
//! the schema, deprecated fields included).
// The constants are named exactly as in schema.fbs; their meaning is documented there.
#![allow(missing_docs)]

/// The 4-byte file identifier at offset 4 of every TFLite flatbuffer.
pub const FILE_IDENTIFIER: &[u8; 4] = b"TFL3";
/// The schema version written by current converters.
pub const SCHEMA_VERSION: u32 = 3;

/// Field ids of `table Model`.
pub mod model {
    pub const VERSION: u16 = 0;
    pub const OPERATOR_CODES: u16 = 1;
    pub const SUBGRAPHS: u16 = 2;
    pub const DESCRIPTION: u16 = 3;
    pub const BUFFERS: u16 = 4;
    pub const METADATA_BUFFER: u16 = 5;
    pub const METADATA: u16 = 6;
    pub const SIGNATURE_DEFS: u16 = 7;
}

/// Field ids of `table OperatorCode`.
pub mod operator_code {
    pub const DEPRECATED_BUILTIN_CODE: u16 = 0;
    pub const CUSTOM_CODE: u16 = 1;
    pub const VERSION: u16 = 2;
    pub const BUILTIN_CODE: u16 = 3;
}

/// Field ids of `table SubGraph`.
pub mod subgraph {
    pub const TENSORS: u16 = 0;
    pub const INPUTS: u16 = 1;
    pub const OUTPUTS: u16 = 2;
    pub const OPERATORS: u16 = 3;
    pub const NAME: u16 = 4;
}

/// Field ids of `table Tensor`.
pub mod tensor {
    pub const SHAPE: u16 = 0;
    pub const TYPE: u16 = 1;
    pub const BUFFER: u16 = 2;
    pub const NAME: u16 = 3;
    pub const QUANTIZATION: u16 = 4;
    pub const IS_VARIABLE: u16 = 5;
    pub const SPARSITY: u16 = 6;
    pub const SHAPE_SIGNATURE: u16 = 7;
}

/// Field ids of `table QuantizationParameters`.
pub mod quantization {
    pub const MIN: u16 = 0;
    pub const MAX: u16 = 1;
    pub const SCALE: u16 = 2;
    pub const ZERO_POINT: u16 = 3;
    pub const DETAILS_TYPE: u16 = 4;
    pub const DETAILS: u16 = 5;
    pub const QUANTIZED_DIMENSION: u16 = 6;
}

/// Field ids of `table Operator`.
pub mod operator {
    pub const OPCODE_INDEX: u16 = 0;
    pub const INPUTS: u16 = 1;
    pub const OUTPUTS: u16 = 2;
    pub const BUILTIN_OPTIONS_TYPE: u16 = 3;
    pub const BUILTIN_OPTIONS: u16 = 4;
    pub const CUSTOM_OPTIONS: u16 = 5;
    pub const CUSTOM_OPTIONS_FORMAT: u16 = 6;
    pub const MUTATING_VARIABLE_INPUTS: u16 = 7;
    pub const INTERMEDIATES: u16 = 8;
}

/// Field ids of `table Buffer`.
pub mod buffer {
    pub const DATA: u16 = 0;
    /// Offset of the data from the start of the file, for models larger than 2 GB.
    pub const OFFSET: u16 = 1;
    pub const SIZE: u16 = 2;
}

/// Field ids of `table Conv2DOptions`.
pub mod conv2d_options {
    pub const PADDING: u16 = 0;
    pub const STRIDE_W: u16 = 1;
    pub const STRIDE_H: u16 = 2;
    pub const FUSED_ACTIVATION_FUNCTION: u16 = 3;
    pub const DILATION_W_FACTOR: u16 = 4;
    pub const DILATION_H_FACTOR: u16 = 5;
}

/// Field ids of `table DepthwiseConv2DOptions`.
pub mod depthwise_conv2d_options {
    pub const PADDING: u16 = 0;
    pub const STRIDE_W: u16 = 1;
    pub const STRIDE_H: u16 = 2;
    pub const DEPTH_MULTIPLIER: u16 = 3;
    pub const FUSED_ACTIVATION_FUNCTION: u16 = 4;
    pub const DILATION_W_FACTOR: u16 = 5;
    pub const DILATION_H_FACTOR: u16 = 6;
}

/// Field ids of `table Pool2DOptions` (AVERAGE_POOL_2D, MAX_POOL_2D).
pub mod pool2d_options {
    pub const PADDING: u16 = 0;
    pub const STRIDE_W: u16 = 1;
    pub const STRIDE_H: u16 = 2;
    pub const FILTER_WIDTH: u16 = 3;
    pub const FILTER_HEIGHT: u16 = 4;
    pub const FUSED_ACTIVATION_FUNCTION: u16 = 5;
}

/// Field ids of `table FullyConnectedOptions`.
pub mod fully_connected_options {
    pub const FUSED_ACTIVATION_FUNCTION: u16 = 0;
    pub const WEIGHTS_FORMAT: u16 = 1;
    pub const KEEP_NUM_DIMS: u16 = 2;
    pub const ASYMMETRIC_QUANTIZE_INPUTS: u16 = 3;
}

/// Field ids of `table SoftmaxOptions`.
pub mod softmax_options {
    pub const BETA: u16 = 0;
}

/// Field ids of `table ConcatenationOptions`.
pub mod concatenation_options {
    pub const AXIS: u16 = 0;
    pub const FUSED_ACTIVATION_FUNCTION: u16 = 1;
}

/// Field ids of `table AddOptions`.
pub mod add_options {
    pub const FUSED_ACTIVATION_FUNCTION: u16 = 0;
    pub const POT_SCALE_INT16: u16 = 1;
}

/// Field ids of `table MulOptions`.
pub mod mul_options {
    pub const FUSED_ACTIVATION_FUNCTION: u16 = 0;
}

/// Field ids of `table ReshapeOptions`.
pub mod reshape_options {
    pub const NEW_SHAPE: u16 = 0;
}

/// Field ids of `table ReducerOptions` (MEAN).
pub mod reducer_options {
    pub const KEEP_DIMS: u16 = 0;
}

/// Field ids of `table SqueezeOptions`.
pub mod squeeze_options {
    pub const SQUEEZE_DIMS: u16 = 0;
}

/// Field ids of `table StridedSliceOptions`.
pub mod strided_slice_options {
    pub const BEGIN_MASK: u16 = 0;
    pub const END_MASK: u16 = 1;
    pub const ELLIPSIS_MASK: u16 = 2;
    pub const NEW_AXIS_MASK: u16 = 3;
    pub const SHRINK_AXIS_MASK: u16 = 4;
    pub const OFFSET: u16 = 5;
}

/// Field ids of `table ShapeOptions`.
pub mod shape_options {
    pub const OUT_TYPE: u16 = 0;
}

/// Field ids of `table PackOptions`.
pub mod pack_options {
    pub const VALUES_COUNT: u16 = 0;
    pub const AXIS: u16 = 1;
}

/// `enum TensorType : byte`.
pub mod tensor_type {
    pub const FLOAT32: i8 = 0;
    pub const FLOAT16: i8 = 1;
    pub const INT32: i8 = 2;
    pub const UINT8: i8 = 3;
    pub const INT64: i8 = 4;
    pub const STRING: i8 = 5;
    pub const BOOL: i8 = 6;
    pub const INT16: i8 = 7;
    pub const COMPLEX64: i8 = 8;
    pub const INT8: i8 = 9;
}

/// `enum Padding : byte`.
pub mod padding {
    pub const SAME: i8 = 0;
    pub const VALID: i8 = 1;
}

/// `enum ActivationFunctionType : byte`.
pub mod activation {
    pub const NONE: i8 = 0;
    pub const RELU: i8 = 1;
    pub const RELU_N1_TO_1: i8 = 2;
    pub const RELU6: i8 = 3;
    pub const TANH: i8 = 4;
    pub const SIGN_BIT: i8 = 5;
}

/// `enum BuiltinOperator : int32` (the subset kdedge knows by name).
pub mod builtin_operator {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONCATENATION: i32 = 2;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const LOGISTIC: i32 = 14;
    pub const MAX_POOL_2D: i32 = 17;
    pub const MUL: i32 = 18;
    pub const RELU: i32 = 19;
    pub const RELU_N1_TO_1: i32 = 20;
    pub const RELU6: i32 = 21;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
    pub const PAD: i32 = 34;
    pub const MEAN: i32 = 40;
    pub const SQUEEZE: i32 = 43;
    pub const STRIDED_SLICE: i32 = 45;
    pub const SHAPE: i32 = 77;
    pub const PACK: i32 = 83;
    pub const QUANTIZE: i32 = 114;
    pub const HARD_SWISH: i32 = 117;
    /// `deprecated_builtin_code` is a byte; codes above this live only in `builtin_code`.
    pub const PLACEHOLDER_FOR_GREATER_OP_CODES: i32 = 127;

    /// The schema's name of a builtin operator, for error messages and `kdrun info`.
    pub fn name(code: i32) -> &'static str {
        match code {
            ADD => "ADD",
            AVERAGE_POOL_2D => "AVERAGE_POOL_2D",
            CONCATENATION => "CONCATENATION",
            CONV_2D => "CONV_2D",
            DEPTHWISE_CONV_2D => "DEPTHWISE_CONV_2D",
            DEQUANTIZE => "DEQUANTIZE",
            FULLY_CONNECTED => "FULLY_CONNECTED",
            LOGISTIC => "LOGISTIC",
            MAX_POOL_2D => "MAX_POOL_2D",
            MUL => "MUL",
            RELU => "RELU",
            RELU_N1_TO_1 => "RELU_N1_TO_1",
            RELU6 => "RELU6",
            RESHAPE => "RESHAPE",
            SOFTMAX => "SOFTMAX",
            PAD => "PAD",
            MEAN => "MEAN",
            SQUEEZE => "SQUEEZE",
            STRIDED_SLICE => "STRIDED_SLICE",
            SHAPE => "SHAPE",
            PACK => "PACK",
            QUANTIZE => "QUANTIZE",
            HARD_SWISH => "HARD_SWISH",
            _ => "UNKNOWN",
        }
    }
}

/// Tags of `union BuiltinOptions` (the subset kdedge reads and writes).
pub mod builtin_options {
    pub const NONE: u8 = 0;
    pub const CONV2D_OPTIONS: u8 = 1;
    pub const DEPTHWISE_CONV2D_OPTIONS: u8 = 2;
    pub const POOL2D_OPTIONS: u8 = 5;
    pub const FULLY_CONNECTED_OPTIONS: u8 = 8;
    pub const SOFTMAX_OPTIONS: u8 = 9;
    pub const CONCATENATION_OPTIONS: u8 = 10;
    pub const ADD_OPTIONS: u8 = 11;
    pub const RESHAPE_OPTIONS: u8 = 17;
    pub const MUL_OPTIONS: u8 = 21;
    pub const PAD_OPTIONS: u8 = 22;
    pub const REDUCER_OPTIONS: u8 = 27;
    pub const SQUEEZE_OPTIONS: u8 = 30;
    pub const STRIDED_SLICE_OPTIONS: u8 = 32;
    pub const SHAPE_OPTIONS: u8 = 55;
    pub const PACK_OPTIONS: u8 = 59;
    pub const DEQUANTIZE_OPTIONS: u8 = 38;
    pub const QUANTIZE_OPTIONS: u8 = 89;
    pub const HARD_SWISH_OPTIONS: u8 = 91;
}
