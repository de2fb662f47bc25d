//! Learning-rate schedules with linear warm-up, evaluated per optimisation step.
//!
//! A [`Schedule`] belongs to one training phase: it knows the phase's base learning rate, its
//! length in epochs and the steps per epoch, and gives the learning rate for `(epoch, step)`
//! (both 0-based within the phase). Definitions, with `W` warm-up steps, `s` the step index in
//! the phase (`epoch * steps_per_epoch + step`) and `base` the phase's learning rate:
//!
//! - **Warm-up**: for `s < W`, `lr = base_schedule(s) * (s + 1) / W` (linear ramp; `W` is
//!   `warmup_epochs * steps_per_epoch`, rounded).
//! - **Constant**: `lr = base`.
//! - **Cosine** (SGDR, with warm restarts): time `t = (s - W) / steps_per_epoch` epochs after the
//!   warm-up; cycle `i` lasts `T_i = T_0 * t_mult^i` epochs (`T_0 = 0` means one cycle spanning the
//!   rest of the phase); within a cycle at `t_cur`,
//!   `lr = min + (base - min) * (1 + cos(pi * t_cur / T_i)) / 2` with `min = base * min_lr_ratio`.
//! - **Step**: `lr = base * gamma^floor(epoch / step_epochs)`.
//! - **Plateau**: `lr = base * scale`; at each epoch end the monitored metric is reported
//!   ([`Schedule::end_epoch`]); after more than `patience` consecutive epochs without an improvement
//!   larger than `threshold`, `scale *= factor` (not below `min_lr_ratio`) and the count restarts.

use std::f64::consts::PI;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The schedule's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The base learning rate throughout.
    Constant,
    /// Cosine annealing with warm restarts.
    Cosine {
        /// First cycle length in epochs; 0 = one cycle over the rest of the phase.
        t0_epochs: f64,
        /// Growth factor of successive cycles (>= 1).
        t_mult: f64,
        /// Floor of the cosine as a fraction of the base rate.
        min_lr_ratio: f64,
    },
    /// Multiply by `gamma` every `step_epochs` epochs.
    Step {
        /// Epochs between decays (>= 1).
        step_epochs: usize,
        /// Decay factor in (0, 1].
        gamma: f64,
    },
    /// Reduce on plateau of the monitored metric.
    Plateau {
        /// Decay factor in (0, 1).
        factor: f64,
        /// Epochs without improvement tolerated before a decay.
        patience: usize,
        /// Smallest change that counts as an improvement.
        threshold: f64,
        /// Floor as a fraction of the base rate.
        min_lr_ratio: f64,
    },
}

/// A schedule's shape plus its warm-up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduleSpec {
    /// The shape after warm-up.
    pub kind: ScheduleKind,
    /// Linear warm-up length in epochs (may be fractional; 0 = none).
    pub warmup_epochs: f64,
}

impl ScheduleSpec {
    /// Range checks; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs.is_finite()) {
            bail!(
                "schedule.warmup_epochs: must be >= 0, got {}",
                self.warmup_epochs
            );
        }
        match self.kind {
            ScheduleKind::Constant => {}
            ScheduleKind::Cosine {
                t0_epochs,
                t_mult,
                min_lr_ratio,
            } => {
                if !(t0_epochs >= 0.0 && t0_epochs.is_finite()) {
                    bail!("schedule.t0_epochs: must be >= 0, got {t0_epochs}");
                }
                if !(1.0..=16.0).contains(&t_mult) {
                    bail!("schedule.t_mult: must be in [1, 16], got {t_mult}");
                }
                if !(0.0..=1.0).contains(&min_lr_ratio) {
                    bail!("schedule.min_lr_ratio: must be in [0, 1], got {min_lr_ratio}");
                }
            }
            ScheduleKind::Step { step_epochs, gamma } => {
                if step_epochs == 0 {
                    bail!("schedule.step_epochs: must be >= 1");
                }
                if !(gamma > 0.0 && gamma <= 1.0) {
                    bail!("schedule.gamma: must be in (0, 1], got {gamma}");
                }
            }
            ScheduleKind::Plateau {
                factor,
                threshold,
                min_lr_ratio,
                ..
            } => {
                if !(factor > 0.0 && factor < 1.0) {
                    bail!("schedule.factor: must be in (0, 1), got {factor}");
                }
                if !(threshold >= 0.0 && threshold.is_finite()) {
                    bail!("schedule.threshold: must be >= 0, got {threshold}");
                }
                if !(0.0..=1.0).contains(&min_lr_ratio) {
                    bail!("schedule.min_lr_ratio: must be in [0, 1], got {min_lr_ratio}");
                }
            }
        }
        Ok(())
    }
}

