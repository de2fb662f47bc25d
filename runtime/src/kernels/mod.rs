//! Plain reference int8 kernels, bit-exact with TFLite's reference kernels (`BUILTIN_REF`),
//! one module per operator family.
//!
//! Every family has the same shape: `prepare` validates plain numbers from the model (scales,
//! zero points, shapes, options) and precomputes everything `eval` needs into a `*Params` value,
//! or returns a `&'static str` reason that the interpreter wraps with the operator's index and
//! opcode; `eval` computes on slices without allocating and without panicking on any slices whose
//! lengths match what `prepare` accepted. Optimised kernels, when they come, are tested against
//! these.

pub mod activations;
pub mod add;
pub mod broadcast;
pub mod concatenation;
pub mod conv;
pub mod depthwise_conv;
pub mod dequantize;
pub mod float_math;
pub mod fully_connected;
pub mod hard_swish;
pub mod logistic;
pub mod mean;
pub mod mul;
pub mod pack;
pub mod pad;
pub mod pooling;
pub mod quantize;
pub mod reshape;
pub mod shape;
pub mod simd;
pub mod softmax;
pub mod strided_slice;
