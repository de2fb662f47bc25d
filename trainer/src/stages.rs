//! The stages behind `kdtrain teacher`, `kdtrain student`, `kdtrain eval` and `kdtrain train`:
//! data set + configuration -> input pipeline -> model zoo -> training engine -> evaluation.
//!
//! # A training stage's folder (`--out-dir`)
//!
//! Everything the engine writes (`checkpoints/`, `train_log.jsonl`, `train_log.csv`, `loss.svg`,
//! `metrics.svg`, `val_metrics.json`, `val_confusion.svg`; see [`crate::train`]), plus:
//!
//! * `checkpoints/model.json` ([`SavedModel`], schema `kdedge.model/1`): the network's spec
//!   string, input size, classes, mode and normalisation, written before training starts, so
//!   `best.safetensors` beside it can be rebuilt and reloaded by `kdtrain eval`;
//! * `metrics.json`, `confusion.svg` (multi-class) and `predictions.csv`: the best checkpoint
//!   evaluated on the test split at the end of training ([`crate::eval`] for the definitions).
//!
//! `predictions.csv` has one row per image in list order: `image,true,predicted`, class names
//! joined by `|` (multi-class: exactly one true and one predicted class; multi-label: the
//! classes whose probability is above 0.5).
//!
//! # Determinism
//!
//! `tch::manual_seed(config.seed)` precedes the weight initialisation, the loader's shuffles and
//! augmentations are seeded by `config.seed`, and the engine re-seeds libtorch before every step,
//! so a run is a function of the configuration and the data (up to floating-point rounding that
//! depends on the thread count).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::config::{Config, Role};
use crate::data::{Dataset, Mode, ModeChoice, Split};
use crate::eval::{self, Metrics};
use crate::models::{self, Classifier, ModelSpec};
use crate::pipeline::{Loader, LoaderOptions, Normalization};
use crate::train::{self, checkpoint, EpochRecord, TrainReport, TrainSpec};

/// Schema tag of `checkpoints/model.json`.
pub const MODEL_SCHEMA: &str = "kdedge.model/1";

/// Letterboxed images are cached in memory when they fit in this many bytes.
const CACHE_LIMIT: usize = 1 << 30;

/// The network of a training folder, written beside its checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedModel {
    /// [`MODEL_SCHEMA`].
    pub schema: String,
    /// Teacher or student.
    pub role: Role,
    /// The spec string as given (`resnet_tiny_cifar`, `mobilenet_v2:0.35`, ...).
    pub arch: String,
    /// The resolved spec, for reading (`resnet_cifar[2,2,2,2]:0.25:0.5`).
    pub resolved: String,
    /// Side of the square input.
    pub input_size: u32,
    /// Dropout before the classifier (training only).
    pub dropout: f64,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// `multi-class` or `multi-label`.
    pub mode: String,
    /// Per-channel mean subtracted from the letterboxed bytes.
    pub mean: [f32; 3],
    /// Per-channel divisor.
    pub std: [f32; 3],
}

impl SavedModel {
    fn new(role: Role, arch: &str, spec: &ModelSpec, classes: &[String], mode: Mode) -> Self {
        SavedModel {
            schema: MODEL_SCHEMA.into(),
            role,
            arch: arch.to_string(),
            resolved: spec.to_string(),
            input_size: spec.input_size,
            dropout: spec.dropout,
            classes: classes.to_vec(),
            mode: mode.name().into(),
            mean: spec.normalization.mean,
            std: spec.normalization.std,
        }
    }

    /// `checkpoints/model.json` of a training folder.
    pub fn path(out_dir: &Path) -> PathBuf {
        out_dir.join("checkpoints").join("model.json")
    }

