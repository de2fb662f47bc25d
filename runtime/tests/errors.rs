//! Errors name what is at fault: operator index, opcode name and version; tensor index and name;
//! byte offset and structure; arena sizes (see arena.rs).

use kdruntime::{Error, Interpreter, Model};

fn read(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{dir}/{name}.tflite",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn unsupported_operator_names_index_opcode_and_version() {
    let bytes = read("core_invalid", "unsupported_tanh");
    let model = Model::from_bytes(&bytes).unwrap(); // structurally valid
    let e = model.arena_size().unwrap_err();
    assert_eq!(
        e,
        Error::UnsupportedOperator {
            op_index: 1,
            opcode: 28,
            name: "UNKNOWN",
            version: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "operator 1: unsupported opcode UNKNOWN (28) version 2"
    );
    let mut arena = vec![0u8; 4096];
    assert_eq!(Interpreter::new(&model, &mut arena).err(), Some(e));
}

#[test]
fn invalid_operator_states_the_reason() {
    let bytes = read("core_invalid", "conv_bias_length");
    let model = Model::from_bytes(&bytes).unwrap();
    let e = model.arena_size().unwrap_err();
    assert_eq!(
        e.to_string(),
        "operator 0 (CONV_2D, opcode 3, version 1): bias length differs from the output channel count"
    );
}

#[test]
fn bad_tensor_names_index_and_name() {
    let bytes = read("core_invalid", "weights_size");
    let e = Model::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "tensor 1 (\"weights\"): constant data size does not match shape and type"
    );
}

#[test]
fn malformed_flatbuffers_report_offset_and_structure() {
    let mut bytes = read("core", "fc_pt_bias");
    let len = bytes.len() as u32;
    bytes[0..4].copy_from_slice(&(len + 100).to_le_bytes());
    assert_eq!(
        Model::from_bytes(&bytes).unwrap_err(),
        Error::Malformed {
            offset: 0,
            what: "Model table"
        }
    );
    assert_eq!(
        Model::from_bytes(&bytes[..6]).unwrap_err(),
        Error::Malformed {
            offset: 0,
            what: "file shorter than a flatbuffer header"
        }
    );
    let mut bytes = read("core", "fc_pt_bias");
    bytes[4] = b'X';
    assert_eq!(
        Model::from_bytes(&bytes).unwrap_err().to_string(),
        "unsupported model: missing TFL3 file identifier"
    );
}

#[test]
fn io_indices_are_checked() {
    let bytes = read("core", "fc_pt_bias");
    let model = Model::from_bytes(&bytes).unwrap();
    let mut arena = vec![0u8; model.arena_size().unwrap()];
    let mut interp = Interpreter::new(&model, &mut arena).unwrap();
    assert_eq!(
        interp.input_mut(1).unwrap_err(),
        Error::IndexOutOfRange {
            what: "graph input",
            index: 1,
            len: 1
        }
    );
    assert!(interp.output(3).is_err());
    let info = interp.input_info(0).unwrap();
    assert_eq!(info.shape.dims(), &[1, 64]);
    assert_eq!(info.dtype, kdruntime::DType::Int8);
    assert_eq!(info.name_str(), Some("input"));
    assert!(info.scale() > 0.0);
}

#[test]
fn tensors_read_before_written_are_rejected() {
    // Operator 0 reads "y", which only operator 1 writes.
    let bytes = read("core_invalid", "read_before_write");
    let model = Model::from_bytes(&bytes).unwrap();
    assert_eq!(
        model.arena_size().unwrap_err().to_string(),
        "tensor 1 (\"y\"): read by an operator before any operator writes it"
    );
}
