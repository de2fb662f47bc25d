//! The distillation objective inside the training engine (`stages::train_network_with`), on
//! real Fashion-MNIST images with random-weight teachers: the per-step statistics of
//! `train_steps.jsonl` show each technique acting (schedules, the hard phase, masks,
//! confidence weighting, gate, feature matching, EMA self-distillation, cache vs live).

mod distill_common;

use std::path::{Path, PathBuf};

use distill_common::{fashion, repo, teacher_dir};
use kdtrainer::config::{ConfidenceName, Config, FeaturePair, Role, TeacherConfig};
use kdtrainer::distill::cache::{self, Shard};
use kdtrainer::distill::teachers::{Average, TeacherSet};
use kdtrainer::stages::{train_network_with, DistilSource, StageOptions};
use serde_json::Value;
use tch::Device;

/// The shipped configuration cut to a few seconds: batches of 20, 1 head + 1 fine-tuning
/// epoch, every layer trains, no augmentation (so a live teacher sees what the cache saw).
fn config(student_size: u32) -> Config {
    let mut c = Config::load(&repo().join("configs/default.yaml")).unwrap();
    c.batch_size = 20;
    c.epochs_head = 1;
    c.epochs_finetune = 1;
    c.student.unfreeze = 1.0;
    c.student.input_size = student_size;
    c.training.warmup_epochs = 0.0;
    c.training.early_stopping_patience = 0;
    c.augmentation.hflip = false;
    c.augmentation.rotation_turns = 0.0;
    c.augmentation.zoom = 0.0;
    c.augmentation.brightness = 0.0;
    c.augmentation.contrast = 0.0;
    c.augmentation.saturation = 0.0;
    c
}

fn options(data: &Path, out: PathBuf, config: Config) -> StageOptions {
    StageOptions {
        data_dir: data.to_path_buf(),
        out_dir: out,
        config,
        arch: None,
        device: Device::Cpu,
        resume: false,
        limit_train: None,
        workers: 1,
        quiet: true,
    }
}

/// Every line of `train_steps.jsonl`.
fn steps(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("train_steps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("step has no {k}: {v}"))
}

/// Names in the newest optimiser checkpoint of a training folder.
fn objective_state(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".optim.safetensors"))
        .collect();
    files.sort();
    let last = files.last().expect("an optimiser checkpoint");
    tch::Tensor::read_safetensors(last)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn cached_and_live_teachers_give_the_same_targets_and_every_step_logs_its_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ds) = fashion(tmp.path(), 100);
    let t = teacher_dir(tmp.path(), "resnet_tiny_cifar", 28, &ds.classes, 5);
    let teachers = vec![TeacherConfig::new(&t)];
    let cfg = config(32);
    let set = TeacherSet::load(&teachers, Average::Logits, &ds, 28, Device::Cpu).unwrap();
    let kdl = tmp.path().join("t.kdl");
    cache::compute(&set, &ds, Shard::ALL, 20, 1, &kdl).unwrap();

    let live = tmp.path().join("live");
    let cached = tmp.path().join("cached");
    for (dir, cache) in [(&live, None), (&cached, Some(kdl.clone()))] {
        let src = DistilSource::Teachers {
            teachers: teachers.clone(),
            cache,
        };
        let rep = train_network_with(
            Role::Student,
            &options(&data, dir.clone(), cfg.clone()),
            Some(&src),
        )
        .unwrap();
        assert_eq!(rep.train.history.len(), 2);
        assert!(rep.train.history[0].train_stats.contains_key("kd"));
    }
    let (a, b) = (steps(&live), steps(&cached));
    assert_eq!(a.len(), 10, "100 images in batches of 20, 2 epochs");
    for s in a.iter().chain(&b) {
        for k in [
            "total",
            "ce",
            "kd",
            "kd_weight",
            "coverage",
            "mean_conf",
            "min_conf",
            "max_conf",
        ] {
            assert!(f(s, k).is_finite(), "{k}: {s}");
        }
        assert_eq!(f(s, "kd_weight"), cfg.distillation.kd_alpha);
        assert_eq!(f(s, "coverage"), 1.0);
        assert!(f(s, "min_conf") <= f(s, "mean_conf") && f(s, "mean_conf") <= f(s, "max_conf"));
        // total = (1 - a) CE + a KD.
        let want = (1.0 - f(s, "kd_weight")) * f(s, "ce") + f(s, "kd_weight") * f(s, "kd");
        assert!(
            (f(s, "total") - want).abs() < 1e-4 * want.abs().max(1.0),
            "{s}"
        );
    }
    // The first step's teacher (same weights, same un-augmented images, same batch) is the
    // same through the f16 cache as run live: the confidence statistics agree to f16 rounding.
    for k in ["mean_conf", "min_conf", "max_conf"] {
        let (x, y) = (f(&a[0], k), f(&b[0], k));
        assert!((x - y).abs() < 2e-3, "{k}: live {x} vs cached {y}");
    }

    // The same cache used without its teachers (as after `kdtrain logits import-npz`) gives
    // the same targets.
    let alone = tmp.path().join("alone");
    let src = DistilSource::Teachers {
        teachers: Vec::new(),
        cache: Some(kdl.clone()),
    };
    train_network_with(
        Role::Student,
        &options(&data, alone.clone(), cfg.clone()),
        Some(&src),
    )
    .unwrap();
    let c = steps(&alone);
    // (The student's side, CE and KD, is not compared: tests running in parallel draw from
    // libtorch's one global generator, so the student's initial weights differ between runs.)
    for k in ["mean_conf", "min_conf", "max_conf"] {
        assert_eq!(f(&c[0], k), f(&b[0], k), "{k}");
    }

    // A cache of other teachers is refused before training.
    let other = teacher_dir(tmp.path(), "resnet_tiny_cifar", 28, &ds.classes, 6);
    let src = DistilSource::Teachers {
        teachers: vec![TeacherConfig::new(&other)],
        cache: Some(kdl.clone()),
    };
    let e = train_network_with(
        Role::Student,
        &options(&data, tmp.path().join("stale"), cfg),
        Some(&src),
    )
    .expect_err("a stale cache must be refused");
    let msg = format!("{e:#}");
    assert!(msg.contains("t.kdl") && msg.contains("teacher"), "{msg}");
}

