//! The YAML configuration: the shipped default parses, errors name the key at fault.

use std::path::PathBuf;

use kdtrainer::config::{
    ConfidenceName, Config, FeaturePair, OptimizerName, Role, ScheduleName, TemperatureScheduleName,
};
use kdtrainer::data::ModeChoice;
use kdtrainer::train::optim::OptimizerSpec;
use kdtrainer::train::schedule::ScheduleKind;
use kdtrainer::train::{TrainSpec, Trainable};

fn default_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/default.yaml")
}

fn default_text() -> String {
    std::fs::read_to_string(default_path()).unwrap()
}

/// The error of parsing `text` (the default with one edit), with its whole context chain.
fn err(text: &str) -> String {
    format!(
        "{:#}",
        Config::from_yaml("cfg.yaml", text).expect_err("should be rejected")
    )
}

#[test]
fn default_yaml_parses_with_the_documented_values() {
    let c = Config::load(&default_path()).unwrap();
    assert_eq!(c.seed, 42);
    assert_eq!(c.num_classes, 10);
    assert_eq!(c.mode, ModeChoice::Auto);
    assert_eq!((c.teacher.input_size, c.student.input_size), (28, 32));
    assert_eq!(
        (c.teacher.arch.as_str(), c.student.arch.as_str()),
        ("resnet_tiny_cifar", "mobilenet_v2_tiny")
    );
    assert_eq!((c.teacher.unfreeze, c.student.unfreeze), (0.3, 0.4));
    let t = &c.training;
    assert_eq!(t.optimizer, OptimizerName::Adamw);
    assert_eq!(t.schedule, ScheduleName::Cosine);
    assert_eq!(
        (t.weight_decay, t.warmup_epochs, t.clip_grad_norm),
        (0.01, 1.0, 5.0)
    );
    assert_eq!(
        (t.early_stopping_patience, t.top_k, t.checkpoint_every_steps),
        (5, 3, 0)
    );
    assert_eq!(c.batch_size, 128);
    assert_eq!((c.epochs_head, c.epochs_finetune), (3, 12));
    assert_eq!((c.lr_head, c.lr_finetune, c.dropout), (0.003, 0.001, 0.2));
    assert_eq!(
        (c.distillation.kd_alpha, c.distillation.temperature),
        (0.7, 4.0)
    );
    assert_eq!((c.qat.epochs, c.qat.lr), (5, 0.00001));
    assert_eq!(
        (
            c.qat.freeze_bn_fraction,
            c.qat.freeze_observers_fraction,
            c.qat.observer_momentum,
            c.qat.calibration_samples
        ),
        (0.5, 0.75, 0.01, 200)
    );
    let a = &c.augmentation;
    assert!(a.hflip);
    assert_eq!((a.rotation_turns, a.zoom), (0.03, 0.1));
    assert_eq!((a.brightness, a.contrast, a.saturation), (0.15, 0.15, 0.15));
    assert_eq!(c.threshold_search.grid.len(), 19);
    assert_eq!(c.threshold_search.grid.first(), Some(&0.05));
    assert_eq!(c.threshold_search.grid.last(), Some(&0.95));
    let ten: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    c.check_num_classes(&ten).unwrap();
    assert_eq!(
        c.check_num_classes(&ten[..3]).unwrap_err().to_string(),
        "num_classes: must be the data set's 3 classes, got 10"
    );
}

#[test]
fn alpha_is_an_alias_of_kd_alpha() {
    let t = default_text().replace("kd_alpha: 0.7", "alpha: 0.25");
    let c = Config::from_yaml("cfg.yaml", &t).unwrap();
    assert_eq!(c.distillation.kd_alpha, 0.25);
    let both = default_text().replace("kd_alpha: 0.7", "kd_alpha: 0.7\n  alpha: 0.25");
    let e = err(&both);
    assert!(e.contains("duplicate field `kd_alpha`"), "{e}");
}

#[test]
fn unknown_keys_are_named() {
    let e = err(&default_text().replace("seed: 42", "seed: 42\nlearning_rate: 3"));
    assert!(e.starts_with("cfg.yaml: "), "{e}");
    assert!(e.contains("unknown field `learning_rate`"), "{e}");
    let e = err(&default_text().replace("  temperature: 4.0", "  temperature: 4.0\n  beta: 1"));
    assert!(e.contains("distillation"), "{e}");
    assert!(e.contains("unknown field `beta`"), "{e}");
    let e = err(&default_text().replace("  hflip: true", "  hflip: true\n  mixup: 0.2"));
    assert!(
        e.contains("augmentation") && e.contains("unknown field `mixup`"),
        "{e}"
    );
}

