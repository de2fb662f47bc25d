//! [`KdObjective`]: the distillation loss as the training engine's [`Objective`].
//!
//! Per step: the student's logits (and its taps when a gate or feature matching needs them),
//! the teachers' `[N, K, C]` logits from the [`TeacherSource`], their ensemble (fixed weights
//! with region filters, or the learned [`Gate`]), the domain mask, then [`KdLoss::compute`]
//! plus the feature-matching term (times `distillation.feature_weight`) and the gate's own loss.
//! In the `hard` phase of the two-phase recipe only the hard loss is computed (no teacher runs).
//!
//! The objective's own variables (feature adapters, gate) live in its own var store with its own
//! Adam optimiser at the engine's learning rate; they, and the EMA teacher, are checkpointed
//! through [`Objective::state_tensors`] so an interrupted run resumes with them.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Tensor};

use super::cache::LogitCache;
use super::combine::{KdLoss, KdStats};
use super::features::FeatureMatch;
use super::teachers::{renormalize, Ema, Gate, StudentVars, TeacherInputs, TeacherSet};
use super::weighting::domain_mask;
use crate::config::Distillation;
use crate::data::{Dataset, Entry, Mode, Split};
use crate::models::Classifier;
use crate::pipeline::{Batch, Normalization};
use crate::train::objective::{hard_loss, Objective, StepContext, StepLoss};

/// Where the teachers' logits come from.
pub enum TeacherSource {
    /// The teacher set run on every batch (the student's augmented view).
    Live {
        /// The teachers.
        set: TeacherSet,
        /// Their input views of the training loader.
        inputs: TeacherInputs,
    },
    /// A verified logit cache of the set's teachers (un-augmented images); the set combines.
    Cached {
        /// The teachers (for weights, regions, averaging; their networks are not run).
        set: TeacherSet,
        /// The cache.
        cache: LogitCache,
    },
    /// A logit cache without the teachers that made it (`kdtrain logits import-npz`, teachers
    /// living elsewhere): checked against the data set only, combined with the weights and
    /// averaging recorded in it.
    CacheOnly {
        /// The cache.
        cache: LogitCache,
    },
    /// Self-distillation from an exponential moving average of the student.
    Ema {
        /// The averaged copy.
        ema: Ema,
        /// The student's variables the average follows.
        student: StudentVars,
    },
}

impl TeacherSource {
    /// A cache checked against the set and the data set's `train.txt` (a stale cache is
    /// refused) and against the training split's length.
    pub fn cached(set: TeacherSet, cache: LogitCache, ds: &Dataset) -> Result<TeacherSource> {
        cache.verify(&super::cache::data_hash(&ds.root)?, Some(&set.hash()))?;
        cache.check_complete()?;
        ensure!(
            cache.header().classes as usize == set.num_classes(),
            "{}: {} classes, the teachers {}",
            cache.path().display(),
            cache.header().classes,
            set.num_classes()
        );
        Ok(TeacherSource::Cached { set, cache })
    }

    /// A cache used without its teachers (see [`TeacherSource::CacheOnly`]).
    pub fn cache_only(cache: LogitCache, ds: &Dataset) -> Result<TeacherSource> {
        cache.verify(&super::cache::data_hash(&ds.root)?, None)?;
        cache.check_complete()?;
        ensure!(
            cache.header().classes as usize == ds.classes.len(),
            "{}: {} classes, the data set {}",
            cache.path().display(),
            cache.header().classes,
            ds.classes.len()
        );
        Ok(TeacherSource::CacheOnly { cache })
    }

    fn set(&self) -> Option<&TeacherSet> {
        match self {
            TeacherSource::Live { set, .. } | TeacherSource::Cached { set, .. } => Some(set),
            TeacherSource::Ema { .. } | TeacherSource::CacheOnly { .. } => None,
        }
    }

    /// `[N, K, C]` teacher logits of `batch` on `device`.
    fn logits(
        &self,
        batch: &Batch,
        images: &Tensor,
        epoch: usize,
        device: Device,
    ) -> Result<Tensor> {
        Ok(match self {
            TeacherSource::Live { set, inputs } => set.logits_for_batch(inputs, batch, epoch)?,
            TeacherSource::Cached { cache, .. } => cache.logits_for(&batch.indices)?,
            TeacherSource::CacheOnly { cache } => {
                let h = cache.header();
                let w: Vec<f64> = h.weights.iter().map(|&w| f64::from(w)).collect();
                let t = cache.logits_for(&batch.indices)?;
                super::teachers::combine(&t, &w, h.average, h.mode, None)?
                    .logits
                    .unsqueeze(1)
            }
            TeacherSource::Ema { ema, .. } => ema.logits(images).unsqueeze(1),
        }
        .to_device(device))
    }
}