#[test]
fn warmup_ramp_and_the_hard_phase_follow_the_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ds) = fashion(tmp.path(), 100);
    let t = teacher_dir(tmp.path(), "resnet_tiny_cifar", 28, &ds.classes, 5);
    let mut cfg = config(32);
    cfg.epochs_finetune = 2;
    cfg.distillation.warmup_epochs = 1.0;
    cfg.distillation.ramp_epochs = 1.0;
    cfg.distillation.hard_epochs = 1;
    let src = DistilSource::Teachers {
        teachers: vec![TeacherConfig::new(&t)],
        cache: None,
    };
    let dir = tmp.path().join("s");
    let rep = train_network_with(
        Role::Student,
        &options(&data, dir.clone(), cfg.clone()),
        Some(&src),
    )
    .unwrap();
    let phases: Vec<&str> = rep.train.history.iter().map(|r| r.phase.as_str()).collect();
    assert_eq!(phases, ["head", "finetune", "finetune", "hard"]);
    let s = steps(&dir);
    assert_eq!(s.len(), 20);
    let alpha = cfg.distillation.kd_alpha;
    for (i, st) in s.iter().enumerate() {
        let (epoch, step) = (i / 5, (i % 5) as f64);
        let w = f(st, "kd_weight");
        let want = match epoch {
            0 => 0.0,                // warm-up: CE only
            1 => alpha * step / 5.0, // linear ramp over epoch 1
            2 => alpha,              // full weight
            _ => 0.0,                // the hard-label phase
        };
        assert!(
            (w - want).abs() < 1e-9,
            "step {i}: kd_weight {w}, want {want}"
        );
        if epoch == 3 {
            assert!(
                st.get("kd").is_none(),
                "no teacher runs in the hard phase: {st}"
            );
            assert_eq!(f(st, "total"), f(st, "ce"));
        }
    }
    // The scratch student of the same configuration gets the same four phases.
    let rep = kdtrainer::stages::train_network(
        Role::Student,
        &options(&data, tmp.path().join("scratch"), cfg),
    )
    .unwrap();
    let scratch: Vec<&str> = rep.train.history.iter().map(|r| r.phase.as_str()).collect();
    assert_eq!(scratch, phases);
}

