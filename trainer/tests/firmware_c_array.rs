//! One C array format for firmware: firmware/tools/gen_data.py's `model` subcommand must write
//! model_data.c / model_data.h byte for byte as the exporter's `c_array::write` does under
//! `export::C_SYMBOL` (the firmware's main.c uses that symbol and compiles either), on an
//! exported model and on byte strings whose lengths cover every row ending (12 bytes a row).
//!
//! Needs KDEDGE_PYTHON (any Python 3; the generator uses the standard library only).

mod export_net;

use std::path::Path;
use std::process::Command;

use kdtrainer::export::{self, c_array, tflite};

/// Runs `gen_data.py model MODEL OUT` and returns (model_data.c, model_data.h).
fn generate(model: &Path, out: &Path) -> (String, String) {
    let python = std::env::var("KDEDGE_PYTHON").expect("KDEDGE_PYTHON must name a Python 3");
    let script = export_net::repo().join("firmware/tools/gen_data.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg("model")
        .arg(model)
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(
        run.status.success(),
        "gen_data.py model {}: {}",
        model.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    (read(export::C_FILE), read(export::H_FILE))
}

/// Writes `model` to a file, runs the generator on it and compares with the exporter.
fn assert_same(model: &[u8], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(export::TFLITE_FILE);
    std::fs::write(&path, model).unwrap();
    let (c, h) = generate(&path, &dir.path().join("gen"));
    let (want_c, want_h) = c_array::write(model, export::C_SYMBOL).unwrap();
    assert_eq!(h, want_h, "{what}: model_data.h differs");
    assert_eq!(c, want_c, "{what}: model_data.c differs");
}

#[test]
fn gen_data_writes_the_exporters_c_array_byte_for_byte() {
    let inputs: Vec<Vec<u8>> = export_net::photo_inputs(28)
        .into_iter()
        .take(3)
        .map(|(_, b)| b)
        .collect();
    let model = tflite::write(&export_net::mobilenet_like(28, 4, 3, &inputs), "fw").unwrap();
    assert_same(&model, "exported model");
    // Short rows at every position: lengths 8 (the shortest the generator accepts: the TFL3
    // identifier sits at bytes 4..8), 11, 12, 13, 23, 24, 25; every byte value 0..=255 too.
    for len in [8usize, 11, 12, 13, 23, 24, 25, 256] {
        let mut bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
        bytes[4..8].copy_from_slice(b"TFL3");
        assert_same(&bytes, &format!("{len} bytes"));
    }
}

#[test]
fn gen_data_refuses_a_file_that_is_not_a_tflite_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, b"\x08\x07\x12\x04onnx-bytes").unwrap();
    let python = std::env::var("KDEDGE_PYTHON").expect("KDEDGE_PYTHON must name a Python 3");
    let run = Command::new(python)
        .arg(export_net::repo().join("firmware/tools/gen_data.py"))
        .args(["model".as_ref(), path.as_os_str(), dir.path().as_os_str()])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("model.onnx is not a TFLite flatbuffer"),
        "{err}"
    );
    assert!(!dir.path().join(export::C_FILE).exists());
}
