//! The teachers of a distillation run: a weighted ensemble with per-teacher region filters, a
//! learned gate over the teachers, and self-distillation from an EMA copy of the student.
//!
//! # Ensembles ([`combine`])
//!
//! A batch of teacher outputs is `[N, K, C]` (samples, teachers, classes). Teacher `k` has a
//! weight `w_k > 0` and optionally a list of regions: it *contributes* to sample `n` only when the
//! sample's region is in its list (a teacher without a list contributes everywhere; a sample
//! without a region gets only the unfiltered teachers). The weights of the contributing
//! teachers are renormalised per sample, `v_nk = w_k m_nk / sum_j w_j m_nj`; a sample no teacher
//! contributes to is flagged invalid ([`Ensemble::valid`]) and its row is zero, so the KD term
//! must skip it.
//!
//! Two averages, which differ whenever the teachers disagree:
//!
//! * [`Average::Logits`]: `z_n = sum_k v_nk z_nk`, a weighted geometric mean of the teachers'
//!   (unnormalised) distributions: `softmax(z_n) ∝ prod_k softmax(z_nk)^v_nk`. Confident
//!   teachers dominate and the result is sharper than any mixture.
//! * [`Average::Probs`]: the mixture `p_n = sum_k v_nk softmax(z_nk)` (multi-label: of the
//!   sigmoids), returned as logits: `log p_n` (multi-class; `softmax(log p) = p`) or
//!   `log(p / (1 - p))` (multi-label; `sigmoid` of it is `p`). The mixture keeps every
//!   teacher's mass, so it is flatter; computed with log-sum-exp so logits of +-1e4 stay finite.
//!
//! # Where the teachers' inputs come from
//!
//! Every teacher reads its own input size and normalisation. The cache ([`super::cache`])
//! evaluates each teacher through an evaluation [`Loader`] at its own size. Without a cache,
//! [`TeacherSet::logits_for_batch`] gives each teacher the same (possibly augmented) view as the
//! student's batch: a teacher whose input size equals the student loader's reads the batch's
//! own images, renormalised (`x_t = (x_s std_s + mean_s - mean_t) / std_t`, exact up to float
//! rounding); any other size gets a second [`Loader`] view of the same split with the student's
//! options (seed, augmentation) at the teacher's size and normalisation, asked for the batch's
//! indices and epoch with [`Loader::batch`]. Augmentation draws depend only on
//! `(seed, epoch, index)`, never on the size, so both views are the same random transform.
//!
//! # Gate and EMA
//!
//! [`Gate`] learns per-sample weights over the teachers from the student's pooled features;
//! [`Ema`] keeps an exponential moving average of the student for self-distillation.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::config::{Config, TeacherConfig};
use crate::data::{Dataset, Mode, Split};
use crate::models::{self, Classifier, ModelSpec, Teacher, TorchScriptTeacher};
use crate::pipeline::{Batch, Loader, LoaderOptions, Normalization};
use crate::stages::{self, SavedModel};

/// How teacher outputs are averaged (see the module docs; the two differ).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Average {
    /// Weighted mean of the logits.
    #[default]
    Logits,
    /// Weighted mean of the probabilities (softmax, or sigmoid for multi-label), as logits.
    Probs,
}

impl Average {
    /// `logits` or `probs`.
    pub fn name(self) -> &'static str {
        match self {
            Average::Logits => "logits",
            Average::Probs => "probs",
        }
    }
}

/// An ensemble's output for a batch.
#[derive(Debug)]
pub struct Ensemble {
    /// `[N, C]` float logits, detached; zero on invalid rows.
    pub logits: Tensor,
    /// `[N]` bool: at least one teacher contributes to the sample.
    pub valid: Tensor,
}

/// Checks `[N, K, C]` and returns `(N, K, C)`.
fn nkc(per_teacher: &Tensor, k: usize) -> Result<(i64, i64, i64)> {
    match per_teacher.size()[..] {
        [n, kk, c] if kk == k as i64 => Ok((n, kk, c)),
        ref s => bail!("teacher logits: shape {s:?}, expected [N, {k}, C]"),
    }
}

