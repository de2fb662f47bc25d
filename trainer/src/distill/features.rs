//! Feature matching: the student imitates the teacher's intermediate activations.
//!
//! For each pair of named taps (`Classifier::forward_features`: `strideN` `[N, C, H, W]` or
//! `pooled` `[N, C]`, taken as `[N, C, 1, 1]`):
//!
//! 1. where the channel counts differ, a learned 1x1 convolution (with bias) maps the student's
//!    channels to the teacher's; its variables are `pair{i}.weight` / `pair{i}.bias` under the
//!    var-store path given to [`FeatureMatch::new`], so they train (and checkpoint) with the
//!    student;
//! 2. both maps are average-pooled (adaptive) to the smaller height and the smaller width;
//! 3. the term is the MSE over all elements against the detached teacher map.
//!
//! The loss is the mean of the pairs' terms; the caller adds it with `distillation.feature_weight`.

use anyhow::{ensure, Context, Result};
use tch::{nn, Tensor};

use crate::config::FeaturePair;

use super::loss::work_kind;

/// One matched pair with its channel counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapPair {
    /// Student tap name.
    pub student: String,
    /// Channels of the student tap.
    pub student_channels: i64,
    /// Teacher tap name.
    pub teacher: String,
    /// Channels of the teacher tap.
    pub teacher_channels: i64,
}

/// The feature-matching term with its adapters.
#[derive(Debug)]
pub struct FeatureMatch {
    pairs: Vec<(TapPair, Option<nn::Conv2D>)>,
}

/// The tap called `name`, or an error listing the taps there are.
fn tap<'a>(taps: &'a [(String, Tensor)], name: &str, whose: &str) -> Result<&'a Tensor> {
    taps.iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .with_context(|| {
            let names: Vec<&str> = taps.iter().map(|(n, _)| n.as_str()).collect();
            format!("{whose} tap {name:?}: not among the network's taps {names:?}")
        })
}

/// `[N, C, H, W]` as is, `[N, C]` as `[N, C, 1, 1]`; anything else is an error naming the tap.
fn as_map(t: &Tensor, whose: &str, name: &str) -> Result<Tensor> {
    match t.size().len() {
        4 => Ok(t.shallow_clone()),
        2 => Ok(t.unsqueeze(-1).unsqueeze(-1)),
        _ => anyhow::bail!(
            "{whose} tap {name:?}: expected [N, C, H, W] or [N, C], got {:?}",
            t.size()
        ),
    }
}

impl FeatureMatch {
    /// Creates the adapters (under `path`) of the pairs whose channel counts differ.
    pub fn new(path: &nn::Path, pairs: &[TapPair]) -> Result<FeatureMatch> {
        ensure!(!pairs.is_empty(), "feature matching: no tap pair given");
        let mut out = Vec::with_capacity(pairs.len());
        for (i, p) in pairs.iter().enumerate() {
            ensure!(
                p.student_channels >= 1 && p.teacher_channels >= 1,
                "feature pair {i} ({} -> {}): channel counts must be >= 1, got {} and {}",
                p.student,
                p.teacher,
                p.student_channels,
                p.teacher_channels
            );
            let adapter = (p.student_channels != p.teacher_channels).then(|| {
                nn::conv2d(
                    path / format!("pair{i}"),
                    p.student_channels,
                    p.teacher_channels,
                    1,
                    Default::default(),
                )
            });
            out.push((p.clone(), adapter));
        }
        Ok(FeatureMatch { pairs: out })
    }

    /// [`FeatureMatch::new`] for the configured `pairs`, reading the channel counts from one
    /// forward pass's taps of each network (dimension 1).
    pub fn from_taps(
        path: &nn::Path,
        pairs: &[FeaturePair],
        student_taps: &[(String, Tensor)],
        teacher_taps: &[(String, Tensor)],
    ) -> Result<FeatureMatch> {
        let mut resolved = Vec::with_capacity(pairs.len());
        for (i, p) in pairs.iter().enumerate() {
            let key = format!("distillation.features[{i}]");
            let s = tap(student_taps, &p.student, "student").context(key.clone())?;
            let t = tap(teacher_taps, &p.teacher, "teacher").context(key.clone())?;
            let s = as_map(s, "student", &p.student).context(key.clone())?;
            let t = as_map(t, "teacher", &p.teacher).context(key)?;
            resolved.push(TapPair {
                student: p.student.clone(),
                student_channels: s.size()[1],
                teacher: p.teacher.clone(),
                teacher_channels: t.size()[1],
            });
        }
        FeatureMatch::new(path, &resolved)
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> impl Iterator<Item = &TapPair> {
        self.pairs.iter().map(|(p, _)| p)
    }

    /// The mean over pairs of the MSE between the adapted, pooled student map and the detached,
    /// pooled teacher map (a scalar).
    pub fn loss(
        &self,
        student_taps: &[(String, Tensor)],
        teacher_taps: &[(String, Tensor)],
    ) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (i, (p, adapter)) in self.pairs.iter().enumerate() {
            let ctx = || format!("feature pair {i} ({} -> {})", p.student, p.teacher);
            let s = as_map(
                tap(student_taps, &p.student, "student")?,
                "student",
                &p.student,
            )
            .with_context(ctx)?;
            let t = as_map(
                tap(teacher_taps, &p.teacher, "teacher")?,
                "teacher",
                &p.teacher,
            )
            .with_context(ctx)?;
            let (ss, ts) = (s.size(), t.size());
            ensure!(
                ss[0] == ts[0],
                "{}: batch sizes differ, student {ss:?}, teacher {ts:?}",
                ctx()
            );
            ensure!(
                ss[1] == p.student_channels && ts[1] == p.teacher_channels,
                "{}: expected {} student and {} teacher channels, got {ss:?} and {ts:?}",
                ctx(),
                p.student_channels,
                p.teacher_channels
            );
            let kind = work_kind(&s);
            let mut s = s.to_kind(kind);
            if let Some(conv) = adapter {
                s = s.apply(conv);
            }
            let t = t.detach().to_kind(kind);
            let (h, w) = (ss[2].min(ts[2]), ss[3].min(ts[3]));
            let pool = |x: Tensor| {
                let sz = x.size();
                if sz[2] == h && sz[3] == w {
                    x
                } else {
                    x.adaptive_avg_pool2d([h, w])
                }
            };
            let term = pool(s).mse_loss(&pool(t), tch::Reduction::Mean);
            total = Some(match total {
                Some(acc) => acc + term,
                None => term,
            });
        }
        let total = total.context("feature matching: no tap pair")?;
        Ok(total / self.pairs.len() as f64)
    }
}
