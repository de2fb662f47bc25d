//! Training configuration: `kdtrain ... --config configs/default.yaml`.
//!
//! The YAML schema (every key documented in `configs/default.yaml`):
//!
//! ```yaml
//! seed: 42
//! num_classes: 10
//! mode: auto                # auto | multi-class | multi-label (optional, default auto)
//! teacher: { arch: resnet_tiny_cifar, input_size: 28, unfreeze: 0.3 }
//! student: { arch: mobilenet_v2_tiny, input_size: 32, unfreeze: 0.4 }
//! batch_size: 128
//! epochs_head: 3
//! epochs_finetune: 12
//! lr_head: 0.003
//! lr_finetune: 0.001
//! dropout: 0.2
//! distillation: { kd_alpha: 0.7, temperature: 4.0 }   # `alpha` is accepted for `kd_alpha`;
//!                                                     # optional schedule, weighting, domain
//!                                                     # and feature keys: see `Distillation`
//!   # teachers: [{ path: runs/t1, weight: 2.0, regions: [eu, us] }, { path: t2.pt,
//!   #   input_size: 224, normalization: imagenet }]; teacher_average: logits | probs
//! qat: { epochs: 5, lr: 0.00001, freeze_bn_fraction: 0.5, freeze_observers_fraction: 0.75,
//!        observer_momentum: 0.01, calibration_samples: 200 }   # the last four optional
//! augmentation: { hflip: true, rotation_turns: 0.03, zoom: 0.1,
//!                 brightness: 0.15, contrast: 0.15, saturation: 0.15 }
//! threshold_search: { grid: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] }
//! training: { optimizer: adamw, weight_decay: 0.01, schedule: cosine, warmup_epochs: 1,
//!             clip_grad_norm: 5, early_stopping_patience: 5, top_k: 3,
//!             checkpoint_every_steps: 0 }
//! ```
//!
//! Every key is required except `mode`, the optional `distillation` and `training` keys
//! (defaults in [`Distillation`], [`Training`]) and the four QAT tuning keys (defaults as shown); an unknown key is an error (serde's
//! `deny_unknown_fields`) naming the key and its YAML line, and a value out of range is an error
//! naming the dotted key (`distillation.temperature: must be > 0, got -1`).
//!
//! **Distillation loss.** `kd_alpha` weighs the distillation term:
//! `L = (1 - kd_alpha) * CE(student, labels) + kd_alpha * T^2 * KD(student/T, teacher/T)`, with
//! `T = temperature`. The seed configuration called this key `distillation.alpha`; that spelling is
//! accepted as an alias with exactly this meaning (giving both is a duplicate-key error). The
//! seed designs disagree on what alpha weighs (the hard loss in one, the KD term in others); here
//! it is always the KD term, so `kd_alpha: 0` is plain supervised training.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::data::ModeChoice;
pub use crate::distill::teachers::Average;
use crate::models::ModelSpec;

/// The whole training configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seed of every random choice (init, shuffles, augmentation).
    pub seed: u64,
    /// Number of classes; must equal the data set's vocabulary size ([`Config::check_num_classes`]).
    pub num_classes: usize,
    /// Multi-class / multi-label: detected from the data set, or forced.
    #[serde(default)]
    pub mode: ModeChoice,
    /// Teacher network settings.
    pub teacher: ModelConfig,
    /// Student network settings.
    pub student: ModelConfig,
    /// Images per optimisation step.
    pub batch_size: usize,
    /// Epochs training only the classifier head (backbone frozen).
    pub epochs_head: usize,
    /// Epochs fine-tuning the whole network afterwards.
    pub epochs_finetune: usize,
    /// Learning rate of the head phase.
    pub lr_head: f64,
    /// Learning rate of the fine-tuning phase.
    pub lr_finetune: f64,
    /// Dropout probability before the classifier.
    pub dropout: f64,
    /// Knowledge-distillation loss settings.
    pub distillation: Distillation,
    /// Quantisation-aware training settings.
    pub qat: Qat,
    /// Training-time augmentation.
    pub augmentation: Augmentation,
    /// Decision-threshold search (multi-label).
    pub threshold_search: ThresholdSearch,
    /// Optimiser, schedule, early stopping and checkpointing of the training engine.
    pub training: Training,
}

/// Which network a training run makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The large network trained first (section `teacher`).
    Teacher,
    /// The small, int8-friendly network (section `student`).
    Student,
}

