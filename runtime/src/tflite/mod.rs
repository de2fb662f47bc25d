//! The TFLite flatbuffer format: schema facts shared by the zero-copy reader and the writer.

pub mod schema;
#[cfg(feature = "writer")]
pub mod writer;
