//! The `kdtrain` training commands end to end, as a user runs them: a real Fashion-MNIST subset
//! imported with `kdtrain data import`, a teacher trained with `kdtrain teacher`, reloaded with
//! `kdtrain eval`, killed with SIGKILL and resumed, a diverging run stopped by the NaN guard,
//! the whole `kdtrain train` pipeline, and the errors of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kdtrainer::data::{Dataset, ModeChoice, Split};
use kdtrainer::models::{build, ModelSpec};
use kdtrainer::pipeline::eval_input;
use tch::{nn, Device, Tensor};

const KDTRAIN: &str = env!("CARGO_BIN_EXE_kdtrain");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// 500 images per split of real Fashion-MNIST, imported once per test binary by the CLI.
fn data() -> &'static Path {
    static ROOT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &ROOT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = ok(kdtrain(&[
                "data",
                "import",
                "fashion-mnist",
                "--raw",
                repo().join("data/raw/fashion-mnist").to_str().unwrap(),
                "--out",
                dir.path().join("fm").to_str().unwrap(),
                "--limit",
                "500",
            ]));
            assert!(
                out.contains("train 500 / val 500 / test 500 images"),
                "{out}"
            );
            let fm = dir.path().join("fm");
            (dir, fm)
        })
        .1
}

/// The shipped configuration with `edits` (`from -> to`, each must match) applied.
fn config(dir: &Path, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(repo().join("configs/default.yaml")).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in default.yaml");
        text = text.replacen(from, to, 1);
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A quick from-scratch teacher: 500 images, batches of 25 (20 steps per epoch), 1 head epoch
/// and 3 epochs training every layer, no warm-up, no geometric augmentation.
const FAST: &[(&str, &str)] = &[
    ("batch_size: 128", "batch_size: 25"),
    ("epochs_head: 3", "epochs_head: 1"),
    ("epochs_finetune: 12", "epochs_finetune: 3"),
    ("lr_head: 0.003", "lr_head: 0.01"),
    ("lr_finetune: 0.001", "lr_finetune: 0.005"),
    ("unfreeze: 0.3", "unfreeze: 1.0"),
    ("warmup_epochs: 1", "warmup_epochs: 0"),
    ("rotation_turns: 0.03", "rotation_turns: 0"),
    ("zoom: 0.1", "zoom: 0"),
];

fn fast_config(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let edits: Vec<(&str, &str)> = FAST.iter().chain(extra).copied().collect();
    config(dir, "fast.yaml", &edits)
}

fn kdtrain(args: &[&str]) -> Output {
    Command::new(KDTRAIN)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "failed:\n{out}\n{err}");
    out.into_owned()
}

/// The stderr of a command that must fail cleanly (exit status 1, no panic).
fn fails(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn teacher_args<'a>(cfg: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "teacher",
        "--data-dir",
        data().to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--quiet",
    ]
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