#[test]
fn domain_mask_and_confidence_threshold_limit_the_coverage() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ds) = fashion(tmp.path(), 100);
    // Every other training image is `indoor`, the rest `outdoor` (the side file).
    let mut meta = String::from("image,domain,region\n");
    let train = ds.split(kdtrainer::data::Split::Train);
    for (i, e) in train.iter().enumerate() {
        let d = if i % 2 == 0 { "indoor" } else { "outdoor" };
        meta += &format!("{},{d},\n", e.image);
    }
    std::fs::write(data.join("train.meta.csv"), meta).unwrap();
    let t = teacher_dir(tmp.path(), "resnet_tiny_cifar", 28, &ds.classes, 5);
    let src = DistilSource::Teachers {
        teachers: vec![TeacherConfig::new(&t)],
        cache: None,
    };
    let mut cfg = config(32);
    cfg.distillation.domains = vec!["indoor".into()];
    let dir = tmp.path().join("domain");
    train_network_with(
        Role::Student,
        &options(&data, dir.clone(), cfg.clone()),
        Some(&src),
    )
    .unwrap();
    let total: f64 = steps(&dir).iter().map(|s| f(s, "coverage")).sum::<f64>() / 10.0;
    assert!(
        (total - 0.5).abs() < 1e-9,
        "mean coverage {total}, half the images are indoor"
    );

    // threshold confidence: coverage is the fraction of samples whose teacher confidence reaches
    // the threshold; between the min and max confidence it is strictly between 0 and 1.
    cfg.distillation.domains.clear();
    cfg.distillation.confidence = ConfidenceName::Threshold;
    cfg.distillation.confidence_threshold = 0.2;
    let dir = tmp.path().join("threshold");
    train_network_with(Role::Student, &options(&data, dir.clone(), cfg), Some(&src)).unwrap();
    for s in steps(&dir) {
        let c = f(&s, "coverage");
        if f(&s, "max_conf") < 0.2 {
            assert_eq!(c, 0.0, "{s}");
        } else if f(&s, "min_conf") >= 0.2 {
            assert_eq!(c, 1.0, "{s}");
        } else {
            assert!(c > 0.0 && c < 1.0, "{s}");
        }
    }
}

#[test]
fn gate_features_and_ema_self_distillation_train() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ds) = fashion(tmp.path(), 60);
    let a = teacher_dir(tmp.path(), "resnet_tiny_cifar", 28, &ds.classes, 5);
    let b = teacher_dir(tmp.path(), "resnet_tiny_cifar", 28, &ds.classes, 6);
    let mut cfg = config(28);
    cfg.epochs_head = 0;
    cfg.epochs_finetune = 2;
    cfg.distillation.gate = true;
    cfg.distillation.features = vec![FeaturePair {
        student: "pooled".into(),
        teacher: "pooled".into(),
    }];
    let src = DistilSource::Teachers {
        teachers: vec![TeacherConfig::new(&a), TeacherConfig::new(&b)],
        cache: None,
    };
    let dir = tmp.path().join("gate");
    train_network_with(
        Role::Student,
        &options(&data, dir.clone(), cfg.clone()),
        Some(&src),
    )
    .unwrap();
    let s = steps(&dir);
    for st in &s {
        assert!(
            f(st, "gate").is_finite() && f(st, "feature").is_finite(),
            "{st}"
        );
        let want = (1.0 - f(st, "kd_weight")) * f(st, "ce")
            + f(st, "kd_weight") * f(st, "kd")
            + cfg.distillation.feature_weight * f(st, "feature")
            + f(st, "gate");
        assert!((f(st, "total") - want).abs() < 1e-4, "{st}");
    }
    // The adapter (student pooled -> teacher pooled channels) learns: the feature term falls.
    assert!(
        f(s.last().unwrap(), "feature") < f(&s[0], "feature"),
        "feature term {} -> {}",
        f(&s[0], "feature"),
        f(s.last().unwrap(), "feature")
    );
    // The objective's adapter and gate are checkpointed with the model.
    let names = objective_state(&dir);
    assert!(
        names.iter().any(|n| n.starts_with("objective:own.gate.")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("objective:own.features.pair0.")),
        "{names:?}"
    );

    // Self-distillation: no teacher at all, the EMA of the student teaches.
    let mut cfg = config(32);
    cfg.distillation.self_distillation = true;
    cfg.distillation.ema_decay = 0.9;
    let dir = tmp.path().join("ema");
    let rep = train_network_with(
        Role::Student,
        &options(&data, dir.clone(), cfg),
        Some(&DistilSource::SelfEma),
    )
    .unwrap();
    assert_eq!(rep.train.history.len(), 2);
    let s = steps(&dir);
    // The EMA (evaluation mode, averaged weights) is a different network from the training
    // student (dropout, batch statistics): the KD term is positive and finite throughout.
    assert!(s
        .iter()
        .all(|st| f(st, "kd") > 0.0 && f(st, "kd").is_finite()));
    let names = objective_state(&dir);
    assert!(
        names.iter().any(|n| n.starts_with("objective:ema.")),
        "{names:?}"
    );
}
