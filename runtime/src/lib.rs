//! kdruntime: zero-copy, no-heap int8 inference, bit-exact with TFLite's reference kernels.
//!
//! The core is `no_std` and allocates nothing: the model is read in place from a byte slice
//! (flash or memory) and every tensor lives in one caller-supplied arena whose size an offline
//! planner computes before init. Features: `std` (error Display, the kdrun CLI) and `writer`
//! (the TFLite flatbuffer writer used by the trainer's exporter and the tests).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "writer")]
extern crate alloc;
// Unit tests use std (formatting, vectors) even when the crate itself is built no_std.
#[cfg(test)]
extern crate std;

mod bytes;
pub mod error;
pub mod interpreter;
pub mod kernels;
pub mod letterbox;
pub mod model;
pub mod plan;
pub mod postprocess;
pub mod quant;
mod record;
pub mod tflite;
pub mod workers;

pub use error::{Error, Result};
pub use interpreter::Interpreter;
pub use model::{DType, Model, OperatorInfo, Shape, TensorInfo};
