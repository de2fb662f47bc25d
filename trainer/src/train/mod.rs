//! The training engine: phases with partial unfreezing, optimisers, learning-rate schedules,
//! gradient clipping, early stopping, best and top-k checkpoints, crash-safe resume, NaN guard,
//! mixed precision on CUDA, deterministic seeding, and per-epoch logs and plots.
//!
//! Entry point: [`run`], or [`run_classifier`] for a model-zoo network. Batches are the input
//! pipeline's [`Batch`]; its [`Loader`] is a [`BatchSource`]. [`run`] is generic over any
//! `nn::ModuleT` whose variables live in a `VarStore` and are grouped by var-store path prefixes
//! (`layer_groups`, input to output; the last group is the classifier head).
//!
//! # Phases
//!
//! A run is a list of [`PhaseSpec`]s, each with its own epochs, base learning rate, schedule
//! instance, optimiser instance (moments start at zero in each phase) and early-stopping counters.
//! [`TrainSpec::teacher`]: phase `head` trains only the last layer group (backbone frozen) at
//! `lr_head`, then phase `finetune` unfreezes the top 30 % of the layer groups (rounded up) at
//! `lr_finetune` (`teacher.unfreeze`, 0.3 by default). [`TrainSpec::student`] is the same with
//! `student.unfreeze` (the top 40 % by default). Frozen variables get
//! `requires_grad = false`. Frozen batch-norm layers still run in training mode (`ModuleT` has a
//! single train flag), so their running statistics keep adapting to the data during phase `head`.
//!
//! # Determinism
//!
//! Before every optimisation step the libtorch generator is re-seeded from `(seed, epoch, step)`,
//! so dropout and any other in-model randomness depend only on the position; shuffling belongs to
//! the batch source, which receives the global epoch index. With the optimiser state checkpointed
//! too, a resumed run continues as the uninterrupted one: the same computation, equal up to rounding
//! noise (MKL's GEMM may round differently with the operands' memory alignment).
//!
//! # Resume
//!
//! Checkpoints ([`checkpoint`]) are written at the end of every epoch and, with
//! `checkpoint_every_steps = Some(n)`, every `n` steps inside an epoch. With `resume = true`,
//! [`run`] restores weights, optimiser moments, schedule, early-stopping, loss-scale and top-k
//! state and the position, then continues; batches of a partly done epoch already trained are
//! skipped. A kill at any instant loses at most the work since the last checkpoint.
//!
//! # Mixed precision
//!
//! With `mixed_precision` and a CUDA var store, forward passes run under `tch::autocast` (float16
//! autocast) and the loss is multiplied by a dynamic loss scale (start 2^16; halved and the step
//! skipped when a gradient is not finite; doubled after 2000 good steps), gradients are unscaled
//! before clipping. On the CPU it is a no-op.
//!
//! # NaN guard
//!
//! A non-finite training or validation loss stops the run with an error naming the epoch, step and
//! phase; nothing is written for that epoch, so the last committed checkpoint stays the resume
//! point and `best.safetensors` the best good weights.
//!
//! # Outputs (in `out_dir`)
//!
//! `checkpoints/` (see [`checkpoint`]), `train_log.jsonl`, `train_log.csv`, `loss.svg`,
//! `metrics.svg` (see [`log`]), and `val_metrics.json` + `val_confusion.svg` (multi-class) for the
//! last validated epoch (see [`crate::eval`]).

pub mod checkpoint;
pub mod log;
pub mod objective;
pub mod optim;
pub mod schedule;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::config::{Config, OptimizerName, Role, ScheduleName};
use crate::data::import::SplitMix64;
use crate::data::Mode;
use crate::eval::{self, Metrics};
use crate::models::Classifier;
use crate::pipeline::Loader;
use checkpoint::{Dir, EarlyStopState, Partial, ScalerState, State, TopEntry, STATE_SCHEMA};
use objective::{hard_loss, HardLoss, Objective, StepContext};
use optim::{Optimizer, OptimizerSpec};
use schedule::{Schedule, ScheduleKind, ScheduleSpec, ScheduleState};

pub use crate::pipeline::Batch;

