//! The elementary distillation losses between student and teacher logits `[N, C]` at a
//! temperature `T`.
//!
//! All are computed from `log_softmax` / `binary_cross_entropy_with_logits`, never from `log` of a
//! probability, so logits of ±1e4 at any `T` in `[1, 20]` give finite values and gradients. The
//! teacher's logits are detached: no gradient flows into the teacher. Work happens in float64 when
//! the student's logits are float64, otherwise in float32 (half-precision logits are upcast).
//! None of them applies `T²`; [`crate::distill::KdLoss`] does.

use anyhow::{bail, ensure, Result};
use tch::{Kind, Tensor};

/// How the `[N, C]` element-wise loss is reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Sum over all elements divided by the batch size `N` (PyTorch's `batchmean`): the mean
    /// over samples of each sample's loss summed over classes; the mathematically correct KL.
    BatchMean,
    /// Mean over all `N * C` elements (PyTorch's `mean`; for KL it is `batchmean / C`).
    Mean,
    /// Sum over all elements.
    Sum,
    /// No reduction: the `[N, C]` element-wise loss.
    None,
}

impl Reduction {
    /// Reduces an element-wise loss `[N, C]`.
    pub fn apply(self, elements: Tensor) -> Tensor {
        let kind = elements.kind();
        match self {
            Reduction::BatchMean => {
                let n = elements.size()[0];
                elements.sum(kind) / n as f64
            }
            Reduction::Mean => elements.mean(kind),
            Reduction::Sum => elements.sum(kind),
            Reduction::None => elements,
        }
    }
}

/// The kind the losses are computed in: float64 stays float64, anything else becomes float32.
pub(crate) fn work_kind(t: &Tensor) -> Kind {
    if t.kind() == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// Checks that `student` and `teacher` are `[N, C]` with `N, C >= 1` and equal shapes, and that
/// `t` is a usable temperature.
pub(crate) fn check_pair(student: &Tensor, teacher: &Tensor, t: f64) -> Result<()> {
    let (s, te) = (student.size(), teacher.size());
    ensure!(
        s.len() == 2 && s[0] >= 1 && s[1] >= 1,
        "student logits: expected [N, C] with N, C >= 1, got {s:?}"
    );
    ensure!(
        te == s,
        "teacher logits: shape {te:?} differs from the student's {s:?}"
    );
    if !(t.is_finite() && t > 0.0) {
        bail!("temperature: must be a finite number > 0, got {t}");
    }
    Ok(())
}

/// `(student / T, detached teacher / T)` in the working kind.
fn softened(student: &Tensor, teacher: &Tensor, t: f64) -> Result<(Tensor, Tensor)> {
    check_pair(student, teacher, t)?;
    let kind = work_kind(student);
    Ok((
        student.to_kind(kind) / t,
        teacher.detach().to_kind(kind) / t,
    ))
}

/// `KL(p_teacher || p_student)` with `p = softmax(logits / T)`: element-wise
/// `p_t * (log p_t - log p_s)` (0 where `p_t` underflows to 0), then `reduction`. Without `T²`.
pub fn kl_div(student: &Tensor, teacher: &Tensor, t: f64, reduction: Reduction) -> Result<Tensor> {
    let (s, te) = softened(student, teacher, t)?;
    let kind = s.kind();
    let log_ps = s.log_softmax(-1, kind);
    let log_pt = te.log_softmax(-1, kind);
    Ok(reduction.apply(log_pt.exp() * (log_pt - log_ps)))
}

/// Soft cross-entropy `-sum_c p_t log p_s` with `p = softmax(logits / T)` (element-wise
/// `-p_t log p_s`, then `reduction`). Equals [`kl_div`] plus the teacher's entropy, so it has the
/// same gradient with respect to the student. Without `T²`.
pub fn soft_cross_entropy(
    student: &Tensor,
    teacher: &Tensor,
    t: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    let (s, te) = softened(student, teacher, t)?;
    let kind = s.kind();
    let log_ps = s.log_softmax(-1, kind);
    let pt = te.softmax(-1, kind);
    Ok(reduction.apply(-(pt * log_ps)))
}

/// Multi-label distillation: binary cross-entropy with logits of `student / T` against the soft
/// targets `sigmoid(teacher / T)`, element-wise, then `reduction`. Without `T²`.
pub fn soft_bce(
    student: &Tensor,
    teacher: &Tensor,
    t: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    let (s, te) = softened(student, teacher, t)?;
    let elements = s.binary_cross_entropy_with_logits::<Tensor>(
        &te.sigmoid(),
        None,
        None,
        tch::Reduction::None,
    );
    Ok(reduction.apply(elements))
}