/// The mutable part of a schedule, saved in checkpoints (only the plateau schedule has any).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Current multiplier of the base rate (plateau); 1 at the start.
    pub scale: f64,
    /// Best metric seen so far (plateau).
    pub best: Option<f64>,
    /// Consecutive epochs without improvement (plateau).
    pub bad_epochs: usize,
}

/// One phase's schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    spec: ScheduleSpec,
    base_lr: f64,
    epochs: usize,
    steps_per_epoch: usize,
    /// Saved and restored with checkpoints.
    pub state: ScheduleState,
}

impl Schedule {
    /// A schedule for a phase of `epochs` epochs of `steps_per_epoch` steps at `base_lr`.
    pub fn new(
        spec: ScheduleSpec,
        base_lr: f64,
        epochs: usize,
        steps_per_epoch: usize,
    ) -> Result<Schedule> {
        spec.validate()?;
        if steps_per_epoch == 0 {
            bail!("schedule: an epoch has no step (empty training source)");
        }
        Ok(Schedule {
            spec,
            base_lr,
            epochs,
            steps_per_epoch,
            state: ScheduleState {
                scale: 1.0,
                best: None,
                bad_epochs: 0,
            },
        })
    }

    fn warmup_steps(&self) -> usize {
        (self.spec.warmup_epochs * self.steps_per_epoch as f64).round() as usize
    }