/// A source of batches: the training or validation input pipeline.
pub trait BatchSource {
    /// The batches of global epoch `epoch` (training sources shuffle from it; validation
    /// sources ignore it). Must yield the same batches for the same epoch every time.
    fn epoch(&self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + '_>;
    /// Batches per epoch.
    fn len(&self) -> usize;
    /// True when an epoch has no batch.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The input pipeline's [`Loader`] is the engine's batch source (its epochs are deterministic in
/// `(seed, epoch)`, as a resume requires).
impl BatchSource for Loader {
    fn epoch(&self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Box::new(Loader::epoch(self, epoch))
    }

    fn len(&self) -> usize {
        self.num_batches()
    }
}

/// Which layer groups a phase trains.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trainable {
    /// Only the last layer group (the classifier head).
    Head,
    /// The last `ceil(fraction * groups)` layer groups (at least one).
    Top {
        /// Fraction of the layer groups, in (0, 1].
        fraction: f64,
    },
    /// Every layer group.
    All,
}

/// One training phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseSpec {
    /// Name, as logged (`head`, `finetune`, ...).
    pub name: String,
    /// Epochs (a phase of 0 epochs is skipped).
    pub epochs: usize,
    /// Base learning rate of the phase's schedule.
    pub lr: f64,
    /// Which layer groups train.
    pub trainable: Trainable,
}

/// The metric that picks the best checkpoint, drives early stopping and the plateau schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Monitor {
    /// `val_loss`, or `val_<name>` for a validation metric of [`Metrics::summary`]
    /// (`val_top1`, `val_top5`, `val_f1_micro`, `val_f1_macro`, ...).
    pub metric: String,
    /// True for accuracies and F1, false for losses.
    pub higher_is_better: bool,
}

impl Monitor {
    /// `val_loss`, lower is better.
    pub fn val_loss() -> Monitor {
        Monitor {
            metric: "val_loss".into(),
            higher_is_better: false,
        }
    }

    /// The default for a mode: `val_top1` (multi-class) or `val_f1_micro` (multi-label).
    pub fn default_for(mode: Mode) -> Monitor {
        Monitor {
            metric: match mode {
                Mode::MultiClass => "val_top1",
                Mode::MultiLabel => "val_f1_micro",
            }
            .into(),
            higher_is_better: true,
        }
    }
}

/// Early stopping within a phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EarlyStopping {
    /// Epochs without improvement after which the phase ends.
    pub patience: usize,
    /// Smallest change of the monitored metric that counts as an improvement.
    pub min_delta: f64,
}

/// Everything that defines a training run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainSpec {
    /// Seed of the per-step generator re-seeding (see the module docs).
    pub seed: u64,
    /// Loss and metrics: softmax cross-entropy / top-k, or sigmoid BCE / F1.
    pub mode: Mode,
    /// Class names, output order.
    pub classes: Vec<String>,
    /// Phases, in order.
    pub phases: Vec<PhaseSpec>,
    /// Optimiser.
    pub optimizer: OptimizerSpec,
    /// Learning-rate schedule applied within each phase.
    pub schedule: ScheduleSpec,
    /// Clip the gradients' global L2 norm to this value.
    pub clip_grad_norm: Option<f64>,
    /// Early stopping; `None` runs every epoch.
    pub early_stopping: Option<EarlyStopping>,
    /// Metric for best/top-k checkpoints, early stopping and the plateau schedule.
    pub monitor: Monitor,
    /// Number of best epochs whose weights are kept under `checkpoints/top/` (0 = none).
    pub top_k: usize,
    /// Also checkpoint every this many steps inside an epoch.
    pub checkpoint_every_steps: Option<usize>,
    /// Float16 autocast with loss scaling on CUDA (ignored on the CPU).
    pub mixed_precision: bool,
    /// Multi-label decision threshold for the validation metrics.
    pub threshold: f32,
    /// Continue from `out_dir/checkpoints/state.json` (which must have been written by the same
    /// spec). Without it, an existing checkpoint is an error.
    #[serde(skip)]
    pub resume: bool,
}