#[test]
fn missing_and_mistyped_keys_are_named() {
    let e = err(&default_text().replace("batch_size: 128", ""));
    assert!(e.contains("missing field `batch_size`"), "{e}");
    let e = err(&default_text().replace("batch_size: 128", "batch_size: lots"));
    assert!(e.contains("batch_size"), "{e}");
    let e = err(&default_text().replace("mode: auto", "mode: sometimes"));
    assert!(e.contains("mode") && e.contains("sometimes"), "{e}");
    let e = err("");
    assert!(e.starts_with("cfg.yaml: "), "{e}");
}

#[test]
fn out_of_range_values_name_the_key() {
    let cases = [
        (
            "temperature: 4.0",
            "temperature: -1",
            "distillation.temperature: must be in (0, 100], got -1",
        ),
        (
            "kd_alpha: 0.7",
            "kd_alpha: 1.5",
            "distillation.kd_alpha: must be in [0, 1], got 1.5",
        ),
        (
            "num_classes: 10",
            "num_classes: 0",
            "num_classes: must be >= 1, got 0",
        ),
        (
            "  input_size: 32",
            "  input_size: 4",
            "student.input_size: must be in [8, 1024], got 4",
        ),
        (
            "  unfreeze: 0.3",
            "  unfreeze: 1.5",
            "teacher.unfreeze: must be in (0, 1], got 1.5",
        ),
        (
            "weight_decay: 0.01",
            "weight_decay: 1",
            "training.weight_decay: must be in [0, 1), got 1",
        ),
        (
            "warmup_epochs: 1",
            "warmup_epochs: -1",
            "training.warmup_epochs: must be in [0, 100], got -1",
        ),
        (
            "clip_grad_norm: 5.0",
            "clip_grad_norm: -1",
            "training.clip_grad_norm: must be >= 0 (0 = off), got -1",
        ),
        (
            "top_k: 3",
            "top_k: 101",
            "training.top_k: must be in [0, 100], got 101",
        ),
        (
            "dropout: 0.2",
            "dropout: 1.0",
            "dropout: must be in [0, 1), got 1",
        ),
        (
            "lr_head: 0.003",
            "lr_head: 0",
            "lr_head: must be in (0, 10], got 0",
        ),
        (
            "freeze_bn_fraction: 0.5",
            "freeze_bn_fraction: 1.5",
            "qat.freeze_bn_fraction: must be in [0, 1], got 1.5",
        ),
        (
            "freeze_observers_fraction: 0.75",
            "freeze_observers_fraction: -0.1",
            "qat.freeze_observers_fraction: must be in [0, 1], got -0.1",
        ),
        (
            "observer_momentum: 0.01",
            "observer_momentum: 0",
            "qat.observer_momentum: must be in (0, 1], got 0",
        ),
        (
            "calibration_samples: 200",
            "calibration_samples: 0",
            "qat.calibration_samples: must be in [1, 100000], got 0",
        ),
        (
            "  lr: 0.00001",
            "  lr: -0.1",
            "qat.lr: must be in (0, 10], got -0.1",
        ),
        (
            "batch_size: 128",
            "batch_size: 0",
            "batch_size: must be in [1, 65536], got 0",
        ),
        (
            "rotation_turns: 0.03",
            "rotation_turns: 0.7",
            "augmentation.rotation_turns: must be in [0, 0.5], got 0.7",
        ),
        (
            "zoom: 0.1",
            "zoom: 1.0",
            "augmentation.zoom: must be in [0, 0.9], got 1",
        ),
        (
            "saturation: 0.15",
            "saturation: -0.1",
            "augmentation.saturation: must be in [0, 1], got -0.1",
        ),
        (
            "grid: [0.05, 0.1,",
            "grid: [0.05, 1.0,",
            "threshold_search.grid[1]: must be in (0, 1), got 1",
        ),
        (
            "grid: [0.05, 0.1,",
            "grid: [0.1, 0.05,",
            "threshold_search.grid[1]: must be greater than the previous value 0.1, got 0.05",
        ),
    ];
    for (from, to, want) in cases {
        let text = default_text();
        assert!(text.contains(from), "{from}");
        assert_eq!(
            err(&text.replacen(from, to, 1)),
            format!("cfg.yaml: {want}")
        );
    }
    let e = err(&default_text()
        .replace("epochs_head: 3", "epochs_head: 0")
        .replace("epochs_finetune: 12", "epochs_finetune: 0"));
    assert_eq!(
        e,
        "cfg.yaml: epochs_finetune: must be >= 1 when epochs_head is 0, got 0"
    );
}