/// `[N, K]` float mask from an optional bool/float mask (checked), or all ones.
fn mask_or_ones(mask: Option<&Tensor>, n: i64, k: i64, device: Device) -> Result<Tensor> {
    match mask {
        None => Ok(Tensor::ones([n, k], (Kind::Float, device))),
        Some(m) => {
            if m.size() != [n, k] {
                bail!("region mask: shape {:?}, expected [{n}, {k}]", m.size());
            }
            Ok(m.to_device(device).to_kind(Kind::Float))
        }
    }
}

/// The ensemble of `z` (`[N, K, C]`) under normalised per-sample weights `v` (`[N, K]`, rows
/// summing to 1 or all zero). Gradients flow into `v` (the gate's loss), not into `z`'s use here
/// beyond what the caller allows.
fn mix(z: &Tensor, v: &Tensor, average: Average, mode: Mode) -> Tensor {
    match average {
        Average::Logits => {
            (v.unsqueeze(2) * z).sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        }
        Average::Probs => {
            // log v is -inf for a teacher that does not contribute: exp(-inf) = 0 in the sum.
            let logv = v.log().unsqueeze(2);
            match mode {
                Mode::MultiClass => (logv + z.log_softmax(2, Kind::Float)).logsumexp([1i64], false),
                Mode::MultiLabel => {
                    let lp = (&logv + z.log_sigmoid()).logsumexp([1i64], false);
                    let lq = (logv + (-z).log_sigmoid()).logsumexp([1i64], false);
                    lp - lq
                }
            }
        }
    }
}

/// Zero where `valid` (`[N]`) is false (also clears the NaN/-inf of empty rows).
fn zero_invalid(x: &Tensor, valid: &Tensor) -> Tensor {
    x.where_self(&valid.unsqueeze(1), &x.zeros_like())
}

/// Combines the teachers' logits `per_teacher` (`[N, K, C]`) with `weights` (one per teacher,
/// `> 0`) and the optional `region_mask` (`[N, K]` bool: teacher `k` contributes to sample
/// `n`); see the module docs. The result is detached.
pub fn combine(
    per_teacher: &Tensor,
    weights: &[f64],
    average: Average,
    mode: Mode,
    region_mask: Option<&Tensor>,
) -> Result<Ensemble> {
    let (n, k, _) = nkc(per_teacher, weights.len())?;
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        bail!("teacher weights: {w} must be finite and > 0");
    }
    let device = per_teacher.device();
    let z = per_teacher.detach().to_kind(Kind::Float);
    let w: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    let wm = Tensor::from_slice(&w).to_device(device).view([1, k])
        * mask_or_ones(region_mask, n, k, device)?;
    let total = wm.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    let valid = total.squeeze_dim(1).gt(0.0);
    let v = wm / total.clamp_min(f64::from(f32::MIN_POSITIVE));
    Ok(Ensemble {
        logits: zero_invalid(&mix(&z, &v, average, mode), &valid).detach(),
        valid,
    })
}

/// A learned gate: per-sample softmax weights over `K` teachers from the student's pooled
/// features (detached, so the gate never trains the student), trained with the cross-entropy
/// of the gated ensemble against the hard labels (multi-label: binary cross-entropy).
///
/// One linear layer, initialised to zero: it starts as the plain equal-weight ensemble.
#[derive(Debug)]
pub struct Gate {
    linear: nn::Linear,
    teachers: usize,
}

/// What [`Gate::combine`] returns.
#[derive(Debug)]
pub struct GateOutput {
    /// `[N, C]` gated teacher logits, detached (the KD target).
    pub logits: Tensor,
    /// `[N]` bool: at least one teacher contributes.
    pub valid: Tensor,
    /// `[N, K]` the gate's weights, detached (zero for non-contributing teachers).
    pub weights: Tensor,
    /// Scalar: the gate's loss, mean over valid samples; its gradient reaches only the gate.
    pub loss: Tensor,
}