impl TrainSpec {
    /// The two-phase recipe of `role` from the configuration: phase `head` trains only the
    /// classifier (backbone frozen) for `epochs_head` epochs at `lr_head`, then phase `finetune`
    /// trains the top `<role>.unfreeze` of the layer groups for `epochs_finetune` epochs at
    /// `lr_finetune`; a student then gets the `hard` phase of `distillation.hard_epochs` epochs at
    /// `distillation.hard_lr` when there is one. Optimiser, schedule, clipping, early stopping, top-k and step checkpoints
    /// come from the `training` section; the monitored metric is val top-1 (multi-label: micro
    /// F1).
    pub fn from_config(cfg: &Config, role: Role, mode: Mode, classes: Vec<String>) -> TrainSpec {
        let t = &cfg.training;
        let wd = t.weight_decay;
        let mut spec = TrainSpec {
            seed: cfg.seed,
            mode,
            classes,
            phases: vec![
                PhaseSpec {
                    name: "head".into(),
                    epochs: cfg.epochs_head,
                    lr: cfg.lr_head,
                    trainable: Trainable::Head,
                },
                PhaseSpec {
                    name: "finetune".into(),
                    epochs: cfg.epochs_finetune,
                    lr: cfg.lr_finetune,
                    trainable: Trainable::Top {
                        fraction: cfg.network(role).unfreeze,
                    },
                },
            ],
            optimizer: match t.optimizer {
                OptimizerName::Adamw => OptimizerSpec::AdamW {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: wd,
                },
                OptimizerName::Adam => OptimizerSpec::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: wd,
                },
                OptimizerName::Sgd => OptimizerSpec::Sgd {
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: wd,
                },
            },
            schedule: ScheduleSpec {
                kind: match t.schedule {
                    ScheduleName::Cosine => ScheduleKind::Cosine {
                        t0_epochs: 0.0,
                        t_mult: 1.0,
                        min_lr_ratio: 0.01,
                    },
                    ScheduleName::CosineRestarts => ScheduleKind::Cosine {
                        t0_epochs: t.restart_epochs,
                        t_mult: t.restart_mult,
                        min_lr_ratio: 0.01,
                    },
                    ScheduleName::Step => ScheduleKind::Step {
                        step_epochs: t.step_epochs,
                        gamma: t.step_gamma,
                    },
                    ScheduleName::Plateau => ScheduleKind::Plateau {
                        factor: t.plateau_factor,
                        patience: t.plateau_patience,
                        threshold: 1e-4,
                        min_lr_ratio: 0.01,
                    },
                    ScheduleName::Constant => ScheduleKind::Constant,
                },
                warmup_epochs: t.warmup_epochs,
            },
            clip_grad_norm: (t.clip_grad_norm > 0.0).then_some(t.clip_grad_norm),
            early_stopping: (t.early_stopping_patience > 0).then_some(EarlyStopping {
                patience: t.early_stopping_patience,
                min_delta: 1e-4,
            }),
            monitor: Monitor::default_for(mode),
            top_k: t.top_k,
            checkpoint_every_steps: (t.checkpoint_every_steps > 0)
                .then_some(t.checkpoint_every_steps),
            mixed_precision: true,
            threshold: 0.5,
            resume: false,
        };
        // The two-phase student recipe's hard-label phase (`distillation.hard_epochs`) belongs
        // to every student, so the distilled and the scratch student share one schedule.
        let d = &cfg.distillation;
        if role == Role::Student && d.hard_epochs > 0 {
            spec.phases.push(PhaseSpec {
                name: "hard".into(),
                epochs: d.hard_epochs,
                lr: d.hard_lr.unwrap_or(cfg.lr_finetune),
                trainable: Trainable::Top {
                    fraction: cfg.network(role).unfreeze,
                },
            });
        }
        spec
    }

    /// Teacher recipe: [`TrainSpec::from_config`] with `teacher.unfreeze` (0.3 in the default
    /// configuration).
    pub fn teacher(cfg: &Config, mode: Mode, classes: Vec<String>) -> TrainSpec {
        Self::from_config(cfg, Role::Teacher, mode, classes)
    }

    /// Student recipe: [`TrainSpec::from_config`] with `student.unfreeze` (0.4 in the default
    /// configuration).
    pub fn student(cfg: &Config, mode: Mode, classes: Vec<String>) -> TrainSpec {
        Self::from_config(cfg, Role::Student, mode, classes)
    }

    /// Consistency checks; errors name the field.
    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        self.schedule.validate()?;
        if self.classes.is_empty() {
            bail!("classes: empty");
        }
        if self.phases.iter().all(|p| p.epochs == 0) {
            bail!("phases: no phase has an epoch");
        }
        for (i, p) in self.phases.iter().enumerate() {
            if !(p.lr > 0.0 && p.lr.is_finite()) {
                bail!("phases[{i}].lr: must be > 0, got {}", p.lr);
            }
            if let Trainable::Top { fraction } = p.trainable {
                if !(fraction > 0.0 && fraction <= 1.0) {
                    bail!("phases[{i}].trainable.fraction: must be in (0, 1], got {fraction}");
                }
            }
        }
        if let Some(c) = self.clip_grad_norm {
            if c.is_nan() || c <= 0.0 {
                bail!("clip_grad_norm: must be > 0, got {c}");
            }
        }
        if let Some(es) = &self.early_stopping {
            if es.patience == 0 || es.min_delta < 0.0 {
                bail!("early_stopping: patience must be >= 1 and min_delta >= 0");
            }
        }
        if self.checkpoint_every_steps == Some(0) {
            bail!("checkpoint_every_steps: must be >= 1");
        }
        let allowed: &[&str] = match self.mode {
            Mode::MultiClass => &["val_loss", "val_top1", "val_top5"],
            Mode::MultiLabel => &[
                "val_loss",
                "val_f1_micro",
                "val_f1_macro",
                "val_precision_micro",
                "val_recall_micro",
            ],
        };
        if !allowed.contains(&self.monitor.metric.as_str()) {
            bail!(
                "monitor.metric: {:?} is not one of {allowed:?} ({} mode)",
                self.monitor.metric,
                self.mode.name()
            );
        }
        Ok(())
    }
}