/// The distillation objective (see the module docs).
pub struct KdObjective<'a> {
    student: &'a dyn Classifier,
    normalization: Normalization,
    loss: KdLoss,
    mode: Mode,
    source: TeacherSource,
    entries: Vec<Entry>,
    list_file: String,
    domains: Vec<String>,
    features: Option<FeatureMatch>,
    feature_weight: f64,
    gate: Option<Gate>,
    own: nn::VarStore,
    own_opt: Option<nn::Optimizer>,
}

impl<'a> KdObjective<'a> {
    /// The objective for `student` (normalising its inputs with `normalization`) trained on the
    /// training split of `ds`, distilling for `distill_epochs` epochs as `d` configures, from
    /// `source`. `probe` is one training batch (already normalised): feature matching reads the
    /// channel counts of both networks' taps from it.
    pub fn new(
        student: &'a dyn Classifier,
        d: &Distillation,
        ds: &Dataset,
        distill_epochs: usize,
        source: TeacherSource,
        probe: &Tensor,
    ) -> Result<KdObjective<'a>> {
        let loss = KdLoss::from_config(d, ds.mode, distill_epochs)?;
        let spec = student.spec();
        let device = probe.device();
        let own = nn::VarStore::new(device);
        let features = if d.features.is_empty() {
            None
        } else {
            let set = source.set().context(
                "distillation.features: feature matching needs a teacher set (not self-distillation)",
            )?;
            let teacher_images = feature_view(set, spec.normalization, spec.input_size, probe)?;
            let s_taps = tch::no_grad(|| student.forward_features(probe, false));
            let t_taps = set.member_features(0, &teacher_images)?;
            Some(FeatureMatch::from_taps(
                &(own.root() / "features"),
                &d.features,
                &s_taps,
                &t_taps,
            )?)
        };
        let gate = if d.gate {
            let set = source
                .set()
                .context("distillation.gate: needs a teacher set")?;
            ensure!(
                set.len() >= 2,
                "distillation.gate: needs at least two teachers, the set has {}",
                set.len()
            );
            let taps = tch::no_grad(|| student.forward_features(probe, false));
            let pooled = taps
                .iter()
                .find(|(n, _)| n == "pooled")
                .context("distillation.gate: the student has no `pooled` tap")?;
            Some(Gate::new(
                &(own.root() / "gate"),
                pooled.1.size()[1],
                set.len(),
            ))
        } else {
            None
        };
        let own_opt = if own.trainable_variables().is_empty() {
            None
        } else {
            Some(nn::Adam::default().build(&own, 1e-3)?)
        };
        Ok(KdObjective {
            student,
            normalization: spec.normalization,
            loss,
            mode: ds.mode,
            source,
            entries: ds.split(Split::Train).to_vec(),
            list_file: ds.root.join(Split::Train.file_name()).display().to_string(),
            domains: d.domains.clone(),
            features,
            feature_weight: d.feature_weight,
            gate,
            own,
            own_opt,
        })
    }

    /// The combined loss's schedule and settings.
    pub fn kd_loss(&self) -> &KdLoss {
        &self.loss
    }

    fn regions(&self, batch: &Batch) -> Vec<Option<String>> {
        batch
            .indices
            .iter()
            .map(|&i| self.entries.get(i).and_then(|e| e.attrs.region.clone()))
            .collect()
    }
}

/// The images teacher 0 reads for feature matching: the student's batch renormalised (the
/// teacher must read the student's input size).
fn feature_view(
    set: &TeacherSet,
    student_norm: Normalization,
    student_size: u32,
    images: &Tensor,
) -> Result<Tensor> {
    let m = &set.members()[0];
    if m.input_size != student_size {
        bail!(
            "distillation.features: teacher 0 ({}) reads {} px, the student {} px; feature \
             matching needs the same input size",
            m.description,
            m.input_size,
            student_size
        );
    }
    Ok(renormalize(images, &student_norm, &m.normalization))
}