    /// Learning rate of step `step` of epoch `epoch` (both 0-based within the phase).
    pub fn lr(&self, epoch: usize, step: usize) -> f64 {
        let s = epoch * self.steps_per_epoch + step;
        let w = self.warmup_steps();
        let base = self.base_lr;
        let shaped = match self.spec.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Step { step_epochs, gamma } => {
                base * gamma.powi((epoch / step_epochs) as i32)
            }
            ScheduleKind::Plateau { .. } => base * self.state.scale,
            ScheduleKind::Cosine {
                t0_epochs,
                t_mult,
                min_lr_ratio,
            } => {
                let t = s.saturating_sub(w) as f64 / self.steps_per_epoch as f64;
                let total = self.epochs as f64 - w as f64 / self.steps_per_epoch as f64;
                let mut period = if t0_epochs > 0.0 {
                    t0_epochs
                } else {
                    total.max(1.0 / self.steps_per_epoch as f64)
                };
                let mut t_cur = t;
                while t_cur >= period {
                    t_cur -= period;
                    period *= t_mult;
                }
                let min = base * min_lr_ratio;
                min + (base - min) * (1.0 + (PI * t_cur / period).cos()) / 2.0
            }
        };
        if s < w {
            shaped * (s + 1) as f64 / w as f64
        } else {
            shaped
        }
    }

    /// Reports the monitored metric at the end of an epoch (plateau bookkeeping; a no-op for the
    /// other shapes).
    pub fn end_epoch(&mut self, metric: f64, higher_is_better: bool) {
        let ScheduleKind::Plateau {
            factor,
            patience,
            threshold,
            min_lr_ratio,
        } = self.spec.kind
        else {
            return;
        };
        let st = &mut self.state;
        let improved = match st.best {
            None => true,
            Some(b) if higher_is_better => metric > b + threshold,
            Some(b) => metric < b - threshold,
        };
        if improved {
            st.best = Some(metric);
            st.bad_epochs = 0;
        } else {
            st.bad_epochs += 1;
            if st.bad_epochs > patience {
                st.scale = (st.scale * factor).max(min_lr_ratio);
                st.bad_epochs = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn warmup_ramps_linearly_then_hands_over() {
        // 2 steps/epoch, 1 warm-up epoch = 2 steps: 0.5 * base, then 1.0 * base.
        let s = Schedule::new(
            ScheduleSpec {
                kind: ScheduleKind::Constant,
                warmup_epochs: 1.0,
            },
            0.1,
            5,
            2,
        )
        .unwrap();
        close(s.lr(0, 0), 0.05);
        close(s.lr(0, 1), 0.1);
        close(s.lr(1, 0), 0.1);
    }

    #[test]
    fn cosine_single_cycle_and_warm_restarts() {
        // One cycle over 4 epochs, 1 step/epoch: base * (1 + cos(pi * e / 4)) / 2.
        let spec = |t0, t_mult| ScheduleSpec {
            kind: ScheduleKind::Cosine {
                t0_epochs: t0,
                t_mult,
                min_lr_ratio: 0.0,
            },
            warmup_epochs: 0.0,
        };
        let s = Schedule::new(spec(0.0, 1.0), 1.0, 4, 1).unwrap();
        close(s.lr(0, 0), 1.0);
        close(s.lr(1, 0), (1.0 + (PI / 4.0).cos()) / 2.0); // 0.853553...
        close(s.lr(2, 0), 0.5);
        // Restarts: T0 = 2, t_mult = 2: cycles [0,2), [2,6); epoch 2 restarts at 1.0,
        // epoch 4 is halfway through a 4-epoch cycle: 0.5.
        let s = Schedule::new(spec(2.0, 2.0), 1.0, 8, 1).unwrap();
        close(s.lr(1, 0), 0.5);
        close(s.lr(2, 0), 1.0);
        close(s.lr(4, 0), 0.5);
        close(s.lr(6, 0), 1.0);
        // Per-step granularity: 2 steps per epoch, halfway through epoch 1 of a 4-epoch cycle is
        // t = 1.5 epochs: (1 + cos(1.5 pi / 4)) / 2.
        let s = Schedule::new(spec(0.0, 1.0), 1.0, 4, 2).unwrap();
        close(s.lr(1, 1), (1.0 + (1.5 * PI / 4.0).cos()) / 2.0);
    }

    #[test]
    fn step_decay() {
        let s = Schedule::new(
            ScheduleSpec {
                kind: ScheduleKind::Step {
                    step_epochs: 2,
                    gamma: 0.1,
                },
                warmup_epochs: 0.0,
            },
            1.0,
            6,
            3,
        )
        .unwrap();
        close(s.lr(1, 2), 1.0);
        close(s.lr(2, 0), 0.1);
        close(s.lr(5, 1), 0.1 * 0.1);
    }

    #[test]
    fn plateau_decays_after_patience_and_respects_the_floor() {
        let mut s = Schedule::new(
            ScheduleSpec {
                kind: ScheduleKind::Plateau {
                    factor: 0.5,
                    patience: 1,
                    threshold: 0.01,
                    min_lr_ratio: 0.2,
                },
                warmup_epochs: 0.0,
            },
            1.0,
            10,
            1,
        )
        .unwrap();
        // Loss (lower is better): 1.0 (best), 0.995 (not better by > 0.01: bad 1), 0.99 (bad 2 >
        // patience 1: scale 0.5), 0.5 (better), 0.6, 0.6 (scale 0.25), 0.6, 0.6 (0.2 floor).
        let mut seen = Vec::new();
        for m in [1.0, 0.995, 0.99, 0.5, 0.6, 0.6, 0.6, 0.6] {
            s.end_epoch(m, false);
            seen.push(s.lr(0, 0));
        }
        assert_eq!(seen, [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2]);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let e = ScheduleSpec {
            kind: ScheduleKind::Step {
                step_epochs: 0,
                gamma: 0.5,
            },
            warmup_epochs: 0.0,
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("step_epochs"), "{e}");
    }
}
