//! Operator kernels, one module per operator family. Each has the same shape: `prepare` turns
//! plain numbers from the model into validated parameters (or a `&'static str` reason the
//! interpreter wraps with the operator's index and opcode), and `eval` computes on slices.

pub mod conv;
pub mod dequantize;
pub mod fully_connected;
pub mod mean;
pub mod quantize;
pub mod reshape;