impl Gate {
    /// A gate under `vs` (variables `weight` `[K, features]`, `bias` `[K]`).
    pub fn new(vs: &nn::Path, features: i64, teachers: usize) -> Gate {
        let cfg = nn::LinearConfig {
            ws_init: nn::Init::Const(0.0),
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        Gate {
            linear: nn::linear(vs, features, teachers as i64, cfg),
            teachers,
        }
    }

    /// `[N, K]` weights from `pooled` (`[N, features]`, detached here): softmax over the
    /// contributing teachers of each row, zero elsewhere (all zero when none contributes).
    pub fn weights(&self, pooled: &Tensor, region_mask: Option<&Tensor>) -> Result<Tensor> {
        let n = pooled.size().first().copied().unwrap_or(0);
        let k = self.teachers as i64;
        let m = mask_or_ones(region_mask, n, k, pooled.device())?;
        let scores = self.linear.forward(&pooled.detach());
        // A finite fill keeps an all-masked row free of NaN (whose gradient would poison the gate).
        let masked = scores.masked_fill(&m.eq(0.0), -1e9);
        Ok(masked.softmax(1, Kind::Float) * m)
    }

    /// The gated ensemble of `per_teacher` (`[N, K, C]`) and the gate's loss against `targets`
    /// (`[N, C]` one-hot or multi-hot, as [`Batch::targets`]).
    pub fn combine(
        &self,
        pooled: &Tensor,
        per_teacher: &Tensor,
        targets: &Tensor,
        average: Average,
        mode: Mode,
        region_mask: Option<&Tensor>,
    ) -> Result<GateOutput> {
        let (n, _, c) = nkc(per_teacher, self.teachers)?;
        if targets.size() != [n, c] {
            bail!(
                "gate targets: shape {:?}, expected [{n}, {c}]",
                targets.size()
            );
        }
        let v = self.weights(pooled, region_mask)?;
        let valid = v
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            .gt(0.5);
        let z = per_teacher.detach().to_kind(Kind::Float);
        let mixed = zero_invalid(&mix(&z, &v, average, mode), &valid);
        let t = targets.to_device(mixed.device()).to_kind(Kind::Float);
        let per_sample = match mode {
            Mode::MultiClass => -(&t * mixed.log_softmax(1, Kind::Float)).sum_dim_intlist(
                [1i64].as_slice(),
                false,
                Kind::Float,
            ),
            Mode::MultiLabel => mixed
                .binary_cross_entropy_with_logits::<Tensor>(&t, None, None, tch::Reduction::None)
                .mean_dim([1i64].as_slice(), false, Kind::Float),
        };
        let vf = valid.to_kind(Kind::Float);
        let loss = (per_sample * &vf).sum(Kind::Float) / vf.sum(Kind::Float).clamp_min(1.0);
        Ok(GateOutput {
            logits: mixed.detach(),
            valid,
            weights: v.detach(),
            loss,
        })
    }
}

/// The default decay of [`Ema`].
pub const EMA_DECAY: f64 = 0.999;

/// An exponential moving average of a student's variables, for self-distillation: after each
/// optimisation step, every parameter becomes `e = decay * e + (1 - decay) * s`, and every
/// buffer (BatchNorm running statistics: the var store's non-trainable variables) is copied.
/// The copy starts equal to the student and never requires gradients.
#[derive(Debug)]
pub struct Ema<M = Box<dyn Classifier>> {
    vs: nn::VarStore,
    model: M,
    decay: f64,
    updates: u64,
}

/// A student's variables by name (sharing its storage) and which of them are parameters
/// (trainable when taken), for [`Ema::update_from`].
#[derive(Debug)]
pub struct StudentVars {
    vars: HashMap<String, Tensor>,
    params: HashSet<String>,
}

impl StudentVars {
    /// Takes the variables of `vs`; call it before training freezes any of them.
    pub fn of(vs: &nn::VarStore) -> StudentVars {
        StudentVars {
            vars: vs.variables(),
            params: parameter_names(vs),
        }
    }
}

/// Trainable (parameter) variables of `vs` by name.
fn parameter_names(vs: &nn::VarStore) -> HashSet<String> {
    let trainable: HashSet<usize> = vs
        .trainable_variables()
        .iter()
        .map(|t| t.data_ptr() as usize)
        .collect();
    vs.variables()
        .into_iter()
        .filter(|(_, t)| trainable.contains(&(t.data_ptr() as usize)))
        .map(|(n, _)| n)
        .collect()
}

impl<M> Ema<M> {
    /// A copy of `student` (built by `build` under a fresh var store on the student's device,
    /// then loaded with the student's values), decaying by `decay` in `[0, 1)`.
    pub fn new(
        student: &nn::VarStore,
        decay: f64,
        build: impl FnOnce(&nn::Path) -> Result<M>,
    ) -> Result<Ema<M>> {
        if !(0.0..1.0).contains(&decay) {
            bail!("EMA decay {decay} must be in [0, 1)");
        }
        let mut vs = nn::VarStore::new(student.device());
        let model = build(&vs.root())?;
        let (mine, theirs) = (vs.variables(), student.variables());
        if let Some(name) = mine.keys().find(|n| !theirs.contains_key(*n)) {
            bail!("EMA: variable {name} is not in the student's var store");
        }
        if let Some(name) = theirs.keys().find(|n| !mine.contains_key(*n)) {
            bail!("EMA: the student's variable {name} is not in the copy");
        }
        vs.copy(student).context("EMA: cannot copy the student")?;
        vs.freeze();
        Ok(Ema {
            vs,
            model,
            decay,
            updates: 0,
        })
    }

