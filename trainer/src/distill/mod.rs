//! Knowledge distillation: the student learns from the labels and from the teacher's softened
//! outputs.
//!
//! ```text
//!  images ─┬─> student ─ s ─┬─> CE(s, labels) ─────────────────────────────> (1 - a) ·  ┐
//!          │                └─> s/T ─┐                                                 ├─> L
//!          └─> teacher ─ t ─> t/T ───┴─> T² · KD_i ─> · w_i · m_i ─> Σ_i / N ─> a ·    ┘
//!                       └─> p_max(t) ─> w_i (confidence)        m_i (domain mask)
//!
//!  L = (1 - a) · CE + a · (1/N) Σ_i w_i m_i · mean_T T² KD_i(T)        a = kd_alpha(epoch)
//! ```
//!
//! `KD_i` is `KL(softmax(t_i/T) || softmax(s_i/T))` for multi-class and the mean over classes of
//! `BCE(sigmoid(s_i/T), sigmoid(t_i/T))` for multi-label; `T²` keeps its gradients on the
//! scale of the CE term's. `kd_alpha` always weighs the KD term (`alpha` in the seed YAML is an
//! alias with that meaning). An optional feature-matching term ([`features`]) is added by the
//! caller with its own weight.
//!
//! [`loss`]: the elementary losses; [`weighting`]: confidence weights and domain masks;
//! [`schedule`]: KD weight, temperature and the two-phase recipe as functions of the epoch;
//! [`features`]: feature matching; [`combine`]: [`KdLoss`], the combination above;
//! [`compare`]: the teacher / distilled / scratch comparison.
//!
//! [`objective`]: all of it as the training engine's objective ([`objective::KdObjective`]).
//!
//! [`teachers`]: the teacher set (weighted ensembles averaging logits or probabilities, region
//! filters, a learned gate, EMA self-distillation); [`cache`]: the teacher-logit cache that scales
//! out over shards; [`npz`]: its NumPy `.npz` exchange format.

pub mod cache;
pub mod combine;
pub mod compare;
pub mod features;
pub mod loss;
pub mod npz;
pub mod objective;
pub mod schedule;
pub mod teachers;
pub mod weighting;

pub use combine::{KdLoss, KdStats};