    /// Reads and checks `checkpoints/model.json` of `out_dir`.
    pub fn load(out_dir: &Path) -> Result<SavedModel> {
        let p = Self::path(out_dir);
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("{}: cannot read (not a training folder?)", p.display()))?;
        let m: SavedModel =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid", p.display()))?;
        if m.schema != MODEL_SCHEMA {
            bail!(
                "{}: schema {:?}, expected {MODEL_SCHEMA:?}",
                p.display(),
                m.schema
            );
        }
        Ok(m)
    }

    /// The model spec it describes (checked against the recorded normalisation).
    pub fn spec(&self) -> Result<ModelSpec> {
        let spec = ModelSpec::parse(
            &self.arch,
            self.input_size,
            self.classes.len(),
            self.dropout,
        )
        .context("model.json: arch")?;
        if spec.normalization.mean != self.mean || spec.normalization.std != self.std {
            bail!(
                "model.json: normalisation {:?}/{:?} differs from {}'s {:?}",
                self.mean,
                self.std,
                self.arch,
                spec.normalization
            );
        }
        Ok(spec)
    }

    /// The recorded mode.
    pub fn mode(&self) -> Result<Mode> {
        match self.mode.as_str() {
            "multi-class" => Ok(Mode::MultiClass),
            "multi-label" => Ok(Mode::MultiLabel),
            m => bail!("model.json: mode {m:?} is not multi-class or multi-label"),
        }
    }
}

/// Settings of one training stage (`kdtrain teacher` / `kdtrain student`).
#[derive(Clone, Debug)]
pub struct StageOptions {
    /// Data set folder.
    pub data_dir: PathBuf,
    /// Output folder.
    pub out_dir: PathBuf,
    /// The parsed configuration.
    pub config: Config,
    /// Overrides `<role>.arch`.
    pub arch: Option<String>,
    /// Where the network trains.
    pub device: Device,
    /// Continue from the folder's checkpoint.
    pub resume: bool,
    /// Train on the first N images of the training list only.
    pub limit_train: Option<usize>,
    /// Decoding threads (0 = one per core).
    pub workers: usize,
    /// Print nothing per epoch.
    pub quiet: bool,
}

/// What a training stage produced.
#[derive(Debug)]
pub struct StageReport {
    /// The engine's report.
    pub train: TrainReport,
    /// The best checkpoint on the test split.
    pub test: Metrics,
    /// The network trained.
    pub model: SavedModel,
    /// Wall-clock seconds of the stage (this process only).
    pub seconds: f64,
}

/// Loads the data set, checking that the folder exists and `num_classes` matches it.
pub fn load_dataset(data_dir: &Path, mode: ModeChoice) -> Result<Dataset> {
    if !data_dir.is_dir() {
        bail!(
            "--data-dir {}: no such folder (expected images/, train.txt, val.txt, test.txt)",
            data_dir.display()
        );
    }
    Dataset::load(data_dir, mode)
}

/// Loader options for `spec`'s input: evaluation (`train == false`: list order, no augmentation)
/// or training (shuffled, augmented, full batches only when there is at least one).
pub fn loader_options(
    spec: &ModelSpec,
    cfg: &Config,
    images: usize,
    train: bool,
    workers: usize,
) -> LoaderOptions {
    let s = spec.input_size as usize;
    let mut o = LoaderOptions::new(s, cfg.batch_size, spec.normalization);
    o.seed = cfg.seed;
    o.workers = workers;
    o.cache = images.saturating_mul(s * s * 3) <= CACHE_LIMIT;
    if train {
        o.shuffle = true;
        o.augment = Some(cfg.augmentation.clone());
        // A last batch of one image would break BatchNorm's training statistics.
        o.drop_last = images >= cfg.batch_size;
    }
    o
}

/// One line per epoch for the terminal.
pub fn epoch_line(r: &EpochRecord) -> String {
    let mut s = format!(
        "epoch {:>3} {:<8} lr {:.2e}  train loss {:.4}  val loss {:.4}",
        r.epoch, r.phase, r.lr, r.train_loss, r.val_loss
    );
    for (k, v) in &r.val_metrics {
        let _ = write!(s, "  val {k} {v:.4}");
    }
    let _ = write!(s, "  {:.0} s ({:.0} img/s)", r.seconds, r.images_per_s);
    s
}