    /// Moves the average one step towards `student` (parameters averaged, buffers copied).
    pub fn update(&mut self, student: &nn::VarStore) -> Result<()> {
        self.update_from(&StudentVars::of(student))
    }

    /// [`Ema::update`] from a snapshot of the student's variables (tensors sharing the
    /// student's storage), for callers that cannot borrow its var store while it trains.
    pub fn update_from(&mut self, student: &StudentVars) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (name, mut e) in self.vs.variables() {
                let s = student
                    .vars
                    .get(&name)
                    .with_context(|| format!("EMA: the student has no variable {name}"))?;
                if s.size() != e.size() {
                    bail!(
                        "EMA: {name} has shape {:?}, the copy {:?}",
                        s.size(),
                        e.size()
                    );
                }
                if student.params.contains(&name) && e.is_floating_point() {
                    // e + (1 - d) (s - e) = d e + (1 - d) s
                    let _ = e.lerp_(&s.to_kind(e.kind()), 1.0 - self.decay);
                } else {
                    e.copy_(s);
                }
            }
            Ok(())
        })?;
        self.updates += 1;
        Ok(())
    }

    /// The averaged variables.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The network reading the averaged variables.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Updates done so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }
}

impl Ema<Box<dyn Classifier>> {
    /// The EMA of a zoo network built from `spec` whose variables live in `student`.
    pub fn classifier(student: &nn::VarStore, spec: &ModelSpec, decay: f64) -> Result<Self> {
        Ema::new(student, decay, |p| models::build(p, spec))
    }

    /// Logits of the averaged network (evaluation mode, no gradient).
    pub fn logits(&self, images: &Tensor) -> Tensor {
        tch::no_grad(|| self.model.forward_t(images, false))
    }
}

/// One loaded teacher of a [`TeacherSet`].
pub struct Member {
    /// The configuration it came from.
    pub config: TeacherConfig,
    /// The network.
    pub teacher: Teacher,
    /// Its variables (training-folder teachers).
    _vs: Option<nn::VarStore>,
    /// Side of its square input.
    pub input_size: u32,
    /// Its input normalisation.
    pub normalization: Normalization,
    /// What it is, for messages: `runs/t1 (resnet_cifar[2,2,2,2]:0.25:0.5, 28 px)`.
    pub description: String,
    /// SHA-256 over everything that determines its logits (see [`TeacherSet::hash`]).
    pub fingerprint: [u8; 32],
}