impl Role {
    /// `teacher` or `student`, as in the configuration and the output folders.
    pub fn name(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Student => "student",
        }
    }
}

/// Per-network settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Network: a `models::ModelSpec::parse` string (`name[:width[:depth]]`, e.g.
    /// `resnet_tiny_cifar`, `efficientnet_b0`, `mobilenet_v2:0.35`).
    pub arch: String,
    /// Side of the square network input in pixels (images are letterboxed to it).
    pub input_size: u32,
    /// Fraction of the layer groups (from the output side, rounded up) trained in the
    /// fine-tuning phase, in `(0, 1]`; the head phase trains the classifier only.
    pub unfreeze: f64,
}

/// The optimiser of both phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// AdamW (betas 0.9/0.999, eps 1e-8, decoupled weight decay).
    Adamw,
    /// Adam (L2 weight decay added to the gradient).
    Adam,
    /// SGD with Nesterov momentum 0.9 (L2 weight decay).
    Sgd,
}

/// The learning-rate schedule within each phase (after the linear warm-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    /// One cosine cycle over the phase down to 1 % of its learning rate.
    Cosine,
    /// Cosine with warm restarts (SGDR): cycles of `restart_epochs`, each `restart_mult` times
    /// longer than the last, down to 1 % of the learning rate.
    #[serde(rename = "cosine_restarts")]
    CosineRestarts,
    /// Multiply the learning rate by `step_gamma` every `step_epochs` epochs.
    Step,
    /// Multiply the learning rate by `plateau_factor` after `plateau_patience` epochs without
    /// improvement of the validation metric (down to 1 % of the phase's rate).
    Plateau,
    /// The phase's learning rate throughout.
    Constant,
}

fn default_restart_epochs() -> f64 {
    2.0
}
fn default_restart_mult() -> f64 {
    2.0
}
fn default_step_epochs() -> usize {
    3
}
fn default_gamma() -> f64 {
    0.1
}
fn default_plateau_patience() -> usize {
    2
}

/// Training-engine settings shared by teacher and student runs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Optimiser.
    pub optimizer: OptimizerName,
    /// Weight decay of kernels (not biases or normalisation scales), `[0, 1)`.
    pub weight_decay: f64,
    /// Schedule after warm-up.
    pub schedule: ScheduleName,
    /// First cycle length of `cosine_restarts`, in epochs, `(0, 1000]`.
    #[serde(default = "default_restart_epochs")]
    pub restart_epochs: f64,
    /// Cycle length multiplier of `cosine_restarts`, `[1, 10]`.
    #[serde(default = "default_restart_mult")]
    pub restart_mult: f64,
    /// Epochs between decays of `step`, `>= 1`.
    #[serde(default = "default_step_epochs")]
    pub step_epochs: usize,
    /// Decay factor of `step`, `(0, 1]`.
    #[serde(default = "default_gamma")]
    pub step_gamma: f64,
    /// Decay factor of `plateau`, `(0, 1)`.
    #[serde(default = "default_gamma")]
    pub plateau_factor: f64,
    /// Epochs without improvement before a `plateau` decay, `>= 1`.
    #[serde(default = "default_plateau_patience")]
    pub plateau_patience: usize,
    /// Linear warm-up at the start of each phase, in epochs (fractions allowed), `[0, 100]`.
    pub warmup_epochs: f64,
    /// Clip the gradients' global L2 norm to this value; 0 = no clipping.
    pub clip_grad_norm: f64,
    /// End a phase after this many epochs without improvement of the validation metric;
    /// 0 = never stop early.
    pub early_stopping_patience: usize,
    /// Best epochs whose weights are kept under `checkpoints/top/` (0 = none), `[0, 100]`.
    pub top_k: usize,
    /// Also checkpoint every this many optimisation steps inside an epoch; 0 = only at epoch ends.
    pub checkpoint_every_steps: usize,
}

impl ModelConfig {
    /// The network spec: `arch` at `input_size` with the given classes and dropout.
    pub fn model_spec(&self, num_classes: usize, dropout: f64) -> Result<ModelSpec> {
        ModelSpec::parse(&self.arch, self.input_size, num_classes, dropout)
    }
}

