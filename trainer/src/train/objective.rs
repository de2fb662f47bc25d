//! What a training step minimises. The engine ([`super::run_with`]) owns the loop, the optimiser,
//! checkpoints and logs; an [`Objective`] owns the loss: the plain hard-label loss
//! ([`HardLoss`]) for teachers and students trained from scratch, or the distillation objective
//! (`crate::distill::objective`) with teachers, adapters, gates and EMA copies of its own.
//!
//! Per-step statistics an objective returns are averaged per epoch into
//! [`super::EpochRecord::train_stats`] and written one line per step to `train_steps.jsonl`.

use std::collections::BTreeMap;

use anyhow::Result;
use tch::{nn, Kind, Reduction, Tensor};

use crate::data::Mode;
use crate::pipeline::Batch;

/// Where in the run a step is.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// Global 0-based epoch.
    pub epoch: usize,
    /// 0-based phase index.
    pub phase: usize,
    /// Phase name (`head`, `finetune`, `distil`, `hard`, `qat`, ...).
    pub phase_name: String,
    /// 0-based epoch within the phase.
    pub phase_epoch: usize,
    /// 0-based step within the epoch.
    pub step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Global 0-based step.
    pub global_step: u64,
}

impl StepContext {
    /// Fraction of the current epoch done before this step, in `[0, 1)`.
    pub fn epoch_fraction(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch.max(1) as f64
    }
}

/// The loss of one step and the statistics to log with it.
pub struct StepLoss {
    /// Scalar loss to back-propagate.
    pub loss: Tensor,
    /// Named per-step statistics (`total`, `ce`, `kd`, `kd_weight`, `coverage`, ...).
    pub stats: BTreeMap<String, f64>,
}

/// A training objective. Only [`Objective::train_loss`] is required.
pub trait Objective {
    /// The loss of a training batch; `images` and `targets` are already on the model's device.
    /// The model is in training mode (`forward_t(.., true)`).
    fn train_loss(
        &mut self,
        model: &dyn nn::ModuleT,
        batch: &Batch,
        images: &Tensor,
        targets: &Tensor,
        ctx: &StepContext,
    ) -> Result<StepLoss>;

    /// Called before the forward pass of every step (clear gradients of own variables).
    fn before_step(&mut self) {}

    /// Called after the model's optimiser step (step own variables, update EMA copies).
    fn after_step(&mut self, _ctx: &StepContext, _lr: f64) -> Result<()> {
        Ok(())
    }

    /// Own state to checkpoint with the model (adapters, gates, EMA weights, their moments).
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Restores what [`Objective::state_tensors`] returned.
    fn load_state(&mut self, _tensors: Vec<(String, Tensor)>) -> Result<()> {
        Ok(())
    }
}

/// The hard-label loss per image averaged over the batch: softmax cross-entropy against the
/// one-hot targets (multi-class) or binary cross-entropy with logits (multi-label).
pub fn hard_loss(mode: Mode, logits: &Tensor, targets: &Tensor) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    match mode {
        Mode::MultiClass => -(targets * logits.log_softmax(-1, Kind::Float))
            .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
            .mean(Kind::Float),
        Mode::MultiLabel => {
            logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::Mean)
        }
    }
}

/// Training on the labels alone ([`hard_loss`]).
#[derive(Clone, Copy, Debug)]
pub struct HardLoss {
    /// Multi-class or multi-label.
    pub mode: Mode,
    /// Run the forward pass under float16 autocast (CUDA mixed precision).
    pub autocast: bool,
}

impl Objective for HardLoss {
    fn train_loss(
        &mut self,
        model: &dyn nn::ModuleT,
        _batch: &Batch,
        images: &Tensor,
        targets: &Tensor,
        _ctx: &StepContext,
    ) -> Result<StepLoss> {
        let logits = tch::autocast(self.autocast, || model.forward_t(images, true));
        Ok(StepLoss {
            loss: hard_loss(self.mode, &logits, targets),
            stats: BTreeMap::new(),
        })
    }
}
