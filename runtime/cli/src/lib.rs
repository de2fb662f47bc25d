//! The pieces of `kdrun` that other tools reuse: decoding and letterboxing an image into a
//! model input ([`image_input`]), turning a raw int8 output into classes ([`report`]), reading
//! `inference_config.json` ([`config`]) and, with the `ort` feature, running the exported ONNX
//! model in ONNX Runtime ([`ort_backend`]) with exactly the same pre- and postprocessing.
#![deny(missing_docs)]

pub mod config;
pub mod image_input;
#[cfg(feature = "ort")]
pub mod ort_backend;
pub mod report;