/// `L = (1 - kd_alpha) * CE + kd_alpha * T^2 * KD` (see the module docs and
/// [`crate::distill`]). Every key but `kd_alpha` and `temperature` is optional; the defaults give
/// plain KD at one constant temperature, weight and temperature constant from the first epoch.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distillation {
    /// Weight of the distillation term, in `[0, 1]`; `alpha` is an accepted alias.
    #[serde(alias = "alpha")]
    pub kd_alpha: f64,
    /// Softmax temperature `T` (> 0) of teacher and student logits; with
    /// `temperature_schedule: linear` the temperature of the first distillation step.
    pub temperature: f64,
    /// Several temperatures at once: when non-empty the KD term is the mean over these, each
    /// scaled by its own `T^2`, and `temperature` is not used (needs a constant schedule).
    #[serde(default)]
    pub temperatures: Vec<f64>,
    /// `constant` (default) or `linear`: from `temperature` to `temperature_end` over the
    /// distillation epochs (a decay or a rise).
    #[serde(default)]
    pub temperature_schedule: TemperatureScheduleName,
    /// Final temperature of the `linear` schedule (required by it, refused otherwise).
    #[serde(default)]
    pub temperature_end: Option<f64>,
    /// Epochs at the start with the hard loss only (KD weight 0); fractions allowed, `[0, 1000]`.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Epochs after the warm-up over which the KD weight rises linearly from 0 to `kd_alpha`;
    /// `[0, 1000]`, 0 = a step.
    #[serde(default)]
    pub ramp_epochs: f64,
    /// Two-phase student recipe: epochs of fine-tuning on the hard labels only, after the
    /// distillation epochs (0 = none).
    #[serde(default)]
    pub hard_epochs: usize,
    /// Learning rate of those hard-label epochs, `(0, 10]`; absent = `lr_finetune`.
    #[serde(default)]
    pub hard_lr: Option<f64>,
    /// Per-sample weight of the KD term from the teacher's confidence: `none` (default), `pmax`
    /// (weight = the teacher's max probability at T = 1) or `threshold` (1 when it is at least
    /// `confidence_threshold`, else 0).
    #[serde(default)]
    pub confidence: ConfidenceName,
    /// Threshold of `confidence: threshold`, `(0, 1]`.
    #[serde(default = "default_confidence_threshold")]
    pub confidence_threshold: f64,
    /// KD only for samples whose `domain` attribute is one of these (see `data::meta`); empty =
    /// every sample.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Feature matching: pairs of named taps (`strideN` or `pooled`), MSE through a learned 1x1
    /// adapter where channel counts differ; empty = none.
    #[serde(default)]
    pub features: Vec<FeaturePair>,
    /// Weight of the feature-matching term added to the loss, `[0, 1000]`.
    #[serde(default = "default_feature_weight")]
    pub feature_weight: f64,
    /// The teacher set (optional; empty = the stage's own teacher or a logit cache). Each entry is
    /// a training folder or a TorchScript file; see [`crate::distill::teachers`].
    #[serde(default)]
    pub teachers: Vec<TeacherConfig>,
    /// How the teachers' outputs are averaged: `logits` (default) or `probs`.
    #[serde(default)]
    pub teacher_average: Average,
    /// Learn per-sample weights over the teachers with a gate on the student's pooled features
    /// (needs at least two teachers).
    #[serde(default)]
    pub gate: bool,
    /// Self-distillation: the teacher is an exponential moving average of the student itself
    /// (no teacher set, no cache).
    #[serde(default)]
    pub self_distillation: bool,
    /// Decay of that moving average, `[0.5, 1)`.
    #[serde(default = "default_ema_decay")]
    pub ema_decay: f64,
    /// `kdtrain train` computes the teachers' logits over the training split once into a cache
    /// (`distil/teacher_logits.kdl`) instead of running the teachers at every step; the cache
    /// sees un-augmented images, on-the-fly teachers the student's augmented batch.
    #[serde(default = "default_true")]
    pub logit_cache: bool,
}

fn default_teacher_weight() -> f64 {
    1.0
}

/// One member of `distillation.teachers`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// A training folder (`checkpoints/model.json` + `checkpoints/best.safetensors`) or a
    /// TorchScript file, relative to the current directory.
    pub path: PathBuf,
    /// Ensemble weight, `> 0` (default 1); renormalised per sample over the contributing teachers.
    #[serde(default = "default_teacher_weight")]
    pub weight: f64,
    /// Contribute only for samples whose region is one of these (default: every sample).
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// TorchScript only: side of the square input, in `[8, 1024]` (default `teacher.input_size`).
    #[serde(default)]
    pub input_size: Option<u32>,
    /// TorchScript only: input normalisation, `imagenet` (default) or `student`.
    #[serde(default)]
    pub normalization: Option<NormalizationName>,
}

