//! The TFLite flatbuffer format: schema facts shared by the zero-copy reader and the writer.

pub mod reader;
pub mod schema;
#[cfg(feature = "writer")]
pub mod writer;
