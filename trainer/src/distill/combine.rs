//! [`KdLoss`]: hard loss and distillation term combined, with schedule, confidence weighting and
//! domain mask (the picture in [`crate::distill`]).

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::config::Distillation;
use crate::data::Mode;
use crate::train::objective::hard_loss;

use super::loss::{check_pair, kl_div, soft_bce, Reduction};
use super::schedule::KdSchedule;
use super::weighting::{confidence_stats, teacher_confidence, Confidence};

/// The per-step statistics of [`KdLoss::compute`] (the seed loss module's log line).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KdStats {
    /// The loss `L = (1 - a) * ce + a * kd`.
    pub total: f64,
    /// The hard loss.
    pub ce: f64,
    /// The distillation term: `(1/N) sum_i w_i m_i mean_T T^2 KD_i(T)` (T² included).
    pub kd: f64,
    /// The KD weight `a` (scheduled `kd_alpha`).
    pub kd_weight: f64,
    /// The temperature (the mean when several are used at once).
    pub temperature: f64,
    /// Fraction of the batch whose KD weight `w_i m_i` is > 0.
    pub coverage: f64,
    /// Mean teacher confidence over the batch.
    pub mean_conf: f64,
    /// Lowest teacher confidence in the batch.
    pub min_conf: f64,
    /// Highest teacher confidence in the batch.
    pub max_conf: f64,
}

/// `L = (1 - a) * CE + a * (1/N) sum_i w_i m_i mean_T T^2 KD_i(T)`.
///
/// `a = kd_alpha(epoch, fraction)` from the [`KdSchedule`]; `kd_alpha` always weighs the KD
/// term (`distillation.alpha` is an alias with that meaning). `w_i` is the confidence weight,
/// `m_i` the domain mask (1 when absent); masked-out samples still count in `N` (PyTorch's
/// `batchmean` over the whole batch), so the term shrinks with the coverage. `CE` is
/// [`crate::train::objective::hard_loss`], `KD_i` the per-sample KL summed over classes (multi-class) or the
/// soft BCE averaged over classes (multi-label, on the scale of the hard BCE).
#[derive(Clone, Debug, PartialEq)]
pub struct KdLoss {
    mode: Mode,
    schedule: KdSchedule,
    confidence: Confidence,
}

impl KdLoss {
    /// From the validated `distillation` section; `distill_epochs` = the student's distillation
    /// epochs (`epochs_head + epochs_finetune`; the recipe's hard-label epochs follow them).
    pub fn from_config(d: &Distillation, mode: Mode, distill_epochs: usize) -> Result<KdLoss> {
        d.validate()?;
        Ok(KdLoss {
            mode,
            schedule: KdSchedule::from_config(d, distill_epochs),
            confidence: Confidence::from_config(d),
        })
    }

    /// The schedule (KD weight, temperatures, phases).
    pub fn schedule(&self) -> &KdSchedule {
        &self.schedule
    }

    /// The per-sample KD term `[N]` at the temperatures `temps`: `mean_T T^2 KD_i(T)`, unweighted.
    pub fn per_sample(&self, student: &Tensor, teacher: &Tensor, temps: &[f64]) -> Result<Tensor> {
        ensure!(!temps.is_empty(), "distillation: no temperature");
        let mut acc: Option<Tensor> = None;
        for &t in temps {
            let e =
                match self.mode {
                    Mode::MultiClass => kl_div(student, teacher, t, Reduction::None)?
                        .sum_dim_intlist([-1i64].as_slice(), false, None::<Kind>),
                    Mode::MultiLabel => soft_bce(student, teacher, t, Reduction::None)?.mean_dim(
                        [-1i64].as_slice(),
                        false,
                        None::<Kind>,
                    ),
                } * (t * t);
            acc = Some(match acc {
                Some(a) => a + e,
                None => e,
            });
        }
        Ok(acc.expect("temps is non-empty") / temps.len() as f64)
    }

    /// The loss (a scalar with the student's gradient) and its statistics at `(epoch,
    /// epoch_frac)`. `student_logits`, `teacher_logits` and `targets` are `[N, C]` (targets
    /// one-/multi-hot as in `Batch::targets`); `kd_mask` is an optional `[N]` domain mask (non-zero
    /// = KD applies), e.g. from [`super::weighting::domain_mask`]; it is moved to the logits'
    /// device.
    pub fn compute(
        &self,
        student_logits: &Tensor,
        teacher_logits: &Tensor,
        targets: &Tensor,
        kd_mask: Option<&Tensor>,
        epoch: usize,
        epoch_frac: f64,
    ) -> Result<(Tensor, KdStats)> {
        ensure!(
            (0.0..=1.0).contains(&epoch_frac),
            "epoch fraction: must be in [0, 1], got {epoch_frac}"
        );
        let temps = self.schedule.temperatures(epoch, epoch_frac);
        ensure!(!temps.is_empty(), "distillation: no temperature");
        check_pair(student_logits, teacher_logits, temps[0])?;
        let n = student_logits.size()[0];
        ensure!(
            targets.size() == student_logits.size(),
            "targets: shape {:?} differs from the logits' {:?}",
            targets.size(),
            student_logits.size()
        );
        let a = self.schedule.kd_alpha(epoch, epoch_frac);

        let ce = hard_loss(self.mode, student_logits, targets);
        let conf = teacher_confidence(teacher_logits, self.mode)?;
        let conf_weights = self.confidence.weights(&conf);
        let weights = match kd_mask {
            None => conf_weights,
            Some(m) => {
                ensure!(
                    m.size() == [n],
                    "kd mask: expected [{n}], got {:?}",
                    m.size()
                );
                let m = m
                    .to_device(conf_weights.device())
                    .ne(0.0)
                    .to_kind(conf_weights.kind());
                conf_weights * m
            }
        };
        let per_sample = self
            .per_sample(student_logits, teacher_logits, &temps)
            .context("distillation term")?;
        let kd = (per_sample * &weights).sum(weights.kind()) / n as f64;
        let ce = ce.to_kind(kd.kind());
        let total = &ce * (1.0 - a) + &kd * a;

        let c = confidence_stats(&conf, &weights);
        let stats = KdStats {
            total: total.double_value(&[]),
            ce: ce.double_value(&[]),
            kd: kd.double_value(&[]),
            kd_weight: a,
            temperature: temps.iter().sum::<f64>() / temps.len() as f64,
            coverage: c.coverage,
            mean_conf: c.mean,
            min_conf: c.min,
            max_conf: c.max,
        };
        Ok((total, stats))
    }
}