/// A named input normalisation ([`crate::pipeline::Normalization`]'s constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormalizationName {
    /// [`crate::pipeline::Normalization::IMAGENET`].
    Imagenet,
    /// [`crate::pipeline::Normalization::STUDENT`].
    Student,
}

impl NormalizationName {
    /// The normalisation it names.
    pub fn get(self) -> crate::pipeline::Normalization {
        match self {
            NormalizationName::Imagenet => crate::pipeline::Normalization::IMAGENET,
            NormalizationName::Student => crate::pipeline::Normalization::STUDENT,
        }
    }
}

impl TeacherConfig {
    /// A teacher at `path` with weight 1 and no region filter.
    pub fn new(path: impl Into<PathBuf>) -> TeacherConfig {
        TeacherConfig {
            path: path.into(),
            weight: 1.0,
            regions: None,
            input_size: None,
            normalization: None,
        }
    }

    /// Range checks; `key` is the entry's dotted key (`distillation.teachers[0]`).
    pub fn validate(&self, key: &str) -> Result<()> {
        check(
            self.weight.is_finite() && self.weight > 0.0,
            &format!("{key}.weight"),
            "finite and > 0",
            self.weight,
        )?;
        if let Some(r) = &self.regions {
            check(!r.is_empty(), &format!("{key}.regions"), "non-empty", "[]")?;
        }
        if let Some(s) = self.input_size {
            check(
                (8..=1024).contains(&s),
                &format!("{key}.input_size"),
                "in [8, 1024]",
                s,
            )?;
        }
        Ok(())
    }
}

fn default_ema_decay() -> f64 {
    crate::distill::teachers::EMA_DECAY
}
fn default_true() -> bool {
    true
}
fn default_confidence_threshold() -> f64 {
    0.5
}
fn default_feature_weight() -> f64 {
    1.0
}

/// How the KD temperature moves over the distillation epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemperatureScheduleName {
    /// `temperature` (or `temperatures`) throughout.
    #[default]
    Constant,
    /// Linear from `temperature` to `temperature_end`.
    Linear,
}

/// Per-sample weighting of the KD term by the teacher's confidence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfidenceName {
    /// Every sample weighs 1.
    #[default]
    None,
    /// Weight = the teacher's confidence.
    Pmax,
    /// Weight 1 when the confidence reaches `confidence_threshold`, else 0.
    Threshold,
}

/// One feature-matching pair: a student tap and the teacher tap it imitates.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturePair {
    /// Student tap (`stride4`, `stride8`, `stride16`, `stride32` or `pooled`).
    pub student: String,
    /// Teacher tap, same names.
    pub teacher: String,
}