/// `--limit-train N`: keeps the first `n` images of the training list (at least 1).
pub fn limit_train(ds: &mut Dataset, limit: Option<usize>) -> Result<()> {
    if let Some(n) = limit {
        if n == 0 {
            bail!("--limit-train: must be at least 1");
        }
        if let Some(s) = ds.splits.iter_mut().find(|s| s.split == Split::Train) {
            s.entries.truncate(n);
        }
    }
    Ok(())
}

/// Creates `dir/checkpoints`; without `resume`, refuses a folder that already holds a
/// checkpoint (before anything is written over it).
pub fn checkpoint_dir(dir: &Path, resume: bool) -> Result<()> {
    std::fs::create_dir_all(dir.join("checkpoints"))
        .with_context(|| format!("{}: cannot create", dir.display()))?;
    if !resume && checkpoint::Dir::create(dir)?.read_state()?.is_some() {
        bail!(
            "{}: holds a checkpoint; pass --resume to continue it or choose an empty --out-dir",
            dir.display()
        );
    }
    Ok(())
}

/// Trains the teacher or student of `opts.config` (see the module docs for the folder), then
/// evaluates its best checkpoint on the test split.
pub fn train_network(role: Role, opts: &StageOptions) -> Result<StageReport> {
    train_network_with(role, opts, None)
}

/// The teachers a distilled student learns from.
#[derive(Clone, Debug)]
pub enum DistilSource {
    /// A teacher set: training folders or TorchScript files, run on every batch, or read from
    /// a logit cache of exactly these teachers when `cache` is given.
    Teachers {
        /// The set (`distillation.teachers`, or the pipeline's own teacher).
        teachers: Vec<crate::config::TeacherConfig>,
        /// A logit cache (`kdtrain logits compute` / `merge`) to read instead of running them.
        cache: Option<PathBuf>,
    },
    /// Self-distillation from an EMA of the student (`distillation.self_distillation`).
    SelfEma,
}

/// The teacher source of `d` for a student whose variables are in `vs` and whose training
/// loader uses `train_opts`.
pub fn teacher_source(
    d: &DistilSource,
    cfg: &Config,
    ds: &Dataset,
    vs: &nn::VarStore,
    spec: &ModelSpec,
    train_opts: &LoaderOptions,
) -> Result<crate::distill::objective::TeacherSource> {
    use crate::distill::{cache::LogitCache, objective::TeacherSource, teachers};
    Ok(match d {
        DistilSource::SelfEma => TeacherSource::Ema {
            ema: teachers::Ema::classifier(vs, spec, cfg.distillation.ema_decay)?,
            student: teachers::StudentVars::of(vs),
        },
        DistilSource::Teachers { teachers, cache } if teachers.is_empty() => {
            let Some(p) = cache else {
                bail!("distillation: no teacher and no logit cache");
            };
            TeacherSource::cache_only(LogitCache::open(p)?, ds)
                .with_context(|| format!("logit cache {}", p.display()))?
        }
        DistilSource::Teachers { teachers, cache } => {
            let set = teachers::TeacherSet::load(
                teachers,
                cfg.distillation.teacher_average,
                ds,
                cfg.teacher.input_size,
                vs.device(),
            )?;
            match cache {
                Some(p) => TeacherSource::cached(set, LogitCache::open(p)?, ds)
                    .with_context(|| format!("logit cache {}", p.display()))?,
                None => {
                    let inputs = set.inputs(ds, Split::Train, train_opts)?;
                    TeacherSource::Live { set, inputs }
                }
            }
        }
    })
}

/// Epochs of the distillation schedule of a student: head plus fine-tuning (the `hard` phase
/// after them trains on the labels only).
pub fn distill_epochs(cfg: &Config) -> usize {
    cfg.epochs_head + cfg.epochs_finetune
}

