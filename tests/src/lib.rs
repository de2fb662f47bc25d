//! kdtests: cross-crate tests and their helpers.
//!
//! - [`reference`]: runs a model in the real interpreters (TFLite reference / optimised / XNNPACK,
//!   TFLite Micro, ONNX Runtime) through `tools/refharness.py`, so a test compares with them in a
//!   line.
//! - [`kd`]: runs a model in kdruntime (load, arena, init, invoke) in one call.
//! - [`rng`]: a small deterministic random generator for test data.
//! - [`allops`]: a small network using every operator kdruntime runs.
//! - [`gen`]: random single-operator int8 models built with the kdruntime writer.
//! - [`bench`]: the latency benchmark behind `make bench` and BENCHMARKS.md's generated
//!   sections.
//! - [`nets`]: whole full-integer networks (MobileNetV2, EfficientNet-Lite) with calibrated
//!   quantisation, for whole-network parity tests, benchmarks and the demo.
//! - [`ppm`]: any image as the binary PPM the C example and the firmware read.
#![deny(missing_docs)]

pub mod allops;
pub mod bench;
pub mod gen;
pub mod kd;
pub mod nets;
pub mod ppm;
pub mod reference;
pub mod rng;

/// The workspace root (the folder above this crate).
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}