/// True for the intermediate taps of `Classifier::forward_features` (`strideN`, `pooled`).
pub fn is_feature_tap(name: &str) -> bool {
    name == "pooled"
        || name
            .strip_prefix("stride")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Distillation {
    /// Plain KD at `kd_alpha` and one constant `temperature`, every optional key at its default
    /// (what a YAML section with only those two keys gives).
    pub fn new(kd_alpha: f64, temperature: f64) -> Distillation {
        Distillation {
            kd_alpha,
            temperature,
            temperatures: Vec::new(),
            temperature_schedule: TemperatureScheduleName::Constant,
            temperature_end: None,
            warmup_epochs: 0.0,
            ramp_epochs: 0.0,
            hard_epochs: 0,
            hard_lr: None,
            confidence: ConfidenceName::None,
            confidence_threshold: default_confidence_threshold(),
            domains: Vec::new(),
            features: Vec::new(),
            feature_weight: default_feature_weight(),
            teachers: Vec::new(),
            teacher_average: Average::default(),
            gate: false,
            self_distillation: false,
            ema_decay: default_ema_decay(),
            logit_cache: true,
        }
    }

    /// Range and consistency checks; the error names the dotted key.
    pub fn validate(&self) -> Result<()> {
        check(
            (0.0..=1.0).contains(&self.kd_alpha),
            "distillation.kd_alpha",
            "in [0, 1]",
            self.kd_alpha,
        )?;
        let temp_ok = |t: f64| t > 0.0 && t <= 100.0;
        check(
            temp_ok(self.temperature),
            "distillation.temperature",
            "in (0, 100]",
            self.temperature,
        )?;
        for (i, &t) in self.temperatures.iter().enumerate() {
            check(
                temp_ok(t),
                &format!("distillation.temperatures[{i}]"),
                "in (0, 100]",
                t,
            )?;
        }
        let linear = self.temperature_schedule == TemperatureScheduleName::Linear;
        check(
            !linear || self.temperatures.is_empty(),
            "distillation.temperatures",
            "empty with temperature_schedule linear",
            format!("{:?}", self.temperatures),
        )?;
        match (linear, self.temperature_end) {
            (true, None) => {
                bail!("distillation.temperature_end: must be set with temperature_schedule linear")
            }
            (false, Some(t)) => bail!(
                "distillation.temperature_end: must be absent with temperature_schedule \
                 constant, got {t}"
            ),
            (true, Some(t)) => check(temp_ok(t), "distillation.temperature_end", "in (0, 100]", t)?,
            (false, None) => {}
        }
        for (key, v) in [
            ("distillation.warmup_epochs", self.warmup_epochs),
            ("distillation.ramp_epochs", self.ramp_epochs),
        ] {
            check((0.0..=1000.0).contains(&v), key, "in [0, 1000]", v)?;
        }
        if let Some(lr) = self.hard_lr {
            check(
                lr > 0.0 && lr <= 10.0,
                "distillation.hard_lr",
                "in (0, 10]",
                lr,
            )?;
        }
        check(
            self.confidence_threshold > 0.0 && self.confidence_threshold <= 1.0,
            "distillation.confidence_threshold",
            "in (0, 1]",
            self.confidence_threshold,
        )?;
        for (i, d) in self.domains.iter().enumerate() {
            let key = format!("distillation.domains[{i}]");
            crate::data::meta::check_value("domain", d)
                .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
            check(
                !self.domains[..i].contains(d),
                &key,
                "a domain not listed before",
                format!("{d:?}"),
            )?;
        }
        for (i, p) in self.features.iter().enumerate() {
            for (side, tap) in [("student", &p.student), ("teacher", &p.teacher)] {
                check(
                    is_feature_tap(tap),
                    &format!("distillation.features[{i}].{side}"),
                    "a feature tap (stride4, stride8, stride16, stride32 or pooled)",
                    format!("{tap:?}"),
                )?;
            }
        }
        check(
            (0.0..=1000.0).contains(&self.feature_weight),
            "distillation.feature_weight",
            "in [0, 1000]",
            self.feature_weight,
        )?;
        for (i, t) in self.teachers.iter().enumerate() {
            t.validate(&format!("distillation.teachers[{i}]"))?;
        }
        check(
            (0.5..1.0).contains(&self.ema_decay),
            "distillation.ema_decay",
            "in [0.5, 1)",
            self.ema_decay,
        )?;
        check(
            !(self.gate && self.self_distillation),
            "distillation.gate",
            "false with self_distillation (one EMA teacher has nothing to gate)",
            self.gate,
        )?;
        check(
            !self.gate || self.teachers.len() != 1,
            "distillation.gate",
            "false with a single teacher in distillation.teachers",
            self.gate,
        )?;
        Ok(())
    }
}

/// Quantisation-aware training.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qat {
    /// QAT epochs (0 skips QAT; export then uses post-training calibration).
    pub epochs: usize,
    /// QAT learning rate.
    pub lr: f64,
    /// Fraction of the QAT steps after which the BatchNorm statistics freeze, `[0, 1]`
    /// (optional, default 0.5; 1 = never).
    #[serde(default = "default_freeze_bn_fraction")]
    pub freeze_bn_fraction: f64,
    /// Fraction of the QAT steps after which the activation ranges freeze, `[0, 1]`
    /// (optional, default 0.75; 1 = never).
    #[serde(default = "default_freeze_observers_fraction")]
    pub freeze_observers_fraction: f64,
    /// EMA constant of the activation observers during QAT, `(0, 1]` (optional, default 0.01).
    #[serde(default = "default_observer_momentum")]
    pub observer_momentum: f64,
    /// Training images in the calibration (representative) set, `[1, 100000]` (optional,
    /// default 200).
    #[serde(default = "default_calibration_samples")]
    pub calibration_samples: usize,
}