/// [`train_network`], distilling from `distil` when given (a student only): the engine runs the
/// [`crate::distill::objective::KdObjective`] instead of the hard loss, with the same phases.
pub fn train_network_with(
    role: Role,
    opts: &StageOptions,
    distil: Option<&DistilSource>,
) -> Result<StageReport> {
    if distil.is_some() && role != Role::Student {
        bail!("only a student is distilled");
    }
    let started = Instant::now();
    let cfg = &opts.config;
    let mut ds = load_dataset(&opts.data_dir, cfg.mode)?;
    cfg.check_num_classes(&ds.classes)
        .with_context(|| format!("{} vs {}", opts.data_dir.display(), "the configuration"))?;
    let arch = opts
        .arch
        .clone()
        .unwrap_or_else(|| cfg.network(role).arch.clone());
    let spec = cfg.model_spec(role, opts.arch.as_deref())?;
    limit_train(&mut ds, opts.limit_train)?;
    let saved = SavedModel::new(role, &arch, &spec, &ds.classes, ds.mode);
    let saved_path = SavedModel::path(&opts.out_dir);
    if opts.resume && saved_path.exists() {
        let before = SavedModel::load(&opts.out_dir)?;
        if before != saved {
            bail!(
                "{}: the folder holds a different network ({} {}); resume needs the same \
                 (or use a new --out-dir)",
                saved_path.display(),
                before.role.name(),
                before.resolved
            );
        }
    }

    tch::manual_seed(cfg.seed as i64);
    let mut vs = nn::VarStore::new(opts.device);
    let model = models::build(&vs.root(), &spec)?;
    let n_train = ds.split(Split::Train).len();
    let n_val = ds.split(Split::Val).len();
    if n_train < 2 {
        // BatchNorm's training statistics need two samples per batch (libtorch would abort).
        bail!(
            "{}: {n_train} training image(s); training needs at least 2",
            ds.root.join(Split::Train.file_name()).display()
        );
    }
    let train_opts = loader_options(&spec, cfg, n_train, true, opts.workers);
    let train_src = Loader::new(&ds, Split::Train, train_opts.clone())?;
    let val_src = Loader::new(
        &ds,
        Split::Val,
        loader_options(&spec, cfg, n_val, false, opts.workers),
    )?;
    let mut tspec = TrainSpec::from_config(cfg, role, ds.mode, ds.classes.clone());
    tspec.resume = opts.resume;

    checkpoint_dir(&opts.out_dir, opts.resume)?;
    checkpoint::atomic_write_text(&saved_path, &(serde_json::to_string_pretty(&saved)? + "\n"))?;
    if !opts.quiet {
        eprintln!(
            "{}: {} at {} px, {} train / {} val images, {} classes ({}), device {:?}",
            role.name(),
            spec,
            spec.input_size,
            train_src.len(),
            val_src.len(),
            ds.classes.len(),
            ds.mode.name(),
            opts.device
        );
    }
    let quiet = opts.quiet;
    let mut on_epoch = |r: &EpochRecord| {
        if !quiet {
            eprintln!("{}", epoch_line(r));
        }
    };
    let report = match distil {
        None => train::run_classifier(
            &tspec,
            &train_src,
            &val_src,
            model.as_ref(),
            &mut vs,
            &opts.out_dir,
            &mut on_epoch,
        )?,
        Some(d) => {
            let source = teacher_source(d, cfg, &ds, &vs, &spec, &train_opts)?;
            let probe = probe_images(&train_src, cfg.batch_size)?.to_device(opts.device);
            let mut objective = crate::distill::objective::KdObjective::new(
                model.as_ref(),
                &cfg.distillation,
                &ds,
                distill_epochs(cfg),
                source,
                &probe,
            )?;
            let groups = model.layer_groups();
            train::run_with(
                &tspec,
                &train_src,
                &val_src,
                model.as_ref(),
                &mut vs,
                &groups,
                &opts.out_dir,
                &mut objective,
                &mut on_epoch,
            )?
        }
    };
    drop((train_src, val_src));

    let best = report
        .best_weights
        .clone()
        .context("training ended without a best checkpoint")?;
    vs.load(&best)
        .with_context(|| format!("{}: cannot load", best.display()))?;
    let (test, rows) = evaluate(
        model.as_ref(),
        opts.device,
        &ds,
        Split::Test,
        cfg.batch_size,
        opts.workers,
    )?;
    write_evaluation(&test, &rows, &opts.out_dir)?;
    Ok(StageReport {
        train: report,
        test,
        model: saved,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The images of the first batch of `loader`'s epoch 0 (at most `batch_size`): what objectives
/// probe the networks' shapes with.
pub fn probe_images(loader: &Loader, batch_size: usize) -> Result<Tensor> {
    let n = loader.len().min(batch_size.max(2));
    let indices: Vec<usize> = (0..n).collect();
    Ok(loader.batch(&indices, 0)?.images)
}

/// One image's evaluation: its list name, true and predicted class indices.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Image path as in the list.
    pub image: String,
    /// True classes.
    pub truth: Vec<usize>,
    /// Predicted classes (multi-class: the top-1; multi-label: probability above 0.5).
    pub predicted: Vec<usize>,
}

/// Raw outputs of `forward` (no gradient) over `split` of `ds` in list order, fed through the
/// evaluation input ([`crate::pipeline::eval_input`]: letterbox to `input_size`, then
/// `normalization`): `[N, C]` float32 on the CPU, and each image's class indices.
pub fn split_logits(
    forward: &dyn Fn(&Tensor) -> Result<Tensor>,
    input_size: u32,
    normalization: Normalization,
    ds: &Dataset,
    split: Split,
    batch_size: usize,
    workers: usize,
) -> Result<(Tensor, Vec<Vec<usize>>)> {
    let mut o = LoaderOptions::new(input_size as usize, batch_size, normalization);
    o.workers = workers;
    let loader = Loader::new(ds, split, o)?;
    if loader.is_empty() {
        bail!("{} split: no image to evaluate", split.name());
    }
    let mut outs = Vec::with_capacity(loader.len().div_ceil(batch_size.max(1)));
    let mut labels: Vec<Vec<usize>> = Vec::with_capacity(loader.len());
    for batch in loader.epoch(0) {
        let batch = batch?;
        let out = tch::no_grad(|| forward(&batch.images))?
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        outs.push(out);
        labels.extend(batch.labels);
    }
    Ok((Tensor::cat(&outs, 0), labels))
}

/// Evaluates `model` (evaluation mode, no gradient) on `split` of `ds` through the evaluation
/// input ([`crate::pipeline::eval_input`] + the model's normalisation); the network's variables
/// must be on `device`.
pub fn evaluate(
    model: &dyn Classifier,
    device: Device,
    ds: &Dataset,
    split: Split,
    batch_size: usize,
    workers: usize,
) -> Result<(Metrics, Vec<Prediction>)> {
    let spec = model.spec();
    let (logits, labels) = split_logits(
        &|x: &Tensor| Ok(model.forward_t(&x.to_device(device), false)),
        spec.input_size,
        spec.normalization,
        ds,
        split,
        batch_size,
        workers,
    )?;
    let out = match ds.mode {
        Mode::MultiClass => logits,
        Mode::MultiLabel => logits.sigmoid(),
    };
    let (scores, c) = eval::scores_from_tensor(&out)?;
    let nc = ds.classes.len();
    if c != nc {
        bail!("the network has {c} outputs, the data set {nc} classes");
    }
    let entries = ds.split(split);
    let mut rows = Vec::with_capacity(labels.len());
    for ((row, truth), e) in scores.chunks_exact(nc).zip(&labels).zip(entries) {
        let predicted = match ds.mode {
            Mode::MultiClass => {
                // Highest score, lowest index among ties (as eval::multi_class ranks).
                let mut best = 0;
                for (j, &s) in row.iter().enumerate() {
                    if s > row[best] {
                        best = j;
                    }
                }
                vec![best]
            }
            Mode::MultiLabel => (0..nc).filter(|&j| row[j] > 0.5).collect(),
        };
        rows.push(Prediction {
            image: e.image.clone(),
            truth: truth.clone(),
            predicted,
        });
    }
    let metrics = match ds.mode {
        Mode::MultiClass => {
            let single = labels
                .iter()
                .zip(entries)
                .map(|(l, e)| match l[..] {
                    [c] => Ok(c),
                    _ => bail!("{}: multi-class needs exactly one class", e.image),
                })
                .collect::<Result<Vec<usize>>>()?;
            Metrics::MultiClass(eval::multi_class(&scores, &ds.classes, &single)?)
        }
        Mode::MultiLabel => Metrics::MultiLabel(eval::multi_label(
            &scores,
            &ds.classes,
            &labels,
            &vec![0.5; nc],
        )?),
    };
    Ok((metrics, rows))
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `metrics.json`, `confusion.svg` (multi-class) and `predictions.csv` into `dir`.
pub fn write_evaluation(m: &Metrics, rows: &[Prediction], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    m.write_json(&dir.join("metrics.json"))?;
    let classes = match m {
        Metrics::MultiClass(mc) => {
            eval::plot_confusion(mc, &dir.join("confusion.svg"))?;
            &mc.classes
        }
        Metrics::MultiLabel(ml) => &ml.classes,
    };
    let names = |ix: &[usize]| {
        ix.iter()
            .map(|&i| classes.get(i).map_or("?", String::as_str))
            .collect::<Vec<_>>()
            .join("|")
    };
    let mut csv = String::from("image,true,predicted\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{}",
            csv_field(&r.image),
            csv_field(&names(&r.truth)),
            csv_field(&names(&r.predicted))
        );
    }
    checkpoint::atomic_write_text(&dir.join("predictions.csv"), &csv)
}

/// `kdtrain eval`: rebuilds the network of `model_dir` from `checkpoints/model.json`, loads
/// `checkpoints/best.safetensors`, evaluates `split` of `data_dir` and writes the evaluation
/// files into `out` (default `<model_dir>/eval-<split>/`). Returns the metrics and the folder.
pub fn evaluate_model_dir(
    model_dir: &Path,
    data_dir: &Path,
    split: Split,
    device: Device,
    out: Option<&Path>,
    batch_size: usize,
    workers: usize,
) -> Result<(Metrics, PathBuf)> {
    let saved = SavedModel::load(model_dir)?;
    let mode = saved.mode()?;
    let ds = load_dataset(
        data_dir,
        match mode {
            Mode::MultiClass => ModeChoice::MultiClass,
            Mode::MultiLabel => ModeChoice::MultiLabel,
        },
    )?;
    if ds.classes != saved.classes {
        bail!(
            "{}: the data set's classes {:?} differ from the network's {:?} ({})",
            data_dir.display(),
            ds.classes,
            saved.classes,
            SavedModel::path(model_dir).display()
        );
    }
    let (_vs, model) = load_trained(model_dir, &saved, device)?;
    let (m, rows) = evaluate(model.as_ref(), device, &ds, split, batch_size, workers)?;
    let dir = out.map_or_else(
        || model_dir.join(format!("eval-{}", split.name())),
        Path::to_path_buf,
    );
    write_evaluation(&m, &rows, &dir)?;
    Ok((m, dir))
}

/// The weights of a training folder: `checkpoints/best.safetensors`.
pub fn best_weights(model_dir: &Path) -> PathBuf {
    model_dir.join("checkpoints").join("best.safetensors")
}

/// Rebuilds the network `saved` describes (the folder's `checkpoints/model.json`) on `device`
/// and loads [`best_weights`] into it; the var store owns the variables the network uses.
pub fn load_trained(
    model_dir: &Path,
    saved: &SavedModel,
    device: Device,
) -> Result<(nn::VarStore, Box<dyn Classifier>)> {
    let spec = saved.spec()?;
    let weights = best_weights(model_dir);
    let mut vs = nn::VarStore::new(device);
    let model = models::build(&vs.root(), &spec)?;
    vs.load(&weights)
        .with_context(|| format!("{}: cannot load", weights.display()))?;
    Ok((vs, model))
}

/// The headline numbers of a metrics set, for summaries: `top1 0.9123 top5 0.9987`.
pub fn headline(m: &Metrics) -> String {
    m.summary()
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}
