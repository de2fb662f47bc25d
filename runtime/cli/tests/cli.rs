//! kdrun as a user runs it: the real binary on a committed model (the all-ops network, whose
//! outputs the runtime's parity tests compare with TFLite's reference kernels).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kdruntime::{Interpreter, Model};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nets/all_ops.tflite")
}

fn kdrun(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kdrun"))
        .args(args)
        .output()
        .expect("kdrun runs")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// The outputs of one run through the library, for comparison with the CLI.
fn run_api(model: &[u8], input: &[u8]) -> Vec<u8> {
    let m = Model::from_bytes(model).unwrap();
    let mut arena = vec![0u8; m.arena_size().unwrap()];
    let mut it = Interpreter::new(&m, &mut arena).unwrap();
    it.input_mut(0).unwrap().copy_from_slice(input);
    it.invoke().unwrap();
    it.output(0).unwrap().to_vec()
}

#[test]
fn info_reports_the_planned_arena_and_every_operator() {
    let bytes = std::fs::read(fixture()).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let out = kdrun(&[Path::new("info").as_os_str(), fixture().as_os_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!("arena size: {} bytes", m.arena_size().unwrap())),
        "{s}"
    );
    assert!(
        s.contains(&format!("operators: {}", m.num_operators())),
        "{s}"
    );
    for op in m.operators() {
        let op = op.unwrap();
        assert!(
            s.contains(&format!("#{:<3} {}", op.index, op.name())),
            "op {} missing:\n{s}",
            op.index
        );
    }
}

#[test]
fn raw_runs_concatenated_inputs_one_after_another() {
    let bytes = std::fs::read(fixture()).unwrap();
    let in_len = 16 * 16 * 3;
    // Three different inputs back to back.
    let input: Vec<u8> = (0..3 * in_len)
        .map(|i| ((i * 37 + i / 7) % 256) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (inp, outp) = (dir.path().join("in.u8"), dir.path().join("out.bin"));
    std::fs::write(&inp, &input).unwrap();
    let out = kdrun(&[
        "raw".as_ref(),
        fixture().as_os_str(),
        inp.as_os_str(),
        outp.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = std::fs::read(&outp).unwrap();
    let want: Vec<u8> = input
        .chunks(in_len)
        .flat_map(|c| run_api(&bytes, c))
        .collect();
    assert_eq!(got.len(), 3 * 40, "three runs of 10 float32 outputs");
    assert_eq!(got, want);
}

#[test]
fn bad_inputs_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.tflite");
    let out = kdrun(&["info".as_ref(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.tflite"),
        "{}",
        text(&out.stderr)
    );

    let bytes = std::fs::read(fixture()).unwrap();
    let truncated = dir.path().join("truncated.tflite");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = kdrun(&["info".as_ref(), truncated.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("truncated.tflite") && e.contains("not a model kdruntime can run"),
        "{e}"
    );

    let short = dir.path().join("short.u8");
    std::fs::write(&short, [0u8; 100]).unwrap();
    let out = kdrun(&[
        "raw".as_ref(),
        fixture().as_os_str(),
        short.as_os_str(),
        dir.path().join("o").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("100 bytes") && e.contains("768"), "{e}");
}

#[test]
fn every_kernel_choice_and_thread_count_gives_the_same_bytes() {
    let bytes = std::fs::read(fixture()).unwrap();
    let input: Vec<u8> = (0..16 * 16 * 3).map(|i| (i * 91 % 256) as u8).collect();
    let want = run_api(&bytes, &input);
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in.u8");
    let model = fixture();
    std::fs::write(&inp, &input).unwrap();
    for extra in [
        &["--kernels", "reference"][..],
        &["--kernels", "avx2", "--threads", "3"],
        &["--kernels", "fastest", "--threads", "2"],
    ] {
        let outp = dir.path().join("out.bin");
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "raw".as_ref(),
            model.as_os_str(),
            inp.as_os_str(),
            outp.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let out = kdrun(&args);
        assert!(out.status.success(), "{extra:?}: {}", text(&out.stderr));
        assert_eq!(std::fs::read(&outp).unwrap(), want, "{extra:?}");
    }
    let out = kdrun(&[
        "raw".as_ref(),
        model.as_os_str(),
        inp.as_os_str(),
        dir.path().join("x").as_os_str(),
        "--threads".as_ref(),
        "0".as_ref(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--threads"),
        "{}",
        text(&out.stderr)
    );
}