fn default_freeze_bn_fraction() -> f64 {
    0.5
}

fn default_freeze_observers_fraction() -> f64 {
    0.75
}

fn default_observer_momentum() -> f64 {
    0.01
}

fn default_calibration_samples() -> usize {
    crate::quant::ptq::DEFAULT_CALIBRATION_SAMPLES
}

/// Training-time augmentation, applied to the letterboxed uint8 image (training split only; see
/// `pipeline::augment` for the exact operations and their order).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augmentation {
    /// Random horizontal flip (p = 0.5).
    pub hflip: bool,
    /// Maximum absolute rotation in turns (1 turn = 360 degrees), `[0, 0.5]`; the angle is uniform
    /// in `[-rotation_turns, rotation_turns]`.
    pub rotation_turns: f64,
    /// Maximum relative zoom, `[0, 0.9]`; the scale factor is uniform in `[1 - zoom, 1 + zoom]`.
    pub zoom: f64,
    /// Maximum relative brightness change, `[0, 1]`: factor uniform in `[1 - b, 1 + b]`.
    pub brightness: f64,
    /// Maximum relative contrast change, `[0, 1]`: factor uniform in `[1 - c, 1 + c]`.
    pub contrast: f64,
    /// Maximum relative saturation change, `[0, 1]`: factor uniform in `[1 - s, 1 + s]`.
    pub saturation: f64,
}

/// Thresholds tried when choosing per-class decision thresholds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSearch {
    /// Candidate thresholds, strictly increasing, each in `(0, 1)`.
    pub grid: Vec<f64>,
}

/// Fails with `key: must be ..., got v` unless `ok`.
fn check(ok: bool, key: &str, rule: &str, got: impl std::fmt::Display) -> Result<()> {
    if ok {
        Ok(())
    } else {
        bail!("{key}: must be {rule}, got {got}")
    }
}