fn stats_map(s: &KdStats) -> BTreeMap<String, f64> {
    [
        ("total", s.total),
        ("ce", s.ce),
        ("kd", s.kd),
        ("kd_weight", s.kd_weight),
        ("temperature", s.temperature),
        ("coverage", s.coverage),
        ("mean_conf", s.mean_conf),
        ("min_conf", s.min_conf),
        ("max_conf", s.max_conf),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Objective for KdObjective<'_> {
    fn train_loss(
        &mut self,
        _model: &dyn nn::ModuleT,
        batch: &Batch,
        images: &Tensor,
        targets: &Tensor,
        ctx: &StepContext,
    ) -> Result<StepLoss> {
        let distil = ctx.phase_name != "hard";
        let need_taps = distil && (self.features.is_some() || self.gate.is_some());
        let taps = if need_taps {
            self.student.forward_features(images, true)
        } else {
            vec![("logits".to_string(), self.student.forward_t(images, true))]
        };
        let tap = |name: &str| {
            taps.iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .with_context(|| format!("the student has no `{name}` tap"))
        };
        let logits = tap("logits")?;
        if !distil {
            let loss = hard_loss(self.mode, logits, targets);
            let ce = loss.double_value(&[]);
            let mut stats = BTreeMap::new();
            stats.insert("total".to_string(), ce);
            stats.insert("ce".to_string(), ce);
            stats.insert("kd_weight".to_string(), 0.0);
            return Ok(StepLoss { loss, stats });
        }
        let device = logits.device();
        let per_teacher = self.source.logits(batch, images, ctx.epoch, device)?;
        let regions = self.regions(batch);
        let mut gate_loss = None;
        let (teacher, valid) = match (&self.gate, self.source.set()) {
            (Some(gate), Some(set)) => {
                let mask = set.region_mask(&regions).to_device(device);
                let g = gate.combine(
                    tap("pooled")?,
                    &per_teacher,
                    targets,
                    set.average(),
                    self.mode,
                    Some(&mask),
                )?;
                gate_loss = Some(g.loss);
                (g.logits, g.valid)
            }
            (None, Some(set)) => {
                let e = set.combine(&per_teacher, &regions)?;
                (e.logits, e.valid)
            }
            (_, None) => {
                let n = per_teacher.size()[0];
                (
                    per_teacher.select(1, 0),
                    Tensor::ones([n], (tch::Kind::Bool, device)),
                )
            }
        };
        let mut mask = valid.to_device(device).to_kind(tch::Kind::Float);
        if let Some(d) = domain_mask(
            &self.domains,
            &self.entries,
            &batch.indices,
            &self.list_file,
        )? {
            mask = &mask * d.to_device(device);
        }
        let (mut loss, kd) = self.loss.compute(
            logits,
            &teacher.detach(),
            targets,
            Some(&mask),
            ctx.epoch,
            ctx.epoch_fraction(),
        )?;
        let mut stats = stats_map(&kd);
        if let (Some(fm), Some(set)) = (&self.features, self.source.set()) {
            let t_images = feature_view(
                set,
                self.normalization,
                self.student.spec().input_size,
                images,
            )?;
            let t_taps = set.member_features(0, &t_images)?;
            let f = fm.loss(&taps, &t_taps)?;
            stats.insert("feature".to_string(), f.double_value(&[]));
            loss = &loss + f * self.feature_weight;
        }
        if let Some(g) = gate_loss {
            stats.insert("gate".to_string(), g.double_value(&[]));
            loss = &loss + g;
        }
        stats.insert("total".to_string(), loss.double_value(&[]));
        Ok(StepLoss { loss, stats })
    }

    fn before_step(&mut self) {
        if let Some(o) = &mut self.own_opt {
            o.zero_grad();
        }
    }

    fn after_step(&mut self, _ctx: &StepContext, lr: f64) -> Result<()> {
        if let Some(o) = &mut self.own_opt {
            o.set_lr(lr);
            o.step();
        }
        if let TeacherSource::Ema { ema, student } = &mut self.source {
            ema.update_from(student)?;
        }
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .own
            .variables()
            .into_iter()
            .map(|(k, v)| (format!("own.{k}"), v))
            .collect();
        if let TeacherSource::Ema { ema, .. } = &self.source {
            out.extend(
                ema.var_store()
                    .variables()
                    .into_iter()
                    .map(|(k, v)| (format!("ema.{k}"), v)),
            );
        }
        out
    }

    fn load_state(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let own = self.own.variables();
        let ema = match &self.source {
            TeacherSource::Ema { ema, .. } => ema.var_store().variables(),
            _ => Default::default(),
        };
        tch::no_grad(|| -> Result<()> {
            for (k, v) in tensors {
                let target = if let Some(n) = k.strip_prefix("own.") {
                    own.get(n)
                } else if let Some(n) = k.strip_prefix("ema.") {
                    ema.get(n)
                } else {
                    None
                };
                let Some(t) = target else {
                    bail!("distillation state: {k} is not a variable of this run's objective");
                };
                ensure!(
                    t.size() == v.size(),
                    "distillation state: {k} has shape {:?}, expected {:?}",
                    v.size(),
                    t.size()
                );
                t.shallow_clone().copy_(&v);
            }
            Ok(())
        })
    }
}