/// Teachers loaded for distillation (see the module docs).
pub struct TeacherSet {
    members: Vec<Member>,
    average: Average,
    mode: Mode,
    num_classes: usize,
    device: Device,
}

/// SHA-256 of a file's bytes, streamed.
pub fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(h.finalize().into())
}

fn push_norm(h: &mut Sha256, n: &Normalization) {
    for v in n.mean.iter().chain(&n.std) {
        h.update(v.to_le_bytes());
    }
}

impl TeacherSet {
    /// The teachers of `cfg.distillation.teachers` for the data set `ds` (TorchScript inputs
    /// default to `teacher.input_size`).
    pub fn from_config(cfg: &Config, ds: &Dataset, device: Device) -> Result<TeacherSet> {
        if cfg.distillation.teachers.is_empty() {
            bail!("distillation.teachers: empty (no teacher to load)");
        }
        TeacherSet::load(
            &cfg.distillation.teachers,
            cfg.distillation.teacher_average,
            ds,
            cfg.teacher.input_size,
            device,
        )
    }

    /// Loads `teachers` onto `device` for the data set `ds`: a folder is a training folder
    /// (its `model.json` classes and mode must equal the data set's), a file is TorchScript
    /// (input `script_input_size` unless the entry sets `input_size`; its class count is checked
    /// on its first batch).
    pub fn load(
        teachers: &[TeacherConfig],
        average: Average,
        ds: &Dataset,
        script_input_size: u32,
        device: Device,
    ) -> Result<TeacherSet> {
        if teachers.is_empty() {
            bail!("no teacher given");
        }
        let mut members = Vec::with_capacity(teachers.len());
        for (i, t) in teachers.iter().enumerate() {
            t.validate(&format!("teacher {i}"))?;
            let m = Self::load_one(t, ds, script_input_size, device)
                .with_context(|| format!("teacher {i} ({})", t.path.display()))?;
            members.push(m);
        }
        Ok(TeacherSet {
            members,
            average,
            mode: ds.mode,
            num_classes: ds.classes.len(),
            device,
        })
    }

    fn load_one(
        t: &TeacherConfig,
        ds: &Dataset,
        script_size: u32,
        device: Device,
    ) -> Result<Member> {
        let mut h = Sha256::new();
        if t.path.is_dir() {
            if t.input_size.is_some() || t.normalization.is_some() {
                bail!("input_size / normalization are for TorchScript files; a training folder records its own");
            }
            let saved = SavedModel::load(&t.path)?;
            if saved.classes != ds.classes {
                bail!(
                    "its classes {:?} differ from the data set's {:?}",
                    saved.classes,
                    ds.classes
                );
            }
            if saved.mode()? != ds.mode {
                bail!("it is {}, the data set {}", saved.mode, ds.mode.name());
            }
            let (vs, model) = stages::load_trained(&t.path, &saved, device)?;
            let spec = model.spec().clone();
            h.update(b"folder\0");
            h.update(saved.resolved.as_bytes());
            h.update(b"\0");
            h.update(spec.input_size.to_le_bytes());
            push_norm(&mut h, &spec.normalization);
            h.update(saved.classes.join("\n").as_bytes());
            h.update(b"\0");
            h.update(saved.mode.as_bytes());
            h.update(file_sha256(&stages::best_weights(&t.path))?);
            Ok(Member {
                config: t.clone(),
                description: format!(
                    "{} ({}, {} px)",
                    t.path.display(),
                    saved.resolved,
                    spec.input_size
                ),
                teacher: Teacher::Native(model),
                _vs: Some(vs),
                input_size: spec.input_size,
                normalization: spec.normalization,
                fingerprint: h.finalize().into(),
            })
        } else {
            let size = t.input_size.unwrap_or(script_size);
            let mut ts = TorchScriptTeacher::load(&t.path, device)?;
            if let Some(n) = t.normalization {
                ts.normalization = n.get();
            }
            let norm = ts.normalization;
            h.update(b"torchscript\0");
            h.update(size.to_le_bytes());
            push_norm(&mut h, &norm);
            h.update(ds.mode.name().as_bytes());
            h.update(file_sha256(&t.path)?);
            Ok(Member {
                config: t.clone(),
                description: format!("{} (TorchScript, {size} px)", t.path.display()),
                teacher: Teacher::Script(ts),
                _vs: None,
                input_size: size,
                normalization: norm,
                fingerprint: h.finalize().into(),
            })
        }
    }

