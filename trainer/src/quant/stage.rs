//! The quantisation stage (`kdtrain quantize`, and the last stage of `kdtrain train`): a trained
//! float student -> post-training quantisation -> quantisation-aware fine-tuning with the
//! distillation loss still active -> full-integer export.
//!
//! # The folder (`--out-dir`)
//!
//! * `ptq/`: the export files ([`crate::export::write_all`]) of the calibrated PTQ model, whose
//!   `metrics.json` is its int8 accuracy measured by kdruntime: the baseline QAT must beat;
//! * `qat/`: the QAT training folder (checkpoints with observer ranges and frozen statistics,
//!   logs, plots), absent with `qat.epochs: 0`;
//! * `export/`: the files that ship: the QAT model's (the PTQ model's with `qat.epochs: 0`);
//! * `quantize.json`: float, PTQ and QAT accuracy on the test split, fake-quantised (the
//!   trainer's simulation) and int8 (kdruntime running the exported `.tflite`), and the gaps.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tch::nn;

use super::ptq::{calibrate, calibration_loader};
use super::qnet::{QatNet, QatOptions};
use crate::config::{Distillation, Role, TemperatureScheduleName};
use crate::data::Split;
use crate::distill::compare::headline;
use crate::distill::objective::KdObjective;
use crate::eval::Metrics;
use crate::export::{self, ExportOptions, ExportReport};
use crate::models::Classifier;
use crate::pipeline::Loader;
use crate::stages::{self, DistilSource, SavedModel, StageOptions};
use crate::train::objective::{HardLoss, Objective};
use crate::train::{self, checkpoint, EpochRecord, PhaseSpec, TrainReport, TrainSpec, Trainable};