/// One line of the training log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Global 0-based epoch.
    pub epoch: usize,
    /// Phase name.
    pub phase: String,
    /// 0-based epoch within the phase.
    pub phase_epoch: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss per image.
    pub train_loss: f64,
    /// Mean validation loss per image.
    pub val_loss: f64,
    /// Validation metrics ([`Metrics::summary`] names).
    pub val_metrics: BTreeMap<String, f64>,
    /// Wall-clock seconds of training and validation.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_s: f64,
    /// Optimisation steps in the epoch.
    pub steps: usize,
    /// The objective's per-step statistics averaged over the epoch's images (empty for the
    /// hard-label loss; distillation: `ce`, `kd`, `kd_weight`, `coverage`, ...).
    #[serde(default)]
    pub train_stats: BTreeMap<String, f64>,
}

/// What [`run`] returns.
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// Every epoch's record, including those before a resume.
    pub history: Vec<EpochRecord>,
    /// Best `(epoch, value)` of the monitored metric.
    pub best: Option<(usize, f64)>,
    /// `out_dir/checkpoints/best.safetensors` when a best epoch exists.
    pub best_weights: Option<PathBuf>,
    /// Names of the phases that early stopping ended.
    pub stopped_early: Vec<String>,
    /// The epoch this run resumed at (`None` for a fresh run).
    pub resumed_at: Option<usize>,
}

/// The generator seed of step `step` of global epoch `epoch`.
fn step_seed(seed: u64, epoch: usize, step: usize) -> i64 {
    let mut g = SplitMix64::new(seed ^ ((epoch as u64) << 32) ^ step as u64);
    (g.next_u64() >> 1) as i64
}

/// Maps each trainable variable to its layer group (longest matching prefix).
fn group_params(
    vs: &nn::VarStore,
    layer_groups: &[String],
) -> Result<Vec<(String, Tensor, usize)>> {
    if layer_groups.is_empty() {
        bail!("layer_groups: empty (need at least the head)");
    }
    let trainable: HashSet<usize> = vs
        .trainable_variables()
        .iter()
        .map(|t| t.data_ptr() as usize)
        .collect();
    let mut out = Vec::new();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in vars {
        if !trainable.contains(&(t.data_ptr() as usize)) {
            continue;
        }
        let group = layer_groups
            .iter()
            .enumerate()
            .filter(|(_, g)| name == **g || name.starts_with(&format!("{g}.")))
            .max_by_key(|(_, g)| g.len())
            .map(|(i, _)| i);
        match group {
            Some(g) => out.push((name, t, g)),
            None => {
                bail!("layer_groups: trainable variable {name:?} is under none of {layer_groups:?}")
            }
        }
    }
    Ok(out)
}

/// Most training batches [`recalibrate_batch_norm`] reads at the end of an epoch.
pub const RECALIBRATION_BATCHES: usize = 100;

/// Recomputes every BatchNorm's running statistics (variables named `*.running_mean` /
/// `*.running_var`) as the plain average, over up to `max_batches` batches of `source`'s epoch
/// `epoch`, of the batch statistics of the *current* weights ("precise BN"). Returns the number
/// of batches averaged (0 leaves the statistics as they were).
///
/// Why: the momentum average (`m` = [`crate::models::BN_MOMENTUM`]) keeps `(1 - m)^steps` of its
/// initial value (mean 0, variance 1) and lags weights that move fast. In a short from-scratch
/// run (the demo: 42 steps, 1.2 % left) the depthwise layers of MobileNetV2 / EfficientNet-Lite,
/// whose outputs have variances around 1e-3 (Kaiming fan-out init over `9 * channels`), keep a
/// running variance dominated by that initial 1: evaluation then scales their activations down
/// by 3-10x per layer and the network predicts one class while its training-mode loss falls.
///
/// The batch statistics are read back from the running buffers: set to zero before a
/// training-mode forward pass, they hold `m * batch_statistic` after it.
pub fn recalibrate_batch_norm(
    model: &dyn nn::ModuleT,
    vs: &nn::VarStore,
    source: &dyn BatchSource,
    epoch: usize,
    max_batches: usize,
    amp: bool,
) -> Result<usize> {
    let mut stats: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".running_mean") || n.ends_with(".running_var"))
        .collect();
    if stats.is_empty() || max_batches == 0 {
        return Ok(0);
    }
    stats.sort_by(|a, b| a.0.cmp(&b.0));
    let device = vs.device();
    let m = crate::models::BN_MOMENTUM;
    let mut sums: Vec<Tensor> = stats.iter().map(|(_, t)| t.zeros_like()).collect();
    let mut count = 0usize;
    tch::no_grad(|| -> Result<()> {
        for (i, batch) in source.epoch(epoch).take(max_batches).enumerate() {
            let batch = batch.with_context(|| format!("batch {i}"))?;
            for (_, t) in &mut stats {
                let _ = t.fill_(0.0);
            }
            let images = batch.images.to_device(device);
            let _ = tch::autocast(amp, || model.forward_t(&images, true));
            for ((_, t), s) in stats.iter().zip(&mut sums) {
                *s += t.to_kind(s.kind()) / m;
            }
            count += 1;
        }
        Ok(())
    })?;
    if count == 0 {
        return Ok(0);
    }
    tch::no_grad(|| {
        for ((_, t), s) in stats.iter_mut().zip(&sums) {
            t.copy_(&(s / count as f64));
        }
    });
    Ok(count)
}