/// `(epoch, train_loss, val_loss)` of `train_log.jsonl`.
fn history(out: &Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(out.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["epoch"].as_u64().unwrap(),
                v["train_loss"].as_f64().unwrap(),
                v["val_loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Equal up to rounding noise (the same computation; MKL may round differently with the
/// operands' alignment). A lost, repeated or differently seeded step differs by far more.
fn assert_same_history(got: &[(u64, f64, f64)], want: &[(u64, f64, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs();
        assert!(
            g.0 == w.0 && close(g.1, w.1) && close(g.2, w.2),
            "{got:?} vs {want:?}"
        );
    }
}

/// Parses `image,true,predicted` rows (names without commas here).
fn predictions(p: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(p).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("image,true,predicted"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

#[test]
fn teacher_learns_and_eval_reproduces_its_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fast_config(tmp.path(), &[]);
    let out = tmp.path().join("teacher");
    let stdout = ok(kdtrain(&teacher_args(&cfg, &out)));
    assert!(stdout.contains("teacher: resnet_tiny_cifar"), "{stdout}");
    assert!(stdout.contains("4 epochs"), "{stdout}");

    let m = json(&out.join("metrics.json"));
    assert_eq!(m["schema"], "kdedge.eval.metrics/1");
    assert_eq!(m["images"], 500);
    let top1 = m["top1"].as_f64().unwrap();
    // Ten classes: chance is 0.1.
    assert!(top1 > 0.5, "test top-1 {top1}");
    for f in [
        "confusion.svg",
        "loss.svg",
        "metrics.svg",
        "train_log.csv",
        "checkpoints/best.safetensors",
        "checkpoints/model.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let log = history(&out);
    assert_eq!(log.len(), 4);
    assert!(log[3].1 < log[0].1, "train loss did not fall: {log:?}");

    // Independent recomputation: the saved network rebuilt and run here, one image at a time
    // through the evaluation input, its argmax compared with the test list's labels by hand.
    let ds = Dataset::load(data(), ModeChoice::Auto).unwrap();
    let saved = json(&out.join("checkpoints/model.json"));
    assert_eq!(saved["arch"], "resnet_tiny_cifar");
    let spec = ModelSpec::parse("resnet_tiny_cifar", 28, 10, 0.2).unwrap();
    tch::set_num_threads(1);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), &spec).unwrap();
    vs.load(out.join("checkpoints/best.safetensors")).unwrap();
    let mut argmax = Vec::new();
    for e in ds.split(Split::Test) {
        let px = eval_input(&ds.images_dir().join(&e.image), 28).unwrap();
        // HWC bytes -> CHW floats with the ImageNet statistics the teacher uses.
        let (mean, std) = ([123.675f32, 116.28, 103.53], [58.395f32, 57.12, 57.375]);
        let mut chw = vec![0f32; 3 * 28 * 28];
        for (i, p) in px.chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * 784 + i] = (f32::from(p[c]) - mean[c]) / std[c];
            }
        }
        let x = Tensor::from_slice(&chw).view([1, 3, 28, 28]);
        let logits = tch::no_grad(|| net.forward_t(&x, false));
        let a = logits.argmax(-1, false).int64_value(&[0]) as usize;
        argmax.push((e.image.clone(), e.labels[0].clone(), ds.classes[a].clone()));
    }
    let hits = argmax.iter().filter(|(_, t, p)| t == p).count();
    assert_eq!(
        hits as f64 / 500.0,
        top1,
        "metrics.json top-1 vs recomputed"
    );
    assert_eq!(predictions(&out.join("predictions.csv")), argmax);

    // `kdtrain eval` reloads the folder in a new process and gets the same numbers.
    let ev = ok(kdtrain(&[
        "eval",
        "--model-dir",
        out.to_str().unwrap(),
        "--data-dir",
        data().to_str().unwrap(),
        "--split",
        "test",
        "--json",
        "--threads",
        "1",
    ]));
    let e: serde_json::Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(e["top1"], m["top1"]);
    assert_eq!(e["top5"], m["top5"]);
    assert_eq!(e["confusion"], m["confusion"]);
    assert_eq!(predictions(&out.join("eval-test/predictions.csv")), argmax);
    // The validation split is evaluated too; its top-1 is the logged best epoch's.
    let ev = ok(kdtrain(&[
        "eval",
        "--model-dir",
        out.to_str().unwrap(),
        "--data-dir",
        data().to_str().unwrap(),
        "--split",
        "val",
        "--json",
        "--batch-size",
        "25",
        "--threads",
        "1",
    ]));
    let e: serde_json::Value = serde_json::from_str(&ev).unwrap();
    let best = json(&out.join("checkpoints/best.json"));
    assert_eq!(e["top1"], best["value"]);
}

#[test]
fn sigkill_mid_epoch_then_resume_continues_the_loss_history() {
    let tmp = tempfile::tempdir().unwrap();
    // Step checkpoints every 5 of the 20 steps of an epoch.
    let cfg = fast_config(
        tmp.path(),
        &[("checkpoint_every_steps: 0", "checkpoint_every_steps: 5")],
    );

    // The uninterrupted reference.
    let reference = tmp.path().join("reference");
    ok(kdtrain(&teacher_args(&cfg, &reference)));
    let want = history(&reference);
    assert_eq!(want.len(), 4);

    // Killed with SIGKILL as soon as a step checkpoint inside epoch 1 is committed.
    let out = tmp.path().join("killed");
    let mut child = Command::new(KDTRAIN)
        .args(teacher_args(&cfg, &out))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state_path = out.join("checkpoints/state.json");
    let t0 = Instant::now();
    loop {
        if let Ok(t) = std::fs::read_to_string(&state_path) {
            let s: serde_json::Value = serde_json::from_str(&t).unwrap();
            if s["epoch"] == 1 && s["step_in_epoch"].as_u64() > Some(0) {
                break;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    assert!(!child.wait().unwrap().success());
    let s = json(&state_path);
    assert_eq!(s["epoch"], 1, "killed mid-epoch 1: {s}");
    let step = s["step_in_epoch"].as_u64().unwrap();
    assert!([5, 10, 15].contains(&step), "{s}");
    assert_same_history(&history(&out), &want[..1]);

    // Resumed from that step: the same 4 epochs, the loss history the uninterrupted run's.
    let mut args = teacher_args(&cfg, &out);
    args.push("--resume");
    let stdout = ok(kdtrain(&args));
    assert!(stdout.contains("4 epochs, resumed at epoch 1"), "{stdout}");
    assert_same_history(&history(&out), &want);
    let s = json(&state_path);
    assert_eq!(
        (s["finished"].as_bool(), s["epoch"].as_u64()),
        (Some(true), Some(4))
    );
    let (a, b) = (
        json(&out.join("metrics.json")),
        json(&reference.join("metrics.json")),
    );
    assert_eq!(a["images"], b["images"]);
    assert!((a["top1"].as_f64().unwrap() - b["top1"].as_f64().unwrap()).abs() <= 0.004);

    // Without --resume the folder is not overwritten.
    let e = fails(kdtrain(&teacher_args(&cfg, &out)));
    assert!(e.contains("holds a checkpoint; pass --resume"), "{e}");
}

#[test]
fn diverging_run_stops_at_the_nan_naming_epoch_step_and_keeping_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // An absurd learning rate with weight decay: SGD multiplies every kernel by about
    // |1 - lr * wd| = 4 per step, so the logits overflow to infinity within two epochs.
    let cfg = fast_config(
        tmp.path(),
        &[
            ("lr_head: 0.01", "lr_head: 10"),
            ("lr_finetune: 0.005", "lr_finetune: 10"),
            ("optimizer: adamw", "optimizer: sgd"),
            ("weight_decay: 0.01", "weight_decay: 0.5"),
            ("schedule: cosine", "schedule: constant"),
            ("clip_grad_norm: 5.0", "clip_grad_norm: 0"),
        ],
    );
    let out = tmp.path().join("nan");
    let e = fails(kdtrain(&teacher_args(&cfg, &out)));
    assert!(e.contains("the training loss"), "{e}");
    assert!(e.contains("is NaN") || e.contains("is inf"), "{e}");
    // It names the epoch and step ("epoch E step S") and the kept checkpoint.
    let at = e.find("epoch ").unwrap();
    let words: Vec<&str> = e[at..].split_whitespace().collect();
    let epoch: u64 = words[1].parse().unwrap();
    assert_eq!(words[2], "step", "{e}");
    assert!(words[3].trim_end_matches(':').parse::<u64>().is_ok(), "{e}");
    assert!(epoch >= 1, "diverged before any epoch was committed: {e}");
    assert!(
        e.contains(&format!(
            "The last good checkpoint ({epoch} completed epochs)"
        )),
        "{e}"
    );
    let s = json(&out.join("checkpoints/state.json"));
    assert_eq!(s["epoch"].as_u64(), Some(epoch));
    assert_eq!(history(&out).len() as u64, epoch);
    // The kept weights load into the network and are finite.
    let spec = ModelSpec::parse("resnet_tiny_cifar", 28, 10, 0.2).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = build(&vs.root(), &spec).unwrap();
    vs.load(
        out.join("checkpoints")
            .join(s["model_file"].as_str().unwrap()),
    )
    .unwrap();
    for (n, t) in vs.variables() {
        assert!(
            t.isfinite().all().int64_value(&[]) == 1,
            "{n} is not finite"
        );
    }
    // No test evaluation was written for a failed run.
    assert!(!out.join("metrics.json").exists());
}

#[test]
fn train_runs_every_stage_into_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fast_config(
        tmp.path(),
        &[
            ("epochs_finetune: 3", "epochs_finetune: 2"),
            ("input_size: 32", "input_size: 28"),
            ("  epochs: 5\n", "  epochs: 1\n"),
        ],
    );
    let out = tmp.path().join("run");
    let stdout = ok(kdtrain(&[
        "train",
        "--data-dir",
        data().to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--limit-train",
        "250",
        "--threads",
        "1",
        "--quiet",
    ]));
    assert!(
        stdout.contains("data: 1500 images checked, valid"),
        "{stdout}"
    );
    let summary = &stdout[stdout.find("summary (").expect("summary")..];
    // Every stage's files: the logit cache, the comparison, PTQ / QAT / export.
    assert!(out.join("distil/teacher_logits.kdl").is_file(), "{stdout}");
    let cmp = json(&out.join("comparison/comparison.json"));
    let names: Vec<&str> = cmp["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.ends_with(&["ensemble", "distilled", "scratch"]),
        "{names:?}"
    );
    assert!(out.join("comparison/comparison_curves.svg").is_file());
    for f in [
        "model_qat_int8.tflite",
        "model_qat_int8.onnx",
        "model_data.c",
        "model_data.h",
        "labels.txt",
        "metrics.json",
        "threshold_recommendation.json",
        "inference_config.json",
    ] {
        assert!(out.join("quantize/export").join(f).is_file(), "{f}");
    }
    let q = json(&out.join("quantize/quantize.json"));
    assert_eq!(q["shipped"], "qat", "{q}");
    assert_eq!(
        q["qat_int8"]["top1"],
        json(&out.join("quantize/export/metrics.json"))["top1"]
    );
    // The distillation objective logged its per-step statistics.
    let steps = std::fs::read_to_string(out.join("distilled/train_steps.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(steps.lines().next().unwrap()).unwrap();
    for k in ["total", "ce", "kd", "kd_weight", "coverage", "mean_conf"] {
        assert!(
            first.to_string().contains(&format!("\"{k}\"")),
            "{k}: {first}"
        );
    }
    for role in ["teacher", "student", "distilled"] {
        let m = json(&out.join(role).join("metrics.json"));
        let e = json(&out.join("eval").join(role).join("metrics.json"));
        assert_eq!(m["top1"], e["top1"], "{role}");
        assert!(
            summary.contains(&format!(
                "eval {role}: test top1 {:.4}",
                e["top1"].as_f64().unwrap()
            )),
            "{summary}"
        );
        // --limit-train 250 with batches of 25: 10 steps per epoch.
        let log = std::fs::read_to_string(out.join(role).join("train_log.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 3);
        assert!(log.lines().all(|l| l.contains("\"steps\":10")), "{log}");
    }
    assert_eq!(
        json(&out.join("student/checkpoints/model.json"))["arch"],
        "mobilenet_v2_tiny"
    );
    assert_eq!(json(&out.join("data/validate.json"))["valid"], true);

    // A stage reruns alone on its folder: resuming the finished student retrains nothing.
    let stdout = ok(kdtrain(&[
        "student",
        "--data-dir",
        data().to_str().unwrap(),
        "--out-dir",
        out.join("student").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--limit-train",
        "250",
        "--resume",
        "--quiet",
    ]));
    assert!(stdout.contains("3 epochs, resumed at epoch 3"), "{stdout}");
}

#[test]
fn bad_input_is_an_error_naming_the_key_or_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = |cfg: &Path, extra: &[&str]| {
        let mut a = teacher_args(cfg, &out);
        a.extend_from_slice(extra);
        fails(kdtrain(&a))
    };

    let cfg = config(
        tmp.path(),
        "unknown.yaml",
        &[("seed: 42", "seed: 42\nlearning_rate: 3")],
    );
    let e = run(&cfg, &[]);
    assert!(
        e.contains("unknown.yaml") && e.contains("unknown field `learning_rate`"),
        "{e}"
    );

    let cfg = config(
        tmp.path(),
        "arch.yaml",
        &[("arch: resnet_tiny_cifar", "arch: vgg16")],
    );
    let e = run(&cfg, &[]);
    assert!(e.contains("arch.yaml: teacher.arch: "), "{e}");
    assert!(e.contains("unknown network \"vgg16\""), "{e}");

    let cfg = config(
        tmp.path(),
        "range.yaml",
        &[("unfreeze: 0.4", "unfreeze: 0")],
    );
    let e = run(&cfg, &[]);
    assert!(
        e.contains("range.yaml: student.unfreeze: must be in (0, 1], got 0"),
        "{e}"
    );

    let cfg = config(tmp.path(), "ok.yaml", &[]);
    let e = run(&cfg, &["--arch", "resnet_huge"]);
    assert!(
        e.contains("--arch: ") && e.contains("unknown network \"resnet_huge\""),
        "{e}"
    );

    let missing = tmp.path().join("no-such-data");
    let mut a = teacher_args(&cfg, &out);
    a[2] = missing.to_str().unwrap();
    let e = fails(kdtrain(&a));
    assert!(
        e.contains(&format!("--data-dir {}: no such folder", missing.display())),
        "{e}"
    );

    let cfg3 = config(
        tmp.path(),
        "classes.yaml",
        &[("num_classes: 10", "num_classes: 3")],
    );
    let e = run(&cfg3, &[]);
    assert!(
        e.contains("num_classes: must be the data set's 10 classes, got 3"),
        "{e}"
    );

    let e = fails(kdtrain(&[
        "eval",
        "--model-dir",
        tmp.path().join("nothing").to_str().unwrap(),
        "--data-dir",
        data().to_str().unwrap(),
    ]));
    assert!(e.contains("checkpoints/model.json: cannot read"), "{e}");

    // `--device cuda` where libtorch sees no GPU (a GPU machine is covered by device.rs).
    if !tch::Cuda::is_available() {
        let mut a = teacher_args(&cfg, &out);
        assert_eq!(a[7..9], ["--device", "cpu"]);
        a[8] = "cuda";
        let e = fails(kdtrain(&a));
        assert!(
            e.contains("--device cuda: libtorch sees no CUDA device"),
            "{e}"
        );
    }
    // Nothing was trained by any of the failed commands.
    assert!(!out.join("checkpoints/state.json").exists());
}

#[test]
fn a_single_training_image_is_an_error_not_a_batchnorm_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("one");
    std::fs::create_dir_all(ds.join("images")).unwrap();
    for (i, split) in ["train", "val", "test"].iter().enumerate() {
        let img = image::GrayImage::from_fn(28, 28, |x, y| {
            image::Luma([((x * 9 + y * 3 + i as u32 * 50) % 256) as u8])
        });
        img.save(ds.join("images").join(format!("{split}.png")))
            .unwrap();
        std::fs::write(
            ds.join(format!("{split}.txt")),
            format!("{split}.png,cat\n"),
        )
        .unwrap();
    }
    let cfg = fast_config(tmp.path(), &[("num_classes: 10", "num_classes: 1")]);
    let out = tmp.path().join("out");
    let mut a = teacher_args(&cfg, &out);
    a[2] = ds.to_str().unwrap();
    let err = fails(kdtrain(&a));
    assert!(
        err.contains("train.txt") && err.contains("at least 2"),
        "{err}"
    );
}

/// Multi-label end to end on real pixels: the Fashion-MNIST mosaic set (2x2 garments, some
/// tiles empty, some mosaics with none) through `kdtrain teacher`; the metrics are the
/// multi-label ones, and the classes it predicts are right far more often than the label prior
/// (the precision of any predictor that ignores the pixels).
#[test]
fn multi_label_teacher_trains_on_real_mosaics() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("mosaic");
    ok(kdtrain(&[
        "data",
        "import",
        "fashion-mosaic",
        "--raw",
        repo().join("data/raw/fashion-mnist").to_str().unwrap(),
        "--out",
        ds.to_str().unwrap(),
        "--limit",
        "300",
    ]));
    let cfg = fast_config(tmp.path(), &[("input_size: 28", "input_size: 56")]);
    let out = tmp.path().join("out");
    let mut a = teacher_args(&cfg, &out);
    a[2] = ds.to_str().unwrap();
    ok(kdtrain(&a));
    let m = json(&out.join("metrics.json"));
    assert_eq!(m["mode"], "multi-label", "{m}");
    let (p, r, f1) = (
        m["micro"]["precision"].as_f64().unwrap(),
        m["micro"]["recall"].as_f64().unwrap(),
        m["micro"]["f1"].as_f64().unwrap(),
    );
    assert!((f1 - 2.0 * p * r / (p + r)).abs() < 1e-9, "{m}");
    // Independent baseline from the test list: a predictor that ignores the pixels is right on a
    // predicted (image, class) pair with the label prior labels / (images * classes).
    let test = std::fs::read_to_string(ds.join("test.txt")).unwrap();
    let (mut images, mut labels) = (0usize, 0usize);
    for line in test.lines().filter(|l| !l.trim().is_empty()) {
        images += 1;
        labels += line
            .split_once(',')
            .map_or(0, |(_, c)| c.split('|').filter(|s| !s.is_empty()).count());
    }
    let prior = labels as f64 / (images * 10) as f64;
    assert!(
        p > prior + 0.2,
        "micro precision {p} vs label prior {prior}: {m}"
    );
    assert!(r > 0.05, "micro recall {r}: {m}");
    assert!(m["no_label"]["images"].as_u64().unwrap() > 0, "{m}");
}