/// What [`quantize`] measured and wrote.
#[derive(Debug)]
pub struct QuantizeReport {
    /// The float student on the test split.
    pub float: Metrics,
    /// The PTQ model, fake-quantised (the trainer's evaluation pass).
    pub ptq_fake: Metrics,
    /// The PTQ model's export (its int8 test metrics by kdruntime).
    pub ptq: ExportReport,
    /// The QAT run and its fake-quantised test metrics (`None` with `qat.epochs: 0`).
    pub qat: Option<(TrainReport, Metrics)>,
    /// The shipped export (`export/`).
    pub export: ExportReport,
    /// The export folder.
    pub export_dir: PathBuf,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The distillation settings during QAT: the configured loss at its final temperature, at full
/// `kd_alpha` from the first step (no warm-up, ramp or hard phase), without feature matching
/// or a gate (the fake-quantised network's taps are not the float network's).
pub fn qat_distillation(d: &Distillation) -> Distillation {
    let mut q = d.clone();
    if q.temperature_schedule == TemperatureScheduleName::Linear {
        q.temperature = q.temperature_end.unwrap_or(q.temperature);
    }
    q.temperature_schedule = TemperatureScheduleName::Constant;
    q.temperature_end = None;
    q.warmup_epochs = 0.0;
    q.ramp_epochs = 0.0;
    q.hard_epochs = 0;
    q.hard_lr = None;
    q.features.clear();
    q.gate = false;
    q
}

/// Quantises the student of the training folder `student_dir` (see the module docs), training
/// on `opts`' data and configuration into `opts.out_dir`. With `distil`, QAT keeps distilling
/// from those teachers; self-distillation (`DistilSource::SelfEma`) distils from the float
/// student itself.
pub fn quantize(
    student_dir: &Path,
    opts: &StageOptions,
    distil: Option<&DistilSource>,
) -> Result<QuantizeReport> {
    let started = Instant::now();
    let cfg = &opts.config;
    let saved = SavedModel::load(student_dir)?;
    let mut ds = stages::load_dataset(&opts.data_dir, cfg.mode)?;
    if ds.classes != saved.classes {
        bail!(
            "{}: the data set's classes {:?} differ from the student's {:?}",
            opts.data_dir.display(),
            ds.classes,
            saved.classes
        );
    }
    stages::limit_train(&mut ds, opts.limit_train)?;
    let device = opts.device;
    let (float_vs, float) = stages::load_trained(student_dir, &saved, device)?;
    let spec = float.spec().clone();
    let float_metrics = stages::evaluate(
        float.as_ref(),
        device,
        &ds,
        Split::Test,
        cfg.batch_size,
        opts.workers,
    )?
    .0;
    // The fake-quantised models are scored by the exact integer simulation (float64), so the
    // int8 export can be compared with what the trainer believes it computes.
    let eval = |m: &QatNet| -> Result<Metrics> {
        let (scores, labels) = stages::split_logits(
            &|x: &tch::Tensor| Ok(m.fake_quant_scores(&x.to_device(device))),
            spec.input_size,
            spec.normalization,
            &ds,
            Split::Test,
            cfg.batch_size,
            opts.workers,
        )?;
        crate::distill::compare::metrics_of(&scores, ds.mode, &ds.classes, &labels)
    };
    let calib = calibration_loader(&ds, &spec, cfg.batch_size)?;
    let samples = cfg.qat.calibration_samples;
    let export_opts = ExportOptions::new(spec.normalization);

    // Post-training quantisation: the baseline, exported and measured like the shipped model.
    let ptq_vs = nn::VarStore::new(device);
    let ptq_net = QatNet::new(&ptq_vs, float.as_ref(), &float_vs, QatOptions::default())?;
    let seen = calibrate(&ptq_net, &calib, samples)?;
    if !opts.quiet {
        eprintln!("ptq: calibrated on {seen} training images");
    }
    let ptq_fake = eval(&ptq_net).context("PTQ model")?;
    let ptq_graph = ptq_net.to_int_graph()?;
    let ptq = export::write_all(&opts.out_dir.join("ptq"), &ptq_graph, &ds, &export_opts)
        .context("PTQ export")?;

    let export_dir = opts.out_dir.join("export");
    if cfg.qat.epochs == 0 {
        let export = export::write_all(&export_dir, &ptq_graph, &ds, &export_opts)?;
        return finish(
            opts,
            float_metrics,
            ptq_fake,
            ptq,
            None,
            export,
            export_dir,
            started,
        );
    }

    // Quantisation-aware training, starting from the calibrated ranges.
    let n_train = ds.split(Split::Train).len();
    let train_opts = stages::loader_options(&spec, cfg, n_train, true, opts.workers);
    let train_src = Loader::new(&ds, Split::Train, train_opts.clone())?;
    let val_src = Loader::new(
        &ds,
        Split::Val,
        stages::loader_options(&spec, cfg, ds.split(Split::Val).len(), false, opts.workers),
    )?;
    let mut qvs = nn::VarStore::new(device);
    let qopts = QatOptions::from_config(&cfg.qat, train::BatchSource::len(&train_src))?;
    let qnet = QatNet::new(&qvs, float.as_ref(), &float_vs, qopts)?;
    calibrate(&qnet, &calib, samples)?;
    let mut tspec = TrainSpec::from_config(cfg, Role::Student, ds.mode, ds.classes.clone());
    tspec.phases = vec![PhaseSpec {
        name: "qat".into(),
        epochs: cfg.qat.epochs,
        lr: cfg.qat.lr,
        trainable: Trainable::All,
    }];
    // Float16 autocast would change the simulated integer arithmetic.
    tspec.mixed_precision = false;
    tspec.resume = opts.resume;
    let qat_dir = opts.out_dir.join("qat");
    stages::checkpoint_dir(&qat_dir, opts.resume)?;
    let quiet = opts.quiet;
    let mut on_epoch = |r: &EpochRecord| {
        if !quiet {
            eprintln!("{}", stages::epoch_line(r));
        }
    };
    let groups = qnet.layer_groups();
    let mut hard = HardLoss {
        mode: ds.mode,
        autocast: false,
    };
    let mut kd_objective;
    let objective: &mut dyn Objective = match distil {
        None => &mut hard,
        Some(d) => {
            // Self-distillation's EMA teacher is gone after the float run: the float student
            // teaches its own quantised copy.
            let d = match d {
                DistilSource::SelfEma => DistilSource::Teachers {
                    teachers: vec![crate::config::TeacherConfig::new(student_dir)],
                    cache: None,
                },
                d => d.clone(),
            };
            let kd = qat_distillation(&cfg.distillation);
            let source = stages::teacher_source(&d, cfg, &ds, &qvs, &spec, &train_opts)?;
            let probe = stages::probe_images(&train_src, cfg.batch_size)?.to_device(device);
            kd_objective = KdObjective::new(&qnet, &kd, &ds, cfg.qat.epochs, source, &probe)?;
            &mut kd_objective
        }
    };
    let report = train::run_with(
        &tspec,
        &train_src,
        &val_src,
        &qnet,
        &mut qvs,
        &groups,
        &qat_dir,
        objective,
        &mut on_epoch,
    )?;
    let best = report
        .best_weights
        .clone()
        .context("QAT ended without a best checkpoint")?;
    qvs.load(&best)
        .with_context(|| format!("{}: cannot load", best.display()))?;
    let qat_fake = eval(&qnet).context("QAT model")?;
    let export = export::write_all(&export_dir, &qnet.to_int_graph()?, &ds, &export_opts)?;
    finish(
        opts,
        float_metrics,
        ptq_fake,
        ptq,
        Some((report, qat_fake)),
        export,
        export_dir,
        started,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    opts: &StageOptions,
    float: Metrics,
    ptq_fake: Metrics,
    ptq: ExportReport,
    qat: Option<(TrainReport, Metrics)>,
    export: ExportReport,
    export_dir: PathBuf,
    started: Instant,
) -> Result<QuantizeReport> {
    let summary = |m: &Metrics| {
        m.summary()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let shipped_fake = qat.as_ref().map_or(&ptq_fake, |q| &q.1);
    let j = json!({
        "schema": "kdedge.quantize/1",
        "float": summary(&float),
        "ptq_fake_quant": summary(&ptq_fake),
        "ptq_int8": summary(&ptq.metrics),
        "qat_fake_quant": qat.as_ref().map(|q| summary(&q.1)),
        "qat_int8": qat.as_ref().map(|_| summary(&export.metrics)),
        "shipped": if qat.is_some() { "qat" } else { "ptq" },
        "int8_minus_fake_quant_pp": 100.0 * (headline(&export.metrics) - headline(shipped_fake)),
        "qat_minus_ptq_int8_pp": qat.as_ref().map(|_| 100.0 * (headline(&export.metrics) - headline(&ptq.metrics))),
        "arena_bytes": export.arena_bytes,
        "export_dir": export_dir,
    });
    checkpoint::atomic_write_text(
        &opts.out_dir.join("quantize.json"),
        &(serde_json::to_string_pretty(&j)? + "\n"),
    )?;
    Ok(QuantizeReport {
        float,
        ptq_fake,
        ptq,
        qat,
        export,
        export_dir,
        seconds: started.elapsed().as_secs_f64(),
    })
}