    /// The teachers, in order (the `K` axis).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of teachers `K`.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false (a set has at least one teacher).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The averaging.
    pub fn average(&self) -> Average {
        self.average
    }

    /// The data set's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Classes `C`.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Where the teachers run.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The ensemble weights, in order.
    pub fn weights(&self) -> Vec<f64> {
        self.members.iter().map(|m| m.config.weight).collect()
    }

    /// SHA-256 identifying the teachers' logits: per teacher, in order, its kind, resolved
    /// architecture, input size, normalisation, classes/mode and the SHA-256 of its weights
    /// file. Ensemble weights, regions and the averaging are *not* included: a cache stores
    /// every teacher's own logits, so changing how they are combined needs no recomputation.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"kdedge.teachers/1\0");
        h.update((self.members.len() as u64).to_le_bytes());
        for m in &self.members {
            h.update(m.fingerprint);
        }
        h.finalize().into()
    }

    /// `[N, K]` bool (CPU): teacher `k` contributes to sample `n` (see the module docs).
    pub fn region_mask(&self, regions: &[Option<String>]) -> Tensor {
        let k = self.members.len();
        let mut m = Vec::with_capacity(regions.len() * k);
        for r in regions {
            for t in &self.members {
                m.push(match (&t.config.regions, r) {
                    (None, _) => true,
                    (Some(list), Some(r)) => list.iter().any(|x| x == r),
                    (Some(_), None) => false,
                });
            }
        }
        Tensor::from_slice(&m).view([regions.len() as i64, k as i64])
    }

    /// The ensemble of `per_teacher` (`[N, K, C]`) with this set's weights, averaging and
    /// region filters (`regions`: one per sample).
    pub fn combine(&self, per_teacher: &Tensor, regions: &[Option<String>]) -> Result<Ensemble> {
        let n = per_teacher.size().first().copied().unwrap_or(0);
        if regions.len() as i64 != n {
            bail!("{} regions for {n} samples", regions.len());
        }
        let mask = self
            .members
            .iter()
            .any(|m| m.config.regions.is_some())
            .then(|| self.region_mask(regions));
        combine(
            per_teacher,
            &self.weights(),
            self.average,
            self.mode,
            mask.as_ref(),
        )
    }

    /// Teacher `k`'s `[B, C]` float logits for images already at its input (on any device).
    pub fn member_logits(&self, k: usize, images: &Tensor) -> Result<Tensor> {
        let m = self
            .members
            .get(k)
            .with_context(|| format!("no teacher {k}"))?;
        let out = m
            .teacher
            .logits(&images.to_device(self.device))
            .with_context(|| m.description.clone())?
            .to_kind(Kind::Float);
        let c = out.size().get(1).copied().unwrap_or(0);
        if c != self.num_classes as i64 {
            bail!(
                "{}: {c} outputs, the data set has {} classes",
                m.description,
                self.num_classes
            );
        }
        Ok(out)
    }

    /// Teacher `k`'s named taps ([`Classifier::forward_features`], evaluation mode, no gradient)
    /// for images already at its input; an error for a TorchScript teacher, which has none.
    pub fn member_features(&self, k: usize, images: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let m = self
            .members
            .get(k)
            .with_context(|| format!("no teacher {k}"))?;
        match &m.teacher {
            Teacher::Native(net) => Ok(tch::no_grad(|| {
                net.forward_features(&images.to_device(self.device), false)
            })),
            Teacher::Script(_) => bail!(
                "{}: a TorchScript teacher has no named feature taps (feature matching needs a \
                 training-folder teacher)",
                m.description
            ),
        }
    }

    /// The distinct `(input size, normalisation)` inputs the teachers read, and each teacher's
    /// index into that list.
    pub fn input_views(&self) -> (Vec<(u32, Normalization)>, Vec<usize>) {
        let mut views: Vec<(u32, Normalization)> = Vec::new();
        let mut of = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let key = (m.input_size, m.normalization);
            let i = views.iter().position(|v| *v == key).unwrap_or_else(|| {
                views.push(key);
                views.len() - 1
            });
            of.push(i);
        }
        (views, of)
    }

    /// What [`TeacherSet::logits_for_batch`] needs to make the teachers' inputs from batches of
    /// `split` of `ds` made with the `student` loader options (see the module docs).
    pub fn inputs(
        &self,
        ds: &Dataset,
        split: Split,
        student: &LoaderOptions,
    ) -> Result<TeacherInputs> {
        let (keys, of) = self.input_views();
        let mut views = Vec::with_capacity(keys.len());
        for (size, norm) in keys {
            if size as usize == student.input_size {
                views.push(View::Renormalize(norm));
            } else {
                let mut o = student.clone();
                o.input_size = size as usize;
                o.normalization = norm;
                o.quiet = true;
                views.push(View::Loader(Loader::new(ds, split, o)?));
            }
        }
        Ok(TeacherInputs {
            student: student.normalization,
            student_size: student.input_size,
            views,
            of,
        })
    }

    /// `[N, K, C]` float logits of every teacher (evaluation mode, no gradient, on the set's
    /// device) for `batch`, a batch of `epoch` made by the loader `inputs` was built for.
    pub fn logits_for_batch(
        &self,
        inputs: &TeacherInputs,
        batch: &Batch,
        epoch: usize,
    ) -> Result<Tensor> {
        let s = inputs.student_size as i64;
        let n = batch.indices.len() as i64;
        if batch.images.size() != [n, 3, s, s] {
            bail!(
                "batch images {:?}, expected [{n}, 3, {s}, {s}] (the loader the inputs were made for)",
                batch.images.size()
            );
        }
        let mut made: Vec<Option<Tensor>> = inputs.views.iter().map(|_| None).collect();
        let mut out = Vec::with_capacity(self.members.len());
        for (k, &v) in inputs.of.iter().enumerate() {
            if made[v].is_none() {
                made[v] = Some(match &inputs.views[v] {
                    View::Renormalize(to) => renormalize(&batch.images, &inputs.student, to),
                    View::Loader(l) => l.batch(&batch.indices, epoch)?.images,
                });
            }
            let images = made[v].as_ref().context("teacher input view")?;
            out.push(self.member_logits(k, images)?);
        }
        Ok(Tensor::stack(&out, 1))
    }
}

/// `[N, 3, H, W]` images normalised by `from` re-expressed in `to`:
/// `(x * std_from + mean_from - mean_to) / std_to` per channel.
pub fn renormalize(images: &Tensor, from: &Normalization, to: &Normalization) -> Tensor {
    if from == to {
        return images.shallow_clone();
    }
    let (mut a, mut b) = ([0f32; 3], [0f32; 3]);
    for c in 0..3 {
        a[c] = from.std[c] / to.std[c];
        b[c] = (from.mean[c] - to.mean[c]) / to.std[c];
    }
    let dev = images.device();
    let a = Tensor::from_slice(&a).to_device(dev).view([1, 3, 1, 1]);
    let b = Tensor::from_slice(&b).to_device(dev).view([1, 3, 1, 1]);
    images * a + b
}

/// Where one distinct teacher input comes from.
enum View {
    /// The student batch's own images, renormalised (same input size).
    Renormalize(Normalization),
    /// A second loader over the same split at the teacher's size and normalisation.
    Loader(Loader),
}

/// The teachers' input views for on-the-fly inference ([`TeacherSet::inputs`]).
pub struct TeacherInputs {
    student: Normalization,
    student_size: usize,
    views: Vec<View>,
    of: Vec<usize>,
}