#[test]
fn network_names_are_checked_and_named_by_key() {
    let e = err(&default_text().replace("arch: resnet_tiny_cifar", "arch: vgg16"));
    assert!(e.starts_with("cfg.yaml: teacher.arch: "), "{e}");
    assert!(e.contains("unknown network \"vgg16\""), "{e}");
    let e = err(&default_text().replace("arch: mobilenet_v2_tiny", "arch: mobilenet_v2:9"));
    assert!(e.starts_with("cfg.yaml: student.arch: "), "{e}");
    assert!(e.contains("width 9 must be in (0, 4]"), "{e}");
    let e = err(&default_text().replace("optimizer: adamw", "optimizer: lion"));
    assert!(e.contains("training") && e.contains("lion"), "{e}");
    let e = err(&default_text().replace("  top_k: 3", "  top_k: 3\n  ema: 0.99"));
    assert!(e.contains("unknown field `ema`"), "{e}");

    let c = Config::load(&default_path()).unwrap();
    let s = c.model_spec(Role::Teacher, None).unwrap();
    assert_eq!(
        (s.to_string(), s.input_size),
        ("resnet_cifar[2,2,2,2]:0.25:0.5".into(), 28)
    );
    let s = c
        .model_spec(Role::Student, Some("efficientnet_lite_tiny"))
        .unwrap();
    assert_eq!(s.input_size, 32);
    let e = format!(
        "{:#}",
        c.model_spec(Role::Teacher, Some("nope")).unwrap_err()
    );
    assert!(e.starts_with("--arch: "), "{e}");
}

#[test]
fn training_keys_reach_the_engine_spec() {
    let c = Config::load(&default_path()).unwrap();
    let classes: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let mode = kdtrainer::data::Mode::MultiClass;
    let t = TrainSpec::teacher(&c, mode, classes.clone());
    assert_eq!(t.phases[0].trainable, Trainable::Head);
    assert_eq!((t.phases[0].epochs, t.phases[0].lr), (3, 0.003));
    assert_eq!(t.phases[1].trainable, Trainable::Top { fraction: 0.3 });
    assert_eq!((t.phases[1].epochs, t.phases[1].lr), (12, 0.001));
    assert_eq!(t.optimizer, OptimizerSpec::adamw());
    assert_eq!(t.schedule.warmup_epochs, 1.0);
    assert!(matches!(t.schedule.kind, ScheduleKind::Cosine { .. }));
    assert_eq!(t.clip_grad_norm, Some(5.0));
    assert_eq!(t.early_stopping.as_ref().map(|e| e.patience), Some(5));
    assert_eq!((t.top_k, t.checkpoint_every_steps, t.seed), (3, None, 42));
    let s = TrainSpec::student(&c, mode, classes.clone());
    assert_eq!(s.phases[1].trainable, Trainable::Top { fraction: 0.4 });

    let text = default_text()
        .replace("optimizer: adamw", "optimizer: sgd")
        .replace("schedule: cosine", "schedule: constant")
        .replace("clip_grad_norm: 5.0", "clip_grad_norm: 0")
        .replace("early_stopping_patience: 5", "early_stopping_patience: 0")
        .replace("checkpoint_every_steps: 0", "checkpoint_every_steps: 50")
        .replace("weight_decay: 0.01", "weight_decay: 0.0005");
    let c = Config::from_yaml("cfg.yaml", &text).unwrap();
    let t = TrainSpec::teacher(&c, mode, classes);
    assert_eq!(
        t.optimizer,
        OptimizerSpec::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0005
        }
    );
    assert_eq!(t.schedule.kind, ScheduleKind::Constant);
    assert_eq!(
        (t.clip_grad_norm, t.checkpoint_every_steps),
        (None, Some(50))
    );
    assert!(t.early_stopping.is_none());
}