/// First group index trained by `t` among `n` groups.
fn first_trained_group(t: &Trainable, n: usize) -> usize {
    match *t {
        Trainable::Head => n - 1,
        Trainable::All => 0,
        Trainable::Top { fraction } => {
            let k = ((fraction * n as f64).ceil() as usize).clamp(1, n);
            n - k
        }
    }
}

/// The optimiser's checkpoint tensors plus the objective's, prefixed with [`OBJECTIVE_PREFIX`].
fn with_objective(opt: &Optimizer, objective: &dyn Objective) -> Vec<(String, Tensor)> {
    let mut t = opt.state_tensors();
    t.extend(
        objective
            .state_tensors()
            .into_iter()
            .map(|(k, v)| (format!("{OBJECTIVE_PREFIX}{k}"), v)),
    );
    t
}

fn better(a: f64, b: f64, higher: bool) -> bool {
    if higher {
        a > b
    } else {
        a < b
    }
}

/// [`run`] for a network of the model zoo ([`crate::models::build`]): its layer groups are
/// [`Classifier::layer_groups`].
/// `on_epoch` is called with each epoch's record once it is committed.
pub fn run_classifier(
    spec: &TrainSpec,
    train: &dyn BatchSource,
    val: &dyn BatchSource,
    model: &dyn Classifier,
    vs: &mut nn::VarStore,
    out_dir: &Path,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainReport> {
    let groups = model.layer_groups();
    run_observed(spec, train, val, model, vs, &groups, out_dir, on_epoch)
}

/// Trains `model` (its variables in `vs`, grouped by `layer_groups` prefixes, input to output)
/// on `train`, validating on `val` after every epoch; writes checkpoints, logs and plots to
/// `out_dir`. See the module docs for the behaviour and [`checkpoint`] / [`log`] for the files.
pub fn run(
    spec: &TrainSpec,
    train: &dyn BatchSource,
    val: &dyn BatchSource,
    model: &dyn nn::ModuleT,
    vs: &mut nn::VarStore,
    layer_groups: &[String],
    out_dir: &Path,
) -> Result<TrainReport> {
    run_observed(
        spec,
        train,
        val,
        model,
        vs,
        layer_groups,
        out_dir,
        &mut |_| {},
    )
}

/// [`run`], calling `on_epoch` with each epoch's record once it is committed (progress output).
#[allow(clippy::too_many_arguments)]
pub fn run_observed(
    spec: &TrainSpec,
    train: &dyn BatchSource,
    val: &dyn BatchSource,
    model: &dyn nn::ModuleT,
    vs: &mut nn::VarStore,
    layer_groups: &[String],
    out_dir: &Path,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainReport> {
    let mut hard = HardLoss {
        mode: spec.mode,
        autocast: spec.mixed_precision && vs.device().is_cuda(),
    };
    run_with(
        spec,
        train,
        val,
        model,
        vs,
        layer_groups,
        out_dir,
        &mut hard,
        on_epoch,
    )
}

/// Name prefix of an objective's tensors inside the optimiser checkpoint file.
const OBJECTIVE_PREFIX: &str = "objective:";

/// [`run_observed`] minimising `objective` instead of the hard-label loss (validation still
/// reports the hard-label loss and metrics of the model itself).
#[allow(clippy::too_many_arguments)]
pub fn run_with(
    spec: &TrainSpec,
    train: &dyn BatchSource,
    val: &dyn BatchSource,
    model: &dyn nn::ModuleT,
    vs: &mut nn::VarStore,
    layer_groups: &[String],
    out_dir: &Path,
    objective: &mut dyn Objective,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainReport> {
    spec.validate()?;
    if train.is_empty() {
        bail!("training source: an epoch has no batch");
    }
    if val.is_empty() {
        bail!("validation source: an epoch has no batch");
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create", out_dir.display()))?;
    let dir = Dir::create(out_dir)?;
    let spec_json = serde_json::to_value(spec)?;
    let params = group_params(vs, layer_groups)?;
    let device = vs.device();
    let amp = spec.mixed_precision && device.is_cuda();
    let spe = train.len();

    let existing = dir.read_state()?;
    let (mut state, resumed_at) = match (spec.resume, existing) {
        (true, Some(st)) => {
            if st.spec != spec_json {
                bail!(
                    "{}: written by a different training spec; resume needs the same spec \
                     (or use a new output folder)",
                    dir.state_path().display()
                );
            }
            let weights = dir.path.join(&st.model_file);
            vs.load(&weights)
                .with_context(|| format!("{}: cannot load the weights", weights.display()))?;
            let p = dir.path.join(&st.optim_file);
            let saved = Tensor::read_safetensors(&p)
                .with_context(|| format!("{}: cannot read the optimiser state", p.display()))?;
            let own: Vec<(String, Tensor)> = saved
                .into_iter()
                .filter_map(|(k, t)| k.strip_prefix(OBJECTIVE_PREFIX).map(|k| (k.to_string(), t)))
                .collect();
            objective
                .load_state(own)
                .with_context(|| format!("{}: the objective's state", p.display()))?;
            dir.sweep(&st)?;
            let at = st.epoch;
            (st, Some(at))
        }
        (false, Some(_)) => bail!(
            "{}: a checkpoint exists; resume it or choose an empty output folder",
            dir.state_path().display()
        ),
        (_, None) => (
            State {
                schema: STATE_SCHEMA.into(),
                spec: spec_json,
                phase: 0,
                phase_epoch: 0,
                epoch: 0,
                step_in_epoch: 0,
                global_step: 0,
                partial: Partial::default(),
                schedule: ScheduleState {
                    scale: 1.0,
                    ..Default::default()
                },
                early_stop: EarlyStopState::default(),
                scaler: ScalerState {
                    scale: 65536.0,
                    good_steps: 0,
                },
                best: None,
                top: Vec::new(),
                model_file: String::new(),
                optim_file: String::new(),
                finished: false,
                history: Vec::new(),
                stopped_early: Vec::new(),
            },
            None,
        ),
    };
    log::write_all(out_dir, &state.history)?;
    let mut steps_log = log::StepLog::open(out_dir, state.global_step)?;

    while state.phase < spec.phases.len() {
        let p = state.phase;
        let phase = &spec.phases[p];
        let first = first_trained_group(&phase.trainable, layer_groups.len());
        let mut trained = Vec::new();
        for (name, t, g) in &params {
            let on = *g >= first;
            let _ = t.set_requires_grad(on);
            if on {
                trained.push((name.clone(), t.shallow_clone()));
            }
        }
        let mut opt = Optimizer::new(spec.optimizer.clone(), trained)?;
        if state.phase_epoch > 0 || state.step_in_epoch > 0 {
            let p = dir.path.join(&state.optim_file);
            let saved = Tensor::read_safetensors(&p)
                .with_context(|| format!("{}: cannot read the optimiser state", p.display()))?;
            let saved = saved
                .into_iter()
                .filter(|(k, _)| !k.starts_with(OBJECTIVE_PREFIX))
                .collect();
            opt.load_state(saved)
                .with_context(|| format!("{}", p.display()))?;
        }
        let mut sched = Schedule::new(spec.schedule.clone(), phase.lr, phase.epochs, spe)?;
        sched.state = state.schedule.clone();

        // The epoch-end commit moves `state` to the next phase when this one is done.
        while state.phase == p && state.phase_epoch < phase.epochs {
            let e = state.epoch;
            let pe = state.phase_epoch;
            let started = Instant::now();
            let mut partial = state.partial.clone();
            let mut last_lr = sched.lr(pe, state.step_in_epoch);
            let fail = |what: String, v: f64| {
                anyhow::anyhow!(
                    "epoch {e} {what} (phase {:?}, its epoch {pe}) is {v}; training \
                     stopped. The last good checkpoint ({} completed epochs) is kept in {}",
                    phase.name,
                    e,
                    dir.path.display()
                )
            };
            for (step, batch) in train.epoch(e).enumerate().skip(state.step_in_epoch) {
                let batch =
                    batch.with_context(|| format!("epoch {e} step {step}: training batch"))?;
                tch::manual_seed(step_seed(spec.seed, e, step));
                let lr = sched.lr(pe, step);
                last_lr = lr;
                let images = batch.images.to_device(device);
                let targets = batch.targets.to_device(device);
                let n = images.size().first().copied().unwrap_or(0) as usize;
                opt.zero_grad();
                objective.before_step();
                let ctx = StepContext {
                    epoch: e,
                    phase: p,
                    phase_name: phase.name.clone(),
                    phase_epoch: pe,
                    step,
                    steps_per_epoch: spe,
                    global_step: state.global_step,
                };
                let step_loss = objective
                    .train_loss(model, &batch, &images, &targets, &ctx)
                    .with_context(|| format!("epoch {e} step {step}: the objective"))?;
                let loss = step_loss.loss;
                let lv = loss.double_value(&[]);
                if !lv.is_finite() {
                    return Err(fail(format!("step {step}: the training loss"), lv));
                }
                let mut take_step = true;
                if amp {
                    (&loss * state.scaler.scale).backward();
                    opt.scale_grads(1.0 / state.scaler.scale);
                    if opt.grad_norm().is_finite() {
                        state.scaler.good_steps += 1;
                        if state.scaler.good_steps >= 2000 {
                            state.scaler.scale *= 2.0;
                            state.scaler.good_steps = 0;
                        }
                    } else {
                        state.scaler.scale /= 2.0;
                        state.scaler.good_steps = 0;
                        take_step = false;
                    }
                } else {
                    loss.backward();
                }
                if take_step {
                    if let Some(c) = spec.clip_grad_norm {
                        opt.clip_grad_norm(c);
                    }
                    opt.step(lr);
                }
                objective.after_step(&ctx, lr)?;
                partial.loss_sum += lv * n as f64;
                partial.images += n;
                for (k, v) in &step_loss.stats {
                    *partial.stats_sum.entry(k.clone()).or_insert(0.0) += v * n as f64;
                }
                steps_log.append(&ctx, lr, lv, &step_loss.stats)?;
                state.global_step += 1;
                let done = step + 1;
                if let Some(every) = spec.checkpoint_every_steps {
                    if done % every == 0 && done < spe {
                        let mut mid = state.clone();
                        mid.step_in_epoch = done;
                        mid.partial = Partial {
                            seconds: partial.seconds + started.elapsed().as_secs_f64(),
                            ..partial.clone()
                        };
                        mid.schedule = sched.state.clone();
                        state = dir.commit(mid, vs, &with_objective(&opt, objective))?;
                    }
                }
            }
            let train_seconds = partial.seconds + started.elapsed().as_secs_f64();
            // Validation, checkpoints and the exported network use the running statistics.
            recalibrate_batch_norm(model, vs, train, e, RECALIBRATION_BATCHES, amp)
                .with_context(|| format!("epoch {e}: BatchNorm recalibration"))?;

            // Validation.
            let (mut val_loss_sum, mut val_n) = (0.0f64, 0usize);
            let mut scores: Vec<f32> = Vec::new();
            let mut labels: Vec<Vec<usize>> = Vec::new();
            for (vstep, batch) in val.epoch(e).enumerate() {
                let batch =
                    batch.with_context(|| format!("epoch {e}: validation batch {vstep}"))?;
                let images = batch.images.to_device(device);
                let targets = batch.targets.to_device(device);
                let n = batch.labels.len();
                let (loss, out) = tch::no_grad(|| {
                    let logits =
                        tch::autocast(amp, || model.forward_t(&images, false)).to_kind(Kind::Float);
                    let loss = hard_loss(spec.mode, &logits, &targets).double_value(&[]);
                    let out = match spec.mode {
                        Mode::MultiClass => logits,
                        Mode::MultiLabel => logits.sigmoid(),
                    };
                    (loss, out)
                });
                if !loss.is_finite() {
                    return Err(fail(
                        format!("validation batch {vstep}: the validation loss"),
                        loss,
                    ));
                }
                val_loss_sum += loss * n as f64;
                val_n += n;
                scores.extend(eval::scores_from_tensor(&out)?.0);
                labels.extend(batch.labels);
            }
            let metrics = match spec.mode {
                Mode::MultiClass => {
                    let single: Vec<usize> = labels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| match l[..] {
                            [c] => Ok(c),
                            _ => bail!("validation image {i}: multi-class needs exactly one class"),
                        })
                        .collect::<Result<_>>()?;
                    Metrics::MultiClass(eval::multi_class(&scores, &spec.classes, &single)?)
                }
                Mode::MultiLabel => Metrics::MultiLabel(eval::multi_label(
                    &scores,
                    &spec.classes,
                    &labels,
                    &vec![spec.threshold; spec.classes.len()],
                )?),
            };
            let val_loss = val_loss_sum / val_n.max(1) as f64;
            let val_metrics: BTreeMap<String, f64> = metrics.summary().into_iter().collect();
            let record = EpochRecord {
                epoch: e,
                phase: phase.name.clone(),
                phase_epoch: pe,
                lr: last_lr,
                train_loss: partial.loss_sum / partial.images.max(1) as f64,
                val_loss,
                val_metrics,
                seconds: partial.seconds + started.elapsed().as_secs_f64(),
                images_per_s: partial.images as f64 / train_seconds.max(1e-9),
                steps: spe,
                train_stats: partial
                    .stats_sum
                    .iter()
                    .map(|(k, v)| (k.clone(), v / partial.images.max(1) as f64))
                    .collect(),
            };
            let value = if spec.monitor.metric == "val_loss" {
                val_loss
            } else {
                let key = spec.monitor.metric.trim_start_matches("val_");
                *record
                    .val_metrics
                    .get(key)
                    .with_context(|| format!("monitor.metric {key:?}: not computed"))?
            };
            let hib = spec.monitor.higher_is_better;
            sched.end_epoch(value, hib);

            // Best and top-k weights are written before the commit; a kill in between redoes
            // this epoch, which rewrites them identically.
            if state.best.is_none_or(|(_, b)| better(value, b, hib)) {
                state.best = Some((e, value));
                checkpoint::atomic_write(&dir.path.join("best.safetensors"), |tmp| {
                    vs.save(tmp).map_err(Into::into)
                })?;
                let meta = serde_json::json!({
                    "epoch": e, "metric": spec.monitor.metric, "value": value,
                });
                checkpoint::atomic_write_text(
                    &dir.path.join("best.json"),
                    &(serde_json::to_string_pretty(&meta)? + "\n"),
                )?;
            }
            if spec.top_k > 0 {
                let qualifies = state.top.len() < spec.top_k
                    || state
                        .top
                        .last()
                        .is_some_and(|w| better(value, w.value, hib));
                if qualifies {
                    let file = format!("epoch-{e:04}.safetensors");
                    checkpoint::atomic_write(&dir.path.join("top").join(&file), |tmp| {
                        vs.save(tmp).map_err(Into::into)
                    })?;
                    state.top.push(TopEntry {
                        epoch: e,
                        value,
                        file,
                    });
                    // Best first; among equals the earlier epoch first.
                    state.top.sort_by(|a, b| {
                        let ord = a.value.total_cmp(&b.value);
                        (if hib { ord.reverse() } else { ord }).then(a.epoch.cmp(&b.epoch))
                    });
                    state.top.truncate(spec.top_k);
                }
            }
            let mut stop = false;
            if let Some(es) = &spec.early_stopping {
                let st = &mut state.early_stop;
                let improved = st.best.is_none_or(|b| {
                    if hib {
                        value > b + es.min_delta
                    } else {
                        value < b - es.min_delta
                    }
                });
                if improved {
                    st.best = Some(value);
                    st.bad_epochs = 0;
                } else {
                    st.bad_epochs += 1;
                    stop = st.bad_epochs >= es.patience;
                }
            }

            let mut next = state.clone();
            next.history.push(record);
            next.epoch += 1;
            next.phase_epoch += 1;
            next.step_in_epoch = 0;
            next.partial = Partial::default();
            next.schedule = sched.state.clone();
            if stop {
                next.stopped_early.push(phase.name.clone());
            }
            if stop || next.phase_epoch >= phase.epochs {
                next.phase += 1;
                next.phase_epoch = 0;
                next.schedule = ScheduleState {
                    scale: 1.0,
                    ..Default::default()
                };
                next.early_stop = EarlyStopState::default();
                next.finished = next.phase >= spec.phases.len();
                // A finished phase's optimiser state is not resumed (the next phase starts a
                // fresh optimiser), but stays valid for the file layout.
            }
            state = dir.commit(next, vs, &with_objective(&opt, objective))?;
            log::write_all(out_dir, &state.history)?;
            if let Some(r) = state.history.last() {
                on_epoch(r);
            }
            if let Metrics::MultiClass(m) = &metrics {
                eval::plot_confusion(m, &out_dir.join("val_confusion.svg"))?;
            }
            metrics.write_json(&out_dir.join("val_metrics.json"))?;
            if stop {
                break;
            }
        }
        // A phase of zero epochs (or one fully done before a resume) moves on here.
        if state.phase == p {
            state.phase += 1;
            state.phase_epoch = 0;
            state.step_in_epoch = 0;
        }
    }
    if !state.finished {
        state.finished = true;
        checkpoint::atomic_write_text(
            &dir.state_path(),
            &(serde_json::to_string_pretty(&state)? + "\n"),
        )?;
    }
    let best_path = dir.path.join("best.safetensors");
    Ok(TrainReport {
        history: state.history,
        best: state.best,
        best_weights: best_path.exists().then_some(best_path),
        stopped_early: state.stopped_early,
        resumed_at,
    })
}
