//! The teacher-logit cache through `kdtrain logits`: compute (whole and sharded, shards from
//! flags, Slurm and Kubernetes variables), merge with gap/overlap detection, stale-cache
//! refusal, and `.npz` import/export checked with real NumPy.

mod distill_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distill_common::*;
use kdtrainer::config::TeacherConfig;
use kdtrainer::data::Split;
use kdtrainer::distill::cache::{self, data_hash, LogitCache, Shard, ShardSource};
use kdtrainer::distill::teachers::{Average, TeacherSet};
use kdtrainer::pipeline::{Loader, LoaderOptions, Normalization};
use tch::{Device, Kind, Tensor};

const KDTRAIN: &str = env!("CARGO_BIN_EXE_kdtrain");

fn kdtrain(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(KDTRAIN);
    c.args(args).current_dir(repo());
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
        "KDEDGE_SHARD_COUNT",
    ] {
        c.env_remove(k);
    }
    c.envs(env.iter().copied());
    c.output().unwrap()
}

fn ok(o: Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "failed:\n{out}\n{err}");
    out.into_owned()
}

fn fails(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn python() -> PathBuf {
    std::env::var_os("KDEDGE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

fn py(script: &str) -> String {
    let o = Command::new(python())
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The f16 rounding of `x` is within this of `x` (|x| < 64: ulp <= 2^-5, half of it 2^-6).
fn f16_close(a: &Tensor, b: &Tensor) {
    let d = max_diff(a, b);
    let scale = b.abs().max().double_value(&[]).max(1.0);
    assert!(
        d <= scale * 2f64.powi(-11) + 1e-4,
        "max |diff| {d} (scale {scale})"
    );
}

#[test]
fn shard_resolution_from_flags_slurm_and_kubernetes() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let none = env(&[]);
    assert_eq!(
        Shard::resolve(None, None, &none).unwrap(),
        (Shard::ALL, ShardSource::Default)
    );
    assert_eq!(
        Shard::resolve(Some("2/5"), None, &none).unwrap(),
        (Shard::new(2, 5).unwrap(), ShardSource::Flag)
    );
    // Slurm: `--array=1-4` gives ids 1..4 with SLURM_ARRAY_TASK_MIN=1.
    let slurm = env(&[
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
    ]);
    assert_eq!(
        Shard::resolve(None, None, &slurm).unwrap(),
        (Shard::new(2, 4).unwrap(), ShardSource::Slurm)
    );
    // The flag wins over the environment.
    assert_eq!(
        Shard::resolve(Some("0/2"), None, &slurm).unwrap().1,
        ShardSource::Flag
    );
    let k8s = env(&[("JOB_COMPLETION_INDEX", "1"), ("KDEDGE_SHARD_COUNT", "3")]);
    assert_eq!(
        Shard::resolve(None, None, &k8s).unwrap(),
        (Shard::new(1, 3).unwrap(), ShardSource::Kubernetes)
    );
    let k8s_bare = env(&[("JOB_COMPLETION_INDEX", "1")]);
    assert_eq!(
        Shard::resolve(None, Some(2), &k8s_bare).unwrap().0,
        Shard::new(1, 2).unwrap()
    );
    let e = Shard::resolve(None, None, &k8s_bare)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--shard-count N or set KDEDGE_SHARD_COUNT"),
        "{e}"
    );
    for (bad, msg) in [
        ("3/3", "need 0 <= index < count"),
        ("1-2", "INDEX/COUNT"),
        ("a/2", "not a number"),
    ] {
        let e = format!("{:#}", Shard::resolve(Some(bad), None, &none).unwrap_err());
        assert!(e.contains(msg), "{bad}: {e}");
    }
    let e = format!(
        "{:#}",
        Shard::resolve(None, None, &env(&[("SLURM_ARRAY_TASK_ID", "0")])).unwrap_err()
    );
    assert!(e.contains("SLURM_ARRAY_TASK_COUNT is not"), "{e}");
    assert_eq!(Shard::new(1, 3).unwrap().ids(8), [1, 4, 7]);
    assert_eq!(
        cache::shard_path(Path::new("x/l.kdl"), Shard::new(1, 3).unwrap()),
        Path::new("x/l.kdl.1-of-3")
    );
}

#[test]
fn compute_shard_merge_verify_and_npz_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (root, ds) = fashion(t, 60);
    let a = teacher_dir(t, "resnet_tiny_cifar", 28, &ds.classes, 21);
    let (script, _svs, snet) = script_teacher(t, 28, ds.classes.len(), 22);
    let cfg = repo().join("configs/default.yaml");
    let out = t.join("logits.kdl");
    let ta = format!("{}=2", a.display());
    let compute = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "logits",
            "compute",
            "--config",
            s(&cfg),
            "--data-dir",
            s(&root),
            "--teacher",
            &ta,
            "--teacher",
            s(&script),
            "--out",
            s(&out),
            "--batch-size",
            "16",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        kdtrain(&args, env)
    };
    let whole = ok(compute(&[], &[]));
    assert!(
        whole.contains("60 of 60 samples, 2 teacher(s), 10 classes, shard 0/1"),
        "{whole}"
    );

    let c = LogitCache::open(&out).unwrap();
    let h = c.header().clone();
    assert_eq!(
        (h.classes, h.teachers, h.list_len, h.samples),
        (10, 2, 60, 60)
    );
    assert_eq!(h.weights, [2.0, 1.0]);
    assert_eq!(h.average, Average::Logits);
    assert_eq!(h.data_hash, data_hash(&root).unwrap());
    c.check_complete().unwrap();
    let info = ok(kdtrain(&["logits", "info", s(&out)], &[]));
    assert!(
        info.contains("samples: 60 of a training list of 60"),
        "{info}"
    );
    assert!(info.contains(&cache::hex(&h.teacher_hash)), "{info}");

    // The teacher set of the CLI: folder at weight 2, script at the config's 28 px.
    let mut tc = TeacherConfig::new(&a);
    tc.weight = 2.0;
    let list = vec![tc, TeacherConfig::new(&script)];
    let set = TeacherSet::load(&list, Average::Logits, &ds, 28, Device::Cpu).unwrap();
    c.verify(&data_hash(&root).unwrap(), Some(&set.hash()))
        .unwrap();

    // Values: each teacher run on its own evaluation input, rounded to f16.
    let positions = [0usize, 7, 31, 59];
    let got = c.logits_for(&positions).unwrap();
    let (_va, na) = load_dir(&a);
    let eval = |size: usize, norm| {
        Loader::new(&ds, Split::Train, LoaderOptions::new(size, 8, norm))
            .unwrap()
            .batch(&positions, 0)
            .unwrap()
            .images
    };
    let wa = tch::no_grad(|| na.forward_t(&eval(28, Normalization::IMAGENET), false));
    let ws = tch::no_grad(|| snet.forward_t(&eval(28, Normalization::IMAGENET), false));
    f16_close(&got.select(1, 0), &wa);
    f16_close(&got.select(1, 1), &ws);
    let e = c.logits_for(&[60]).unwrap_err().to_string();
    assert!(e.contains("training sample 60 is not in the cache"), "{e}");

    // Shards: by flag, by Slurm array variables, by Kubernetes index + count.
    let o0 = ok(compute(&["--shard", "0/3"], &[]));
    assert!(o0.contains("logits.kdl.0-of-3: 20 of 60 samples"), "{o0}");
    ok(compute(
        &[],
        &[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ],
    ));
    ok(compute(
        &[],
        &[("JOB_COMPLETION_INDEX", "2"), ("KDEDGE_SHARD_COUNT", "3")],
    ));
    let shard = |i: u32| t.join(format!("logits.kdl.{i}-of-3"));
    let s1 = LogitCache::open(&shard(1)).unwrap();
    assert_eq!(s1.ids(), (1..60).step_by(3).collect::<Vec<u32>>());
    assert_eq!(s1.header().shard, Shard::new(1, 3).unwrap());
    let e = fails(compute(&[], &[("JOB_COMPLETION_INDEX", "2")]));
    assert!(e.contains("KDEDGE_SHARD_COUNT"), "{e}");

    let merged = t.join("merged.kdl");
    let m = ok(kdtrain(
        &[
            "logits",
            "merge",
            s(&merged),
            s(&shard(2)),
            s(&shard(0)),
            s(&shard(1)),
        ],
        &[],
    ));
    assert!(m.contains("60 samples from 3 file(s)"), "{m}");
    let mc = LogitCache::open(&merged).unwrap();
    assert_eq!(mc.header().shard, Shard::ALL);
    assert_eq!(mc.header().teacher_hash, h.teacher_hash);
    let all: Vec<usize> = (0..60).collect();
    f16_close(&mc.logits_for(&all).unwrap(), &c.logits_for(&all).unwrap());

    // Gaps and overlaps are named.
    let e = fails(kdtrain(
        &[
            "logits",
            "merge",
            s(&t.join("m2")),
            s(&shard(0)),
            s(&shard(2)),
        ],
        &[],
    ));
    assert!(e.contains("20 of 60 sample id(s) missing"), "{e}");
    assert!(
        e.contains("first: [1, 4, 7, 10, 13, 16, 19, 22, 25, 28]"),
        "{e}"
    );
    let e = fails(kdtrain(
        &[
            "logits",
            "merge",
            s(&t.join("m3")),
            s(&shard(0)),
            s(&shard(1)),
            s(&shard(2)),
            s(&out),
        ],
        &[],
    ));
    assert!(
        e.contains("60 sample id(s) appear in more than one file"),
        "{e}"
    );
    assert!(
        e.contains("0 (in ") && e.contains("logits.kdl.0-of-3 and"),
        "{e}"
    );
    assert!(!t.join("m2").exists() && !t.join("m3").exists());

    // Stale caches are refused, naming the hash that differs.
    let other = t.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let train = std::fs::read_to_string(root.join("train.txt")).unwrap();
    let fewer: String = train.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(other.join("train.txt"), fewer).unwrap();
    let e = c
        .verify(&data_hash(&other).unwrap(), Some(&set.hash()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the training list hash differs") && e.contains("kdtrain logits compute"),
        "{e}"
    );
    let retrained = teacher_dir(t, "resnet_tiny_cifar", 28, &ds.classes, 23);
    std::fs::copy(
        retrained.join("checkpoints/best.safetensors"),
        a.join("checkpoints/best.safetensors"),
    )
    .unwrap();
    let set2 = TeacherSet::load(&list, Average::Logits, &ds, 28, Device::Cpu).unwrap();
    let e = c
        .verify(&data_hash(&root).unwrap(), Some(&set2.hash()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("the teacher set hash differs"), "{e}");
    // Shards of different teachers do not merge.
    let ta2 = format!("{}=2", a.display());
    let mut args = vec![
        "logits",
        "compute",
        "--config",
        s(&cfg),
        "--data-dir",
        s(&root),
        "--teacher",
        &ta2,
        "--teacher",
        s(&script),
        "--out",
        s(&out),
        "--shard",
        "1/3",
        "--device",
        "cpu",
        "--quiet",
    ];
    ok(kdtrain(&args, &[]));
    let e = fails(kdtrain(
        &[
            "logits",
            "merge",
            s(&t.join("m4")),
            s(&shard(0)),
            s(&shard(1)),
            s(&shard(2)),
        ],
        &[],
    ));
    assert!(e.contains("differ in their teacher hash"), "{e}");
    args.clear();

    // Export: per teacher [N, K, C] and the recorded ensemble [N, C], read by NumPy.
    let per = t.join("per.npz");
    let ens = t.join("ens.npz");
    let o = ok(kdtrain(
        &[
            "logits",
            "export-npz",
            s(&merged),
            "--out",
            s(&per),
            "--per-teacher",
        ],
        &[],
    ));
    assert!(o.contains("[60, 2, 10]"), "{o}");
    ok(kdtrain(
        &["logits", "export-npz", s(&merged), "--out", s(&ens)],
        &[],
    ));
    let out_py = py(&format!(
        "import numpy as np, json\n\
         a = np.load({per:?}); b = np.load({ens:?})\n\
         print(json.dumps([list(a['logits'].shape), str(a['logits'].dtype), str(a['indices'].dtype),\n\
             a['indices'].tolist(), a['logits'][[0, 59]].astype(float).ravel().tolist(),\n\
             list(b['logits'].shape), b['logits'][[0, 59]].astype(float).ravel().tolist()]))",
        per = s(&per),
        ens = s(&ens)
    ));
    let v: serde_json::Value = serde_json::from_str(out_py.trim()).unwrap();
    assert_eq!(v[0], serde_json::json!([60, 2, 10]));
    assert_eq!(
        (v[1].as_str().unwrap(), v[2].as_str().unwrap()),
        ("float32", "int64")
    );
    assert_eq!(v[3], serde_json::json!((0..60).collect::<Vec<u32>>()));
    let want = mc.logits_for(&[0, 59]).unwrap();
    let got: Vec<f64> = v[4]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(
        got,
        Vec::<f64>::try_from(want.to_kind(Kind::Double).reshape([-1])).unwrap()
    );
    assert_eq!(v[5], serde_json::json!([60, 10]));
    // Ensemble by hand: (2 * teacher 0 + 1 * teacher 1) / 3.
    let hand = (want.select(1, 0) * 2.0 + want.select(1, 1)) / 3.0;
    let got: Vec<f64> = v[6]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let hand = Vec::<f64>::try_from(hand.to_kind(Kind::Double).reshape([-1])).unwrap();
    for (g, w) in got.iter().zip(&hand) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {hand:?}");
    }
}

#[test]
fn npz_written_by_numpy_imports_and_bad_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (root, _ds) = fashion(t, 30);
    let npz = t.join("py.npz");
    // A Python teacher's logits for 5 of the 30 training images, shuffled, float64,
    // compressed; values chosen so f16 keeps them exactly except the last.
    py(&format!(
        "import numpy as np\n\
         idx = np.array([17, 3, 29, 0, 8], dtype=np.int64)\n\
         lg = (np.arange(50, dtype=np.float64).reshape(5, 10) - 20) / 4\n\
         lg[4, 9] = 0.1\n\
         np.savez_compressed({p:?}, logits=lg, indices=idx)\n\
         np.savez({bad_c:?}, logits=np.zeros((5, 9), np.float32), indices=idx)\n\
         np.savez({bad_i:?}, logits=np.zeros((5, 10), np.float32), indices=np.array([1, 2, 30, 4, 5]))\n\
         np.savez({dup:?}, logits=np.zeros((5, 10), np.float32), indices=np.array([1, 2, 2, 4, 5]))\n\
         np.savez({shape:?}, logits=np.zeros((5, 10), np.float32), indices=np.arange(4))\n",
        p = s(&npz),
        bad_c = s(&t.join("c.npz")),
        bad_i = s(&t.join("i.npz")),
        dup = s(&t.join("d.npz")),
        shape = s(&t.join("s.npz")),
    ));
    let out = t.join("imported.kdl");
    let o = ok(kdtrain(
        &[
            "logits",
            "import-npz",
            s(&npz),
            "--data-dir",
            s(&root),
            "--out",
            s(&out),
        ],
        &[],
    ));
    assert!(
        o.contains("5 of 30 samples, 1 teacher(s), 10 classes"),
        "{o}"
    );
    let c = LogitCache::open(&out).unwrap();
    assert_eq!(c.ids(), [0, 3, 8, 17, 29]);
    c.verify(&data_hash(&root).unwrap(), None).unwrap();
    assert_eq!(
        c.header().teacher_hash,
        kdtrainer::distill::npz::npz_teacher_hash(&npz).unwrap()
    );
    // Row of index 17 is Python row 0: (0..10 - 20) / 4.
    let r = Vec::<f32>::try_from(c.logits_for(&[17]).unwrap().reshape([-1])).unwrap();
    let want: Vec<f32> = (0..10).map(|j| (j as f32 - 20.0) / 4.0).collect();
    assert_eq!(r, want);
    let r = Vec::<f32>::try_from(c.logits_for(&[8]).unwrap().reshape([-1])).unwrap();
    // 0.1 in f16 is 0.0999755859375 (1638 / 16384).
    assert_eq!(r[9], 0.099975586);
    assert!(c
        .check_complete()
        .unwrap_err()
        .to_string()
        .contains("25 of 30 samples missing"));

    for (file, msg) in [
        ("c.npz", "`logits` has 9 classes, the data set 10"),
        (
            "i.npz",
            "index 30 (row 2) is not a position of train.txt (30 images)",
        ),
        ("d.npz", "index 2 appears twice (rows 1 and 2)"),
        ("s.npz", "`indices` has shape [4], expected [5]"),
    ] {
        let e = fails(kdtrain(
            &[
                "logits",
                "import-npz",
                s(&t.join(file)),
                "--data-dir",
                s(&root),
                "--out",
                s(&t.join("x")),
            ],
            &[],
        ));
        assert!(e.contains(msg), "{file}: {e}");
    }

    // Damaged cache files are refused with the reason.
    let bytes = std::fs::read(&out).unwrap();
    std::fs::write(t.join("trunc.kdl"), &bytes[..bytes.len() - 2]).unwrap();
    let e = fails(kdtrain(&["logits", "info", s(&t.join("trunc.kdl"))], &[]));
    assert!(e.contains("truncated or not a cache"), "{e}");
    let mut bad = bytes.clone();
    bad[0] = b'X';
    std::fs::write(t.join("magic.kdl"), &bad).unwrap();
    let e = fails(kdtrain(&["logits", "info", s(&t.join("magic.kdl"))], &[]));
    assert!(e.contains("not a kdedge logit cache"), "{e}");
    let mut v2 = bytes;
    v2[8] = 2;
    std::fs::write(t.join("v2.kdl"), &v2).unwrap();
    let e = fails(kdtrain(&["logits", "info", s(&t.join("v2.kdl"))], &[]));
    assert!(e.contains("format version 2"), "{e}");
}
