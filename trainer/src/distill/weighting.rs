//! Per-sample weights of the KD term: the teacher's confidence and the domain mask.
//!
//! **Confidence** is measured on the teacher's logits at `T = 1`: for multi-class the maximum
//! softmax probability `p_max`; for multi-label, where the largest sigmoid says nothing about an
//! image with no positive class, the mean over classes of `max(p, 1 - p)` (how sure the teacher
//! is of each yes/no decision). [`Confidence`] turns it into a weight: `none` = 1, `pmax` = the
//! confidence, `threshold` = 1 when the confidence is at least `t`, else 0.
//!
//! **Domain mask**: 1 for samples whose `domain` attribute (see [`crate::data::meta`]) is one of
//! `distillation.domains`, 0 for the others (including samples with no domain); no mask when the
//! list is empty.

use anyhow::{bail, ensure, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::config::{ConfidenceName, Distillation};
use crate::data::{Entry, Mode};

use super::loss::work_kind;

/// How the teacher's confidence weights a sample's KD term.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Confidence {
    /// Weight 1.
    None,
    /// Weight = confidence.
    Pmax,
    /// Weight 1 when confidence >= the threshold, else 0.
    Threshold(f64),
}

impl Confidence {
    /// From `distillation.confidence` and `distillation.confidence_threshold`.
    pub fn from_config(d: &Distillation) -> Confidence {
        match d.confidence {
            ConfidenceName::None => Confidence::None,
            ConfidenceName::Pmax => Confidence::Pmax,
            ConfidenceName::Threshold => Confidence::Threshold(d.confidence_threshold),
        }
    }

    /// The `[N]` weights for the confidences `[N]` (same kind and device).
    pub fn weights(&self, confidence: &Tensor) -> Tensor {
        match *self {
            Confidence::None => confidence.ones_like(),
            Confidence::Pmax => confidence.shallow_clone(),
            Confidence::Threshold(t) => confidence.ge(t).to_kind(confidence.kind()),
        }
    }
}

/// The teacher's per-sample confidence `[N]` at `T = 1` (see the module docs), detached.
pub fn teacher_confidence(teacher: &Tensor, mode: Mode) -> Result<Tensor> {
    let size = teacher.size();
    ensure!(
        size.len() == 2 && size[0] >= 1 && size[1] >= 1,
        "teacher logits: expected [N, C] with N, C >= 1, got {size:?}"
    );
    let kind = work_kind(teacher);
    let t = teacher.detach().to_kind(kind);
    Ok(match mode {
        Mode::MultiClass => t.softmax(-1, kind).amax([-1i64].as_slice(), false),
        Mode::MultiLabel => {
            let p = t.sigmoid();
            let sure = p.maximum(&(p.ones_like() - &p));
            sure.mean_dim([-1i64].as_slice(), false, kind)
        }
    })
}

/// Per-batch statistics of the weighting (all samples of the batch count).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ConfidenceStats {
    /// Fraction of samples whose KD weight is > 0.
    pub coverage: f64,
    /// Mean teacher confidence.
    pub mean: f64,
    /// Lowest teacher confidence.
    pub min: f64,
    /// Highest teacher confidence.
    pub max: f64,
}

/// Statistics of the confidences `[N]` and the final KD weights `[N]`.
pub fn confidence_stats(confidence: &Tensor, weights: &Tensor) -> ConfidenceStats {
    let c = confidence.to_kind(Kind::Double);
    ConfidenceStats {
        coverage: weights
            .gt(0.0)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]),
        mean: c.mean(Kind::Double).double_value(&[]),
        min: c.min().double_value(&[]),
        max: c.max().double_value(&[]),
    }
}

/// The `[N]` float32 domain mask (CPU) of the batch whose images are `indices` (positions in
/// `entries`, the split list named `list_file`); `None` when `domains` is empty (KD everywhere).
pub fn domain_mask(
    domains: &[String],
    entries: &[Entry],
    indices: &[usize],
    list_file: &str,
) -> Result<Option<Tensor>> {
    if domains.is_empty() {
        return Ok(None);
    }
    let mut mask = Vec::with_capacity(indices.len());
    for &i in indices {
        let Some(e) = entries.get(i) else {
            bail!(
                "{list_file}: batch index {i} is past the {} images of the list",
                entries.len()
            );
        };
        let selected = e.attrs.domain.as_ref().is_some_and(|d| domains.contains(d));
        mask.push(if selected { 1f32 } else { 0.0 });
    }
    Ok(Some(Tensor::from_slice(&mask)))
}