#[test]
fn every_schedule_is_selectable_and_its_parameters_are_checked() {
    let classes: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let mode = kdtrainer::data::Mode::MultiClass;
    let with = |schedule: &str, extra: &str| {
        let text =
            default_text().replace("schedule: cosine", &format!("schedule: {schedule}{extra}"));
        Config::from_yaml("cfg.yaml", &text)
    };
    let kind = |c: &Config| TrainSpec::teacher(c, mode, classes.clone()).schedule.kind;
    let c = with(
        "cosine_restarts",
        "\n  restart_epochs: 3\n  restart_mult: 1.5",
    )
    .unwrap();
    assert_eq!(
        kind(&c),
        ScheduleKind::Cosine {
            t0_epochs: 3.0,
            t_mult: 1.5,
            min_lr_ratio: 0.01
        }
    );
    let c = with("step", "\n  step_epochs: 4\n  step_gamma: 0.5").unwrap();
    assert_eq!(
        kind(&c),
        ScheduleKind::Step {
            step_epochs: 4,
            gamma: 0.5
        }
    );
    // Defaults apply when the optional keys are absent.
    let c = with("plateau", "").unwrap();
    assert_eq!(
        kind(&c),
        ScheduleKind::Plateau {
            factor: 0.1,
            patience: 2,
            threshold: 1e-4,
            min_lr_ratio: 0.01
        }
    );
    for (extra, key) in [
        ("\n  step_epochs: 0", "training.step_epochs"),
        ("\n  step_gamma: 1.5", "training.step_gamma"),
        ("\n  plateau_factor: 1", "training.plateau_factor"),
        ("\n  plateau_patience: 0", "training.plateau_patience"),
        ("\n  restart_epochs: 0", "training.restart_epochs"),
        ("\n  restart_mult: 0.5", "training.restart_mult"),
    ] {
        let e = format!("{:#}", with("step", extra).unwrap_err());
        assert!(e.contains(key), "{extra}: {e}");
    }
    let e = format!("{:#}", with("linear", "").unwrap_err());
    assert!(e.contains("schedule"), "{e}");
}

