//! The KD weight and temperature as exact functions of the training position, and the two-phase
//! student recipe.
//!
//! A position is `(epoch, fraction)`: the 0-based student epoch and the fraction of it done
//! (`step / steps_per_epoch`, in `[0, 1)`), i.e. `p = epoch + fraction` epochs since the start of
//! distillation. With `W = warmup_epochs`, `R = ramp_epochs`, `A = kd_alpha` and `E` the number of
//! distillation epochs:
//!
//! ```text
//! kd_alpha(p) = 0                    p < W           (hard loss only)
//!             = A * (p - W) / R      W <= p < W + R  (linear ramp)
//!             = A                    W + R <= p < E
//!             = 0                    p >= E          (hard-label phase of the recipe)
//! T(p) = temperature                                  constant
//!      = T0 + (T1 - T0) * min(p / E, 1)               linear, T0 = temperature, T1 = temperature_end
//! ```
//!
//! **Two-phase recipe**: distil for `E` epochs (the student's `epochs_head + epochs_finetune`),
//! then fine-tune on hard labels for `hard_epochs` epochs at `hard_lr` ([`KdSchedule::phases`]).

use crate::config::{Distillation, TemperatureScheduleName};

/// How the temperature moves.
#[derive(Clone, Debug, PartialEq)]
pub enum TemperatureSchedule {
    /// These temperatures throughout (one, or several whose KD terms are averaged).
    Constant(Vec<f64>),
    /// One temperature, linear from `start` to `end` over the distillation epochs.
    Linear {
        /// At position 0.
        start: f64,
        /// At the end of distillation.
        end: f64,
    },
}

/// One phase of the student recipe, for the caller to turn into training-engine phases.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// `distil` or `hard`.
    pub name: &'static str,
    /// First epoch (0-based, global).
    pub first_epoch: usize,
    /// Its epochs.
    pub epochs: usize,
    /// True when the KD term is on (`kd_alpha` follows the schedule); false = hard labels only.
    pub distil: bool,
    /// Its learning rate; `None` = the engine's own phases (`lr_head` / `lr_finetune`).
    pub lr: Option<f64>,
}

/// KD weight and temperature over the epochs (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct KdSchedule {
    /// Target KD weight `A`.
    pub kd_alpha: f64,
    /// Hard-loss-only epochs `W` at the start.
    pub warmup_epochs: f64,
    /// Ramp epochs `R`.
    pub ramp_epochs: f64,
    /// Temperature schedule.
    pub temperature: TemperatureSchedule,
    /// Distillation epochs `E`.
    pub distill_epochs: usize,
    /// Hard-label epochs after them.
    pub hard_epochs: usize,
    /// Learning rate of the hard-label epochs (`None` = `lr_finetune`).
    pub hard_lr: Option<f64>,
}

impl KdSchedule {
    /// From a validated `distillation` section; `distill_epochs` = the student's distillation
    /// epochs (`epochs_head + epochs_finetune`).
    pub fn from_config(d: &Distillation, distill_epochs: usize) -> KdSchedule {
        let temperature = match (d.temperature_schedule, d.temperature_end) {
            (TemperatureScheduleName::Linear, Some(end)) => TemperatureSchedule::Linear {
                start: d.temperature,
                end,
            },
            _ if !d.temperatures.is_empty() => {
                TemperatureSchedule::Constant(d.temperatures.clone())
            }
            _ => TemperatureSchedule::Constant(vec![d.temperature]),
        };
        KdSchedule {
            kd_alpha: d.kd_alpha,
            warmup_epochs: d.warmup_epochs,
            ramp_epochs: d.ramp_epochs,
            temperature,
            distill_epochs,
            hard_epochs: d.hard_epochs,
            hard_lr: d.hard_lr,
        }
    }

    /// `epoch + fraction`, the fraction clamped to `[0, 1]`.
    fn position(epoch: usize, fraction: f64) -> f64 {
        let f = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        epoch as f64 + f
    }

    /// The KD weight `a` at `(epoch, fraction)`.
    pub fn kd_alpha(&self, epoch: usize, fraction: f64) -> f64 {
        if epoch >= self.distill_epochs {
            return 0.0;
        }
        let p = Self::position(epoch, fraction);
        let w = self.warmup_epochs;
        if p < w {
            0.0
        } else if p < w + self.ramp_epochs {
            self.kd_alpha * (p - w) / self.ramp_epochs
        } else {
            self.kd_alpha
        }
    }

    /// The temperature(s) at `(epoch, fraction)`: one, or several whose KD terms are averaged.
    pub fn temperatures(&self, epoch: usize, fraction: f64) -> Vec<f64> {
        match &self.temperature {
            TemperatureSchedule::Constant(ts) => ts.clone(),
            TemperatureSchedule::Linear { start, end } => {
                let progress = if self.distill_epochs == 0 {
                    0.0
                } else {
                    (Self::position(epoch, fraction) / self.distill_epochs as f64).min(1.0)
                };
                vec![start + (end - start) * progress]
            }
        }
    }

    /// The student recipe: `distil` for the distillation epochs, then `hard` (only when
    /// `hard_epochs > 0`).
    pub fn phases(&self) -> Vec<Phase> {
        let mut phases = vec![Phase {
            name: "distil",
            first_epoch: 0,
            epochs: self.distill_epochs,
            distil: true,
            lr: None,
        }];
        if self.hard_epochs > 0 {
            phases.push(Phase {
                name: "hard",
                first_epoch: self.distill_epochs,
                epochs: self.hard_epochs,
                distil: false,
                lr: self.hard_lr,
            });
        }
        phases
    }
}
