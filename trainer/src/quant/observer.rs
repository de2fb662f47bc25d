//! Activation range observers: the running `[min, max]` of one activation tensor, kept as two
//! scalar buffers in the network's `VarStore` (`<tensor>.obs.min`, `<tensor>.obs.max`), so a
//! checkpoint holds them and a resumed QAT run continues with the same ranges.
//!
//! Two update rules:
//! * calibration (post-training quantisation): the plain minimum and maximum over every batch;
//! * QAT: an exponential moving average of each batch's minimum and maximum,
//!   `min += momentum * (batch_min - min)` (PyTorch's `MovingAverageMinMaxObserver`), the first
//!   batch after a reset taking the batch's values.
//!
//! An unobserved (reset) range is `[+inf, -inf]`.

use anyhow::{bail, Result};
use tch::{nn, Kind, Tensor};

use super::fake_quant::activation_qparams;
use super::graph::QParams;

/// How a forward pass updates an observer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// Leave the range as it is.
    Frozen,
    /// Widen the range to the batch's minimum and maximum (calibration).
    MinMax,
    /// Move the range towards the batch's by `momentum` (QAT).
    Ema {
        /// Averaging constant in `(0, 1]`.
        momentum: f64,
    },
}

/// The range of one activation tensor.
#[derive(Debug)]
pub struct Observer {
    /// Name of the observed tensor (errors and the integer graph use it).
    pub name: String,
    min: Tensor,
    max: Tensor,
}

impl Observer {
    /// Creates the buffers `obs.min` and `obs.max` under `p` (the tensor's path), reset.
    pub fn new(p: &nn::Path, name: &str) -> Observer {
        let o = p / "obs";
        let obs = Observer {
            name: name.to_string(),
            min: o.zeros_no_train("min", &[]),
            max: o.zeros_no_train("max", &[]),
        };
        obs.reset();
        obs
    }

    /// Forgets the range (`[+inf, -inf]`).
    pub fn reset(&self) {
        tch::no_grad(|| {
            let _ = self.min.shallow_clone().fill_(f64::INFINITY);
            let _ = self.max.shallow_clone().fill_(f64::NEG_INFINITY);
        });
    }

    /// The current range `(min, max)`.
    pub fn range(&self) -> (f32, f32) {
        (
            self.min.double_value(&[]) as f32,
            self.max.double_value(&[]) as f32,
        )
    }

    /// Whether a batch has been observed since the last reset.
    pub fn is_observed(&self) -> bool {
        let (lo, hi) = self.range();
        lo.is_finite() && hi.is_finite() && lo <= hi
    }

    /// Sets the range (tests and hand-made graphs).
    pub fn set_range(&self, min: f32, max: f32) {
        tch::no_grad(|| {
            let _ = self.min.shallow_clone().fill_(f64::from(min));
            let _ = self.max.shallow_clone().fill_(f64::from(max));
        });
    }

    /// Updates the range with the batch `x` by `rule`.
    pub fn update(&self, x: &Tensor, rule: Update) {
        if rule == Update::Frozen || x.numel() == 0 {
            return;
        }
        let x = x.detach().to_kind(Kind::Float);
        let (bmin, bmax) = (x.min().double_value(&[]), x.max().double_value(&[]));
        let (lo, hi) = self.range();
        let (lo, hi) = (f64::from(lo), f64::from(hi));
        let (nlo, nhi) = match rule {
            Update::Frozen => return,
            Update::MinMax => (lo.min(bmin), hi.max(bmax)),
            Update::Ema { momentum } if lo.is_finite() && hi.is_finite() => {
                (lo + momentum * (bmin - lo), hi + momentum * (bmax - hi))
            }
            Update::Ema { .. } => (bmin, bmax),
        };
        self.set_range(nlo as f32, nhi as f32);
    }

    /// The int8 parameters of the current range ([`activation_qparams`]); an unobserved range
    /// gives those of `[0, 0]`.
    pub fn qparams(&self) -> QParams {
        let (lo, hi) = self.range();
        if lo <= hi {
            activation_qparams(lo, hi)
        } else {
            activation_qparams(0.0, 0.0)
        }
    }

    /// [`Observer::qparams`], or an error naming the tensor when no batch was observed or the
    /// range is not finite.
    pub fn checked_qparams(&self) -> Result<QParams> {
        if !self.is_observed() {
            let (lo, hi) = self.range();
            bail!(
                "activation {}: range [{lo}, {hi}] was never observed or is not finite; \
                 calibrate the network first",
                self.name
            );
        }
        Ok(self.qparams())
    }
}