#[test]
fn distillation_defaults_keep_plain_kd() {
    let without: String = default_text()
        .lines()
        .filter(|l| {
            ![
                "  temperatures:",
                "  temperature_schedule:",
                "  warmup_epochs: 0",
                "  ramp_epochs:",
                "  hard_epochs:",
                "  confidence:",
                "  confidence_threshold:",
                "  domains:",
                "  features:",
                "  feature_weight:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let bare = Config::from_yaml("cfg.yaml", &without)
        .unwrap()
        .distillation;
    let shipped = Config::load(&default_path()).unwrap().distillation;
    assert_eq!(bare, shipped, "the shipped values are the defaults");
    assert!(bare.temperatures.is_empty() && bare.domains.is_empty() && bare.features.is_empty());
    assert_eq!(bare.temperature_schedule, TemperatureScheduleName::Constant);
    assert_eq!(bare.temperature_end, None);
    assert_eq!((bare.warmup_epochs, bare.ramp_epochs), (0.0, 0.0));
    assert_eq!((bare.hard_epochs, bare.hard_lr), (0, None));
    assert_eq!(bare.confidence, ConfidenceName::None);
    assert_eq!((bare.confidence_threshold, bare.feature_weight), (0.5, 1.0));
}

#[test]
fn distillation_keys_parse() {
    let t = default_text()
        .replace(
            "temperature_schedule: constant",
            "temperature_schedule: linear",
        )
        .replace("  # temperature_end: 1.0", "  temperature_end: 1.5")
        .replace("warmup_epochs: 0\n", "warmup_epochs: 1.5\n")
        .replace("ramp_epochs: 0", "ramp_epochs: 2")
        .replace("hard_epochs: 0", "hard_epochs: 4")
        .replace("  # hard_lr: 0.0001", "  hard_lr: 0.0002")
        .replace("confidence: none", "confidence: threshold")
        .replace("confidence_threshold: 0.5", "confidence_threshold: 0.8")
        .replace("domains: []", "domains: [indoor, lab]")
        .replace(
            "features: []",
            "features: [{student: stride16, teacher: stride8}, {student: pooled, teacher: pooled}]",
        )
        .replace("feature_weight: 1.0", "feature_weight: 0.25");
    let d = Config::from_yaml("cfg.yaml", &t).unwrap().distillation;
    assert_eq!(d.temperature_schedule, TemperatureScheduleName::Linear);
    assert_eq!((d.temperature, d.temperature_end), (4.0, Some(1.5)));
    assert_eq!((d.warmup_epochs, d.ramp_epochs), (1.5, 2.0));
    assert_eq!((d.hard_epochs, d.hard_lr), (4, Some(0.0002)));
    assert_eq!(
        (d.confidence, d.confidence_threshold),
        (ConfidenceName::Threshold, 0.8)
    );
    assert_eq!(d.domains, ["indoor", "lab"]);
    assert_eq!(
        d.features,
        [
            FeaturePair {
                student: "stride16".into(),
                teacher: "stride8".into()
            },
            FeaturePair {
                student: "pooled".into(),
                teacher: "pooled".into()
            }
        ]
    );
    assert_eq!(d.feature_weight, 0.25);
    let d = Config::from_yaml(
        "cfg.yaml",
        &default_text().replace("temperatures: []", "temperatures: [2, 4, 8]"),
    )
    .unwrap()
    .distillation;
    assert_eq!(d.temperatures, [2.0, 4.0, 8.0]);
}

#[test]
fn distillation_errors_name_the_key() {
    let cases = [
        (
            "temperatures: []",
            "temperatures: [2, 0]",
            "distillation.temperatures[1]: must be in (0, 100], got 0",
        ),
        (
            "temperature_schedule: constant",
            "temperature_schedule: linear",
            "distillation.temperature_end: must be set with temperature_schedule linear",
        ),
        (
            "  # temperature_end: 1.0",
            "  temperature_end: 1.0",
            "distillation.temperature_end: must be absent with temperature_schedule constant, got 1",
        ),
        (
            "warmup_epochs: 0\n",
            "warmup_epochs: -1\n",
            "distillation.warmup_epochs: must be in [0, 1000], got -1",
        ),
        (
            "ramp_epochs: 0",
            "ramp_epochs: 5000",
            "distillation.ramp_epochs: must be in [0, 1000], got 5000",
        ),
        (
            "  # hard_lr: 0.0001",
            "  hard_lr: 0",
            "distillation.hard_lr: must be in (0, 10], got 0",
        ),
        (
            "confidence_threshold: 0.5",
            "confidence_threshold: 0",
            "distillation.confidence_threshold: must be in (0, 1], got 0",
        ),
        (
            "domains: []",
            "domains: [a, b, a]",
            "distillation.domains[2]: must be a domain not listed before, got \"a\"",
        ),
        (
            "domains: []",
            "domains: [\"in;door\"]",
            "distillation.domains[0]: value \"in;door\" of attribute \"domain\" contains ';'",
        ),
        (
            "features: []",
            "features: [{student: logits, teacher: stride8}]",
            "distillation.features[0].student: must be a feature tap (stride4, stride8, \
             stride16, stride32 or pooled), got \"logits\"",
        ),
        (
            "feature_weight: 1.0",
            "feature_weight: -2",
            "distillation.feature_weight: must be in [0, 1000], got -2",
        ),
    ];
    for (from, to, want) in cases {
        let text = default_text();
        assert!(text.contains(from), "default.yaml lacks {from:?}");
        let e = err(&text.replace(from, to));
        assert_eq!(e, format!("cfg.yaml: {want}"), "{to}");
    }
    let lin = default_text()
        .replace(
            "temperature_schedule: constant",
            "temperature_schedule: linear",
        )
        .replace("  # temperature_end: 1.0", "  temperature_end: 1.0")
        .replace("temperatures: []", "temperatures: [1, 2]");
    assert_eq!(
        err(&lin),
        "cfg.yaml: distillation.temperatures: must be empty with temperature_schedule linear, \
         got [1.0, 2.0]"
    );
    let e = err(&default_text().replace("confidence: none", "confidence: entropy"));
    assert!(e.contains("entropy") && e.contains("pmax"), "{e}");
}

#[test]
fn distillation_new_equals_a_yaml_section_with_two_keys() {
    let text = "seed: 1\nnum_classes: 2\n".to_string()
        + &default_text()[default_text().find("teacher:").unwrap()..];
    let start = text.find("distillation:").unwrap();
    let end = text.find("qat:").unwrap();
    let text = format!(
        "{}distillation: {{ alpha: 0.3, temperature: 6 }}\n\n{}",
        &text[..start],
        &text[end..]
    );
    let d = Config::from_yaml("cfg.yaml", &text).unwrap().distillation;
    assert_eq!(d, kdtrainer::config::Distillation::new(0.3, 6.0));
}

#[test]
fn qat_tuning_keys_are_optional_with_their_documented_defaults() {
    let text = default_text();
    let stripped: String = text
        .lines()
        .filter(|l| {
            ![
                "freeze_bn_fraction:",
                "freeze_observers_fraction:",
                "observer_momentum:",
                "calibration_samples:",
            ]
            .iter()
            .any(|k| l.trim_start().starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!stripped.contains("calibration_samples"));
    let c = Config::from_yaml("cfg.yaml", &stripped).unwrap();
    let d = Config::from_yaml("cfg.yaml", &text).unwrap();
    assert_eq!(c.qat, d.qat);
}