impl Config {
    /// Parses YAML text; `file` names the source in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Config> {
        let cfg: Config =
            serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        cfg.validate().with_context(|| file.to_string())?;
        Ok(cfg)
    }

    /// Reads and validates a YAML file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        Config::from_yaml(&path.display().to_string(), &text)
    }

    /// Range checks; the error names the dotted key.
    pub fn validate(&self) -> Result<()> {
        check(
            self.num_classes >= 1,
            "num_classes",
            ">= 1",
            self.num_classes,
        )?;
        for (key, m) in [
            ("teacher.input_size", &self.teacher),
            ("student.input_size", &self.student),
        ] {
            check(
                (8..=1024).contains(&m.input_size),
                key,
                "in [8, 1024]",
                m.input_size,
            )?;
        }
        for (net, m) in [("teacher", &self.teacher), ("student", &self.student)] {
            check(
                m.unfreeze > 0.0 && m.unfreeze <= 1.0,
                &format!("{net}.unfreeze"),
                "in (0, 1]",
                m.unfreeze,
            )?;
        }
        check(
            (1..=65536).contains(&self.batch_size),
            "batch_size",
            "in [1, 65536]",
            self.batch_size,
        )?;
        check(
            self.epochs_head + self.epochs_finetune >= 1,
            "epochs_finetune",
            ">= 1 when epochs_head is 0",
            self.epochs_finetune,
        )?;
        for (key, lr) in [
            ("lr_head", self.lr_head),
            ("lr_finetune", self.lr_finetune),
            ("qat.lr", self.qat.lr),
        ] {
            check(lr > 0.0 && lr <= 10.0, key, "in (0, 10]", lr)?;
        }
        let q = &self.qat;
        for (key, f) in [
            ("qat.freeze_bn_fraction", q.freeze_bn_fraction),
            ("qat.freeze_observers_fraction", q.freeze_observers_fraction),
        ] {
            check((0.0..=1.0).contains(&f), key, "in [0, 1]", f)?;
        }
        check(
            q.observer_momentum > 0.0 && q.observer_momentum <= 1.0,
            "qat.observer_momentum",
            "in (0, 1]",
            q.observer_momentum,
        )?;
        check(
            (1..=100_000).contains(&q.calibration_samples),
            "qat.calibration_samples",
            "in [1, 100000]",
            q.calibration_samples,
        )?;
        check(
            (0.0..1.0).contains(&self.dropout),
            "dropout",
            "in [0, 1)",
            self.dropout,
        )?;
        self.distillation.validate()?;
        let a = &self.augmentation;
        check(
            (0.0..=0.5).contains(&a.rotation_turns),
            "augmentation.rotation_turns",
            "in [0, 0.5]",
            a.rotation_turns,
        )?;
        check(
            (0.0..=0.9).contains(&a.zoom),
            "augmentation.zoom",
            "in [0, 0.9]",
            a.zoom,
        )?;
        for (key, v) in [
            ("augmentation.brightness", a.brightness),
            ("augmentation.contrast", a.contrast),
            ("augmentation.saturation", a.saturation),
        ] {
            check((0.0..=1.0).contains(&v), key, "in [0, 1]", v)?;
        }
        let t = &self.training;
        check(
            (0.0..1.0).contains(&t.weight_decay),
            "training.weight_decay",
            "in [0, 1)",
            t.weight_decay,
        )?;
        check(
            (0.0..=100.0).contains(&t.warmup_epochs),
            "training.warmup_epochs",
            "in [0, 100]",
            t.warmup_epochs,
        )?;
        check(
            t.clip_grad_norm >= 0.0 && t.clip_grad_norm.is_finite(),
            "training.clip_grad_norm",
            ">= 0 (0 = off)",
            t.clip_grad_norm,
        )?;
        check(t.top_k <= 100, "training.top_k", "in [0, 100]", t.top_k)?;
        let p = t;
        check(
            p.restart_epochs > 0.0 && p.restart_epochs <= 1000.0,
            "training.restart_epochs",
            "in (0, 1000]",
            p.restart_epochs,
        )?;
        check(
            (1.0..=10.0).contains(&p.restart_mult),
            "training.restart_mult",
            "in [1, 10]",
            p.restart_mult,
        )?;
        check(
            p.step_epochs >= 1,
            "training.step_epochs",
            ">= 1",
            p.step_epochs,
        )?;
        check(
            p.step_gamma > 0.0 && p.step_gamma <= 1.0,
            "training.step_gamma",
            "in (0, 1]",
            p.step_gamma,
        )?;
        check(
            p.plateau_factor > 0.0 && p.plateau_factor < 1.0,
            "training.plateau_factor",
            "in (0, 1)",
            p.plateau_factor,
        )?;
        check(
            p.plateau_patience >= 1,
            "training.plateau_patience",
            ">= 1",
            p.plateau_patience,
        )?;
        let g = &self.threshold_search.grid;
        check(!g.is_empty(), "threshold_search.grid", "non-empty", "[]")?;
        for (i, &t) in g.iter().enumerate() {
            check(
                t > 0.0 && t < 1.0,
                &format!("threshold_search.grid[{i}]"),
                "in (0, 1)",
                t,
            )?;
            if let Some(&prev) = i.checked_sub(1).and_then(|p| g.get(p)) {
                check(
                    t > prev,
                    &format!("threshold_search.grid[{i}]"),
                    &format!("greater than the previous value {prev}"),
                    t,
                )?;
            }
        }
        // Last: building a spec also checks `num_classes`, `dropout` and `input_size`.
        for (net, m) in [("teacher", &self.teacher), ("student", &self.student)] {
            m.model_spec(self.num_classes, self.dropout)
                .with_context(|| format!("{net}.arch"))?;
        }
        Ok(())
    }

    /// The network of `role` (`teacher` or `student`) with `--arch` overriding `<role>.arch`;
    /// an error names the key or the flag.
    pub fn model_spec(&self, role: Role, arch: Option<&str>) -> Result<ModelSpec> {
        let m = self.network(role);
        match arch {
            Some(a) => ModelConfig {
                arch: a.to_string(),
                ..m.clone()
            }
            .model_spec(self.num_classes, self.dropout)
            .context("--arch"),
            None => m
                .model_spec(self.num_classes, self.dropout)
                .with_context(|| format!("{}.arch", role.name())),
        }
    }

    /// The `teacher` or `student` section.
    pub fn network(&self, role: Role) -> &ModelConfig {
        match role {
            Role::Teacher => &self.teacher,
            Role::Student => &self.student,
        }
    }

    /// Fails unless `num_classes` equals the data set's vocabulary size.
    pub fn check_num_classes(&self, vocabulary: &[String]) -> Result<()> {
        check(
            self.num_classes == vocabulary.len(),
            "num_classes",
            &format!("the data set's {} classes", vocabulary.len()),
            self.num_classes,
        )
    }
}
