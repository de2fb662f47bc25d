//! `kdtrain`: the kdedge trainer's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kdtrainer::config::{Config, Role, TeacherConfig};
use kdtrainer::data::{self, import, ModeChoice, Split};
use kdtrainer::distill::{compare, teachers::TeacherSet};
use kdtrainer::quant::stage as quantize;
use kdtrainer::stages::{self, StageOptions, StageReport};

/// Train teachers, distil students, run QAT and export full-integer models.
#[derive(Parser)]
#[command(name = "kdtrain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the libtorch build, the devices it sees and which one training would use.
    Info {
        /// Device selection to resolve.
        #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
        device: DeviceArg,
    },
    /// Teacher-logit cache: compute (sharded), merge, NumPy .npz import/export, info.
    Logits {
        #[command(subcommand)]
        command: LogitsCommand,
    },
    /// Data set tools: import real data, validate, statistics.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Check a training configuration file and print it as parsed.
    Config {
        /// The YAML configuration.
        #[arg(long, default_value = "configs/default.yaml")]
        config: PathBuf,
    },
    /// Train a teacher: head warm-up with the backbone frozen, then the top `teacher.unfreeze`
    /// of the layers at `lr_finetune`; checkpoints, logs and plots go to --out-dir, and the best
    /// checkpoint is evaluated on the test split (metrics.json, confusion.svg, predictions.csv).
    Teacher(StageArgs),
    /// Train a student from scratch on hard labels with the same engine (head warm-up, then the
    /// top `student.unfreeze` of the layers); outputs as for `teacher`.
    Student(StageArgs),
    /// Distil a student: the student stage with the distillation objective (the configured
    /// losses, schedules, weighting, masks, gate, features) from the teachers (--teacher, else
    /// `distillation.teachers`; `distillation.self_distillation` needs none), run on every batch
    /// or read from --logit-cache. Outputs as for `student`, plus `train_steps.jsonl` with the
    /// per-step KD statistics.
    Distill {
        #[command(flatten)]
        stage: StageArgs,
        #[command(flatten)]
        teachers: TeacherArgs,
    },
    /// Quantise a trained student (a `student` / `distill` folder): PTQ calibration, QAT with
    /// the distillation loss still active (unless --no-distill), then the full-integer export
    /// (TFLite, ONNX, C array, labels, metrics, thresholds, inference config) into
    /// --out-dir/export; figures in --out-dir/quantize.json.
    Quantize {
        /// The float student's training folder.
        #[arg(long)]
        student_dir: PathBuf,
        #[command(flatten)]
        stage: StageArgs,
        #[command(flatten)]
        teachers: TeacherArgs,
        /// QAT on the hard labels only.
        #[arg(long)]
        no_distill: bool,
    },
    /// Reload a training folder's best checkpoint and the network spec saved beside it, and
    /// evaluate it on one split (metrics.json, confusion.svg, predictions.csv).
    Eval {
        /// A folder written by `kdtrain teacher` / `kdtrain student`.
        #[arg(long)]
        model_dir: PathBuf,
        /// Data set folder.
        #[arg(long)]
        data_dir: PathBuf,
        /// Which split.
        #[arg(long, value_enum, default_value_t = SplitArg::Test)]
        split: SplitArg,
        /// Output folder (default: <model-dir>/eval-<split>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Images per forward pass.
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Print metrics.json to stdout instead of the summary line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The whole pipeline, each stage into its own subfolder of --out-dir: data/ (validation
    /// report), teacher/ (unless `distillation.teachers` names the teachers), student/ (the
    /// student from scratch on hard labels), distil/teacher_logits.kdl (the teachers' logit
    /// cache, with `distillation.logit_cache`), distilled/ (the distilled student), eval/ (each
    /// reloaded and evaluated on the test split), comparison/ (teachers vs distilled vs scratch,
    /// seed criteria, curves), quantize/ (PTQ, QAT with the distillation loss, and export/: the
    /// TFLite, ONNX, C array and sidecar files); prints a summary. A stage can be rerun alone
    /// with its own command on its subfolder.
    Train {
        /// Data set folder.
        #[arg(long)]
        data_dir: PathBuf,
        /// Output folder.
        #[arg(long)]
        out_dir: PathBuf,
        /// The YAML configuration.
        #[arg(long, default_value = "configs/default.yaml")]
        config: PathBuf,
        /// Continue the stages' checkpoints (finished stages are not retrained).
        #[arg(long)]
        resume: bool,
        /// Train on the first N training images only.
        #[arg(long)]
        limit_train: Option<usize>,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// Options of `kdtrain teacher` and `kdtrain student`.
#[derive(Args)]
struct StageArgs {
    /// Data set folder (images/, train.txt, val.txt, test.txt).
    #[arg(long)]
    data_dir: PathBuf,
    /// Output folder (checkpoints, logs, plots, metrics).
    #[arg(long)]
    out_dir: PathBuf,
    /// The YAML configuration.
    #[arg(long, default_value = "configs/default.yaml")]
    config: PathBuf,
    /// Network, overriding `teacher.arch` / `student.arch` (e.g. resnet_tiny_cifar,
    /// efficientnet_b0, mobilenet_v2:0.35).
    #[arg(long)]
    arch: Option<String>,
    /// Continue from the checkpoint in --out-dir.
    #[arg(long)]
    resume: bool,
    /// Train on the first N training images only.
    #[arg(long)]
    limit_train: Option<usize>,
    #[command(flatten)]
    run: RunArgs,
}

/// The teachers of `distill` / `quantize`.
#[derive(Args)]
struct TeacherArgs {
    /// A teacher: a training folder or a TorchScript file, optionally `PATH=WEIGHT`;
    /// repeatable (default: `distillation.teachers`).
    #[arg(long = "teacher")]
    teacher: Vec<String>,
    /// A logit cache of exactly these teachers (`kdtrain logits compute` / `merge`), read
    /// instead of running them; without any teacher, a cache used on its own (checked against
    /// the data set only; e.g. `kdtrain logits import-npz`).
    #[arg(long)]
    logit_cache: Option<PathBuf>,
}

impl TeacherArgs {
    /// The distillation source: self-distillation, or the teachers given or configured.
    fn source(&self, cfg: &Config) -> Result<stages::DistilSource> {
        if cfg.distillation.self_distillation {
            if !self.teacher.is_empty() || self.logit_cache.is_some() {
                anyhow::bail!(
                    "--teacher / --logit-cache: distillation.self_distillation is on (the \
                     teacher is the student's EMA)"
                );
            }
            return Ok(stages::DistilSource::SelfEma);
        }
        let teachers = if self.teacher.is_empty() {
            cfg.distillation.teachers.clone()
        } else {
            self.teacher
                .iter()
                .map(|s| teacher_arg(s))
                .collect::<Result<_>>()?
        };
        if teachers.is_empty() && self.logit_cache.is_none() {
            anyhow::bail!(
                "no teacher: pass --teacher DIR (a `kdtrain teacher` folder), set \
                 distillation.teachers, or give --logit-cache (e.g. from `kdtrain logits \
                 import-npz`)"
            );
        }
        Ok(stages::DistilSource::Teachers {
            teachers,
            cache: self.logit_cache.clone(),
        })
    }
}

/// Device and threads.
#[derive(Args)]
struct RunArgs {
    /// Where to run.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// libtorch and image-decoding threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// No per-epoch progress lines.
    #[arg(long)]
    quiet: bool,
}

impl RunArgs {
    /// Applies the thread count and resolves the device.
    fn setup(&self) -> Result<(tch::Device, usize)> {
        if let Some(n) = self.threads {
            if n == 0 {
                anyhow::bail!("--threads: must be at least 1");
            }
            tch::set_num_threads(n as i32);
        }
        Ok((resolve_device(self.device)?, self.threads.unwrap_or(0)))
    }
}

/// `--split train|val|test`.
#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Val,
    Test,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Val => Split::Val,
            SplitArg::Test => Split::Test,
        }
    }
}

fn resolve_device(d: DeviceArg) -> Result<tch::Device> {
    kdtrainer::device::resolve(match d {
        DeviceArg::Auto => kdtrainer::device::Choice::Auto,
        DeviceArg::Cpu => kdtrainer::device::Choice::Cpu,
        DeviceArg::Cuda => kdtrainer::device::Choice::Cuda,
    })
}

impl StageArgs {
    /// The stage options these arguments give.
    fn options(&self) -> Result<StageOptions> {
        let config = Config::load(&self.config)?;
        let (device, workers) = self.run.setup()?;
        Ok(StageOptions {
            data_dir: self.data_dir.clone(),
            out_dir: self.out_dir.clone(),
            config,
            arch: self.arch.clone(),
            device,
            resume: self.resume,
            limit_train: self.limit_train,
            workers,
            quiet: self.run.quiet,
        })
    }
}

/// Runs `kdtrain teacher` / `kdtrain student` / `kdtrain distill`.
fn run_stage(role: Role, a: StageArgs, teachers: Option<TeacherArgs>) -> Result<StageReport> {
    let opts = a.options()?;
    let source = teachers.map(|t| t.source(&opts.config)).transpose()?;
    let rep = stages::train_network_with(role, &opts, source.as_ref())?;
    emit(&stage_summary(role, &rep, &a.out_dir))?;
    Ok(rep)
}

/// The lines printed at the end of a training stage.
fn stage_summary(role: Role, rep: &StageReport, out: &std::path::Path) -> String {
    let t = &rep.train;
    let best = t.best.map_or("none".to_string(), |(e, v)| {
        format!("epoch {e} ({} {v:.4})", monitor_name(rep))
    });
    let resumed = t
        .resumed_at
        .map_or(String::new(), |e| format!(", resumed at epoch {e}"));
    let early = if t.stopped_early.is_empty() {
        String::new()
    } else {
        format!(", early stop in {}", t.stopped_early.join(", "))
    };
    format!(
        "{}: {} ({}), {} epochs{resumed}{early}; best {best}
{}: test {}
{}: {} ({:.0} s)
",
        role.name(),
        rep.model.arch,
        rep.model.resolved,
        t.history.len(),
        role.name(),
        stages::headline(&rep.test),
        role.name(),
        out.display(),
        rep.seconds
    )
}

fn monitor_name(rep: &StageReport) -> &'static str {
    if rep.model.mode == "multi-label" {
        "val f1_micro"
    } else {
        "val top1"
    }
}

/// The lines printed at the end of the quantisation stage.
fn quantize_summary(q: &quantize::QuantizeReport) -> String {
    let mut s = format!(
        "quantize: test float {}\nquantize: PTQ fake-quant {}, int8 (kdruntime) {}\n",
        stages::headline(&q.float),
        stages::headline(&q.ptq_fake),
        stages::headline(&q.ptq.metrics)
    );
    if let Some((t, m)) = &q.qat {
        s += &format!(
            "quantize: QAT ({} epochs) fake-quant {}, int8 (kdruntime) {}\n",
            t.history.len(),
            stages::headline(m),
            stages::headline(&q.export.metrics)
        );
    }
    s += &format!(
        "export: {} files in {} (arena {} bytes) ({:.0} s)\n",
        q.export.files.len(),
        q.export_dir.display(),
        q.export.arena_bytes,
        q.seconds
    );
    for f in &q.export.files {
        s += &format!("  {} ({} bytes)\n", f.path.display(), f.bytes);
    }
    s
}

/// Computes the teachers' logit cache at `path` unless a valid one is there already; returns
/// the summary line.
fn teacher_logit_cache(
    cfg: &Config,
    ds: &kdtrainer::data::Dataset,
    teachers: &[TeacherConfig],
    device: tch::Device,
    workers: usize,
    path: &std::path::Path,
) -> Result<String> {
    use kdtrainer::distill::cache;
    let set = TeacherSet::load(
        teachers,
        cfg.distillation.teacher_average,
        ds,
        cfg.teacher.input_size,
        device,
    )?;
    if path.exists() {
        let c = cache::LogitCache::open(path)?;
        if c.verify(&cache::data_hash(&ds.root)?, Some(&set.hash()))
            .is_ok()
            && c.check_complete().is_ok()
        {
            return Ok(format!("logit cache: {} (up to date)\n", path.display()));
        }
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    let c = cache::compute(&set, ds, cache::Shard::ALL, cfg.batch_size, workers, path)?;
    Ok(format!(
        "logit cache: {} samples x {} teachers in {} ({:.0} s)\n",
        c.header.samples,
        c.header.teachers,
        c.path.display(),
        c.seconds
    ))
}

/// Runs `kdtrain train`.
fn run_pipeline(
    data_dir: PathBuf,
    out_dir: PathBuf,
    config: PathBuf,
    resume: bool,
    limit_train: Option<usize>,
    run: RunArgs,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let cfg = Config::load(&config)?;
    let (device, workers) = run.setup()?;
    stages::load_dataset(&data_dir, cfg.mode)?;

    // 1. Data.
    let report = data::validate::validate(&data_dir, cfg.mode)?;
    let data_out = out_dir.join("data");
    std::fs::create_dir_all(&data_out)?;
    std::fs::write(
        data_out.join("validate.json"),
        report.to_json()
            + "
",
    )?;
    if !report.valid {
        eprint!("{}", report.to_text());
        anyhow::bail!(
            "{}: the data set is invalid ({} errors; report in {})",
            data_dir.display(),
            report.errors.len(),
            data_out.join("validate.json").display()
        );
    }
    let mut summary = format!(
        "data: {} images checked, valid ({})
",
        report.images_checked,
        data_out.join("validate.json").display()
    );
    emit(&summary)?;

    let opts = |dir: PathBuf| StageOptions {
        data_dir: data_dir.clone(),
        out_dir: dir,
        config: cfg.clone(),
        arch: None,
        device,
        resume,
        limit_train,
        workers,
        quiet: run.quiet,
    };

    // 2. Teacher (unless `distillation.teachers` names the teachers), 3. student from scratch.
    let mut roles = vec![(Role::Student, "student")];
    if cfg.distillation.teachers.is_empty() {
        roles.insert(0, (Role::Teacher, "teacher"));
    }
    let mut reports = std::collections::BTreeMap::new();
    for (role, name) in roles {
        let dir = out_dir.join(name);
        let rep = stages::train_network(role, &opts(dir.clone()))
            .with_context(|| format!("stage {name}"))?;
        let s = stage_summary(role, &rep, &dir);
        emit(&s)?;
        summary += &s;
        reports.insert(name, rep);
    }

    // 4. The teachers' logits over the training split, once, and 5. the distilled student.
    let teachers = if cfg.distillation.teachers.is_empty() {
        vec![TeacherConfig::new(out_dir.join("teacher"))]
    } else {
        cfg.distillation.teachers.clone()
    };
    let distil = if cfg.distillation.self_distillation {
        stages::DistilSource::SelfEma
    } else {
        let cache = if cfg.distillation.logit_cache {
            let ds = stages::load_dataset(&data_dir, cfg.mode)?;
            let path = out_dir.join("distil").join("teacher_logits.kdl");
            let s = teacher_logit_cache(&cfg, &ds, &teachers, device, workers, &path)
                .context("stage logit cache")?;
            emit(&s)?;
            summary += &s;
            Some(path)
        } else {
            None
        };
        stages::DistilSource::Teachers {
            teachers: teachers.clone(),
            cache,
        }
    };
    let distilled_dir = out_dir.join("distilled");
    let rep =
        stages::train_network_with(Role::Student, &opts(distilled_dir.clone()), Some(&distil))
            .context("stage distilled")?;
    let s = stage_summary(Role::Student, &rep, &distilled_dir).replace("student:", "distilled:");
    emit(&s)?;
    summary += &s;
    reports.insert("distilled", rep);

    // Every network reloaded from its folder and evaluated on the test split.
    for name in reports.keys() {
        let out = out_dir.join("eval").join(name);
        let (m, _) = stages::evaluate_model_dir(
            &out_dir.join(name),
            &data_dir,
            Split::Test,
            device,
            Some(&out),
            cfg.batch_size,
            workers,
        )
        .with_context(|| format!("stage eval ({name})"))?;
        summary += &format!(
            "eval {name}: test {} ({})\n",
            stages::headline(&m),
            out.display()
        );
    }

    // 6. Teachers vs distilled vs scratch on the test split.
    let ds = stages::load_dataset(&data_dir, cfg.mode)?;
    let set = TeacherSet::load(
        &teachers,
        cfg.distillation.teacher_average,
        &ds,
        cfg.teacher.input_size,
        device,
    )?;
    let cmp_dir = out_dir.join("comparison");
    let cmp = compare::compare_folders(
        &compare::Subjects {
            teachers: &set,
            distilled: (&distilled_dir, &reports["distilled"].train.history),
            scratch: (&out_dir.join("student"), &reports["student"].train.history),
        },
        &ds,
        cfg.batch_size,
        workers,
        &cmp_dir,
    )
    .context("stage comparison")?;
    drop(set);
    let s = format!("comparison ({}):\n{}", cmp_dir.display(), cmp.markdown());
    emit(&s)?;
    summary += &s;

    // 7. PTQ, QAT with the distillation loss, integer export.
    let q = quantize::quantize(
        &distilled_dir,
        &opts(out_dir.join("quantize")),
        Some(&distil),
    )
    .context("stage quantize")?;
    let s = quantize_summary(&q);
    emit(&s)?;
    summary += &s;

    emit(&format!(
        "\nsummary ({:.0} s):\n{summary}",
        started.elapsed().as_secs_f64()
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
enum LogitsCommand {
    /// Run every teacher (evaluation mode, no augmentation, its own input size and
    /// normalisation) over the training split and store the logits as an f16 cache. With a
    /// shard (--shard, Slurm array or indexed Kubernetes Job variables) only that shard is
    /// computed, into OUT.I-of-N; join the shards with `kdtrain logits merge`.
    Compute {
        /// The YAML configuration (teachers from `distillation.teachers` unless --teacher).
        #[arg(long, default_value = "configs/default.yaml")]
        config: PathBuf,
        /// Data set folder.
        #[arg(long)]
        data_dir: PathBuf,
        /// A teacher: a training folder or a TorchScript file (input `teacher.input_size`,
        /// ImageNet normalisation), with an optional ensemble weight: PATH[=WEIGHT]. Repeatable.
        #[arg(long = "teacher")]
        teachers: Vec<String>,
        /// Averaging recorded in the cache (default `distillation.teacher_average`).
        #[arg(long, value_enum)]
        average: Option<AverageArg>,
        /// Output cache file.
        #[arg(long)]
        out: PathBuf,
        /// This process's shard, INDEX/COUNT (default: Slurm array, Kubernetes
        /// JOB_COMPLETION_INDEX, else 0/1).
        #[arg(long)]
        shard: Option<String>,
        /// Shard count for JOB_COMPLETION_INDEX (or set KDEDGE_SHARD_COUNT).
        #[arg(long)]
        shard_count: Option<u32>,
        /// Images per forward pass.
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Join shard files into one cache, checking that every sample appears exactly once.
    Merge {
        /// The merged cache to write.
        out: PathBuf,
        /// The shard files.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
    },
    /// Write a cache from a NumPy .npz with `logits` ([N, C] or [N, K, C]) and `indices` ([N]).
    ImportNpz {
        /// The .npz file.
        npz: PathBuf,
        /// Data set folder (its train.txt is what `indices` point into).
        #[arg(long)]
        data_dir: PathBuf,
        /// Output cache file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a cache as a NumPy .npz: `logits` float32 [N, C] (the recorded ensemble when
    /// there are several teachers) or [N, K, C] with --per-teacher, `indices` int64 [N].
    ExportNpz {
        /// The cache file.
        cache: PathBuf,
        /// Output .npz file.
        #[arg(long)]
        out: PathBuf,
        /// Keep one row per teacher ([N, K, C]).
        #[arg(long)]
        per_teacher: bool,
    },
    /// Print a cache's header.
    Info {
        /// The cache file.
        file: PathBuf,
    },
}

/// `--average logits|probs`.
#[derive(Clone, Copy, ValueEnum)]
enum AverageArg {
    Logits,
    Probs,
}

/// Parses `PATH[=WEIGHT]` (a path containing `=` needs the weight given explicitly).
fn teacher_arg(s: &str) -> Result<TeacherConfig> {
    let t = match s.rsplit_once('=') {
        Some((p, w)) => {
            let mut t = TeacherConfig::new(p);
            t.weight = w
                .parse()
                .with_context(|| format!("--teacher {s:?}: weight {w:?} is not a number"))?;
            t
        }
        None => TeacherConfig::new(s),
    };
    t.validate(&format!("--teacher {s:?}"))?;
    Ok(t)
}

fn run_logits(command: LogitsCommand) -> Result<ExitCode> {
    use kdtrainer::distill::{cache, npz, teachers};
    match command {
        LogitsCommand::Compute {
            config,
            data_dir,
            teachers: flags,
            average,
            out,
            shard,
            shard_count,
            batch_size,
            run,
        } => {
            let cfg = Config::load(&config)?;
            let (device, workers) = run.setup()?;
            if batch_size == 0 {
                anyhow::bail!("--batch-size: must be at least 1");
            }
            let (shard, source) =
                cache::Shard::resolve(shard.as_deref(), shard_count, &|k| std::env::var(k).ok())?;
            let ds = stages::load_dataset(&data_dir, cfg.mode)?;
            cfg.check_num_classes(&ds.classes)?;
            let list = if flags.is_empty() {
                if cfg.distillation.teachers.is_empty() {
                    anyhow::bail!(
                        "no teacher: pass --teacher PATH[=WEIGHT] or set distillation.teachers in {}",
                        config.display()
                    );
                }
                cfg.distillation.teachers.clone()
            } else {
                flags
                    .iter()
                    .map(|s| teacher_arg(s))
                    .collect::<Result<Vec<_>>>()?
            };
            let avg = match average {
                Some(AverageArg::Logits) => teachers::Average::Logits,
                Some(AverageArg::Probs) => teachers::Average::Probs,
                None => cfg.distillation.teacher_average,
            };
            let set = teachers::TeacherSet::load(&list, avg, &ds, cfg.teacher.input_size, device)?;
            if !run.quiet {
                eprintln!(
                    "logits: shard {}/{} ({source:?}), {} teacher(s): {}",
                    shard.index,
                    shard.count,
                    set.len(),
                    set.members()
                        .iter()
                        .map(|m| m.description.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let c = cache::compute(&set, &ds, shard, batch_size, workers, &out)?;
            emit(&format!(
                "{}: {} of {} samples, {} teacher(s), {} classes, shard {}/{} ({:.1} s)\n",
                c.path.display(),
                c.header.samples,
                c.header.list_len,
                c.header.teachers,
                c.header.classes,
                shard.index,
                shard.count,
                c.seconds
            ))?;
        }
        LogitsCommand::Merge { out, shards } => {
            let h = cache::merge(&out, &shards)?;
            emit(&format!(
                "{}: {} samples from {} file(s)\n",
                out.display(),
                h.samples,
                shards.len()
            ))?;
        }
        LogitsCommand::ImportNpz { npz, data_dir, out } => {
            let ds = stages::load_dataset(&data_dir, ModeChoice::Auto)?;
            let h = npz::import(&npz, &ds, &out)?;
            emit(&format!(
                "{}: {} of {} samples, {} teacher(s), {} classes from {}\n",
                out.display(),
                h.samples,
                h.list_len,
                h.teachers,
                h.classes,
                npz.display()
            ))?;
        }
        LogitsCommand::ExportNpz {
            cache: file,
            out,
            per_teacher,
        } => {
            let c = cache::LogitCache::open(&file)?;
            let e = npz::export(&c, &out, per_teacher)?;
            emit(&format!("{}: logits {:?}\n", out.display(), e.shape))?;
        }
        LogitsCommand::Info { file } => {
            let c = cache::LogitCache::open(&file)?;
            emit(&format!("{}\n{}", file.display(), c.header().describe()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
enum DataCommand {
    /// Check that every list parses, every image decodes and no image leaks between splits;
    /// print the statistics. Exit status 1 when the data set is invalid.
    Validate {
        /// Data set folder (images/, train.txt, val.txt, test.txt).
        dir: PathBuf,
        /// Multi-class / multi-label: detect, or force one.
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        mode: ModeArg,
        /// Print JSON (schema kdedge.data.validate/1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Images per split, per-class counts, label cardinality and no-label rate (lists only).
    Stats {
        /// Data set folder.
        dir: PathBuf,
        /// Multi-class / multi-label: detect, or force one.
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        mode: ModeArg,
        /// Print JSON (schema kdedge.data.stats/1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a real data set in the kdedge format from raw downloads.
    Import {
        /// Which source.
        #[arg(value_enum)]
        source: Source,
        /// Folder of the raw files (e.g. data/raw/fashion-mnist or data/raw/digits).
        #[arg(long)]
        raw: PathBuf,
        /// Output data set folder (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// At most N images per split.
        #[arg(long)]
        limit: Option<usize>,
        /// Seed of the split carve and the subsets.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Fashion-MNIST sources: training images carved off as the validation split.
        #[arg(long, default_value_t = 6000)]
        val: usize,
    },
}

/// `--mode auto|multi-class|multi-label`.
#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Auto,
    MultiClass,
    MultiLabel,
}

impl From<ModeArg> for ModeChoice {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Auto => ModeChoice::Auto,
            ModeArg::MultiClass => ModeChoice::MultiClass,
            ModeArg::MultiLabel => ModeChoice::MultiLabel,
        }
    }
}

/// Importable sources.
#[derive(Clone, Copy, ValueEnum)]
enum Source {
    /// Fashion-MNIST IDX files: 10 garments, multi-class.
    FashionMnist,
    /// scikit-learn digits.csv.gz: 8x8 digits, multi-class.
    Digits,
    /// 2x2 mosaics of Fashion-MNIST images: multi-label.
    FashionMosaic,
}

/// `--device auto|cpu|cuda`.
#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Info { device } => {
            print!("{}", kdtrainer::device::report(resolve_device(device)?));
        }
        Command::Teacher(a) => {
            run_stage(Role::Teacher, a, None)?;
        }
        Command::Student(a) => {
            run_stage(Role::Student, a, None)?;
        }
        Command::Distill { stage, teachers } => {
            run_stage(Role::Student, stage, Some(teachers))?;
        }
        Command::Quantize {
            student_dir,
            stage,
            teachers,
            no_distill,
        } => {
            let opts = stage.options()?;
            let source = (!no_distill)
                .then(|| teachers.source(&opts.config))
                .transpose()?;
            let q = quantize::quantize(&student_dir, &opts, source.as_ref())?;
            emit(&quantize_summary(&q))?;
        }
        Command::Eval {
            model_dir,
            data_dir,
            split,
            out,
            batch_size,
            json,
            run,
        } => {
            let (device, workers) = run.setup()?;
            if batch_size == 0 {
                anyhow::bail!("--batch-size: must be at least 1");
            }
            let (m, dir) = stages::evaluate_model_dir(
                &model_dir,
                &data_dir,
                split.into(),
                device,
                out.as_deref(),
                batch_size,
                workers,
            )?;
            emit(&if json {
                serde_json::to_string_pretty(&m.to_json())? + "\n"
            } else {
                format!(
                    "{} {}: {} ({})\n",
                    model_dir.display(),
                    Split::from(split).name(),
                    stages::headline(&m),
                    dir.display()
                )
            })?;
        }
        Command::Train {
            data_dir,
            out_dir,
            config,
            resume,
            limit_train,
            run,
        } => return run_pipeline(data_dir, out_dir, config, resume, limit_train, run),
        Command::Data { command } => return run_data(command),
        Command::Logits { command } => return run_logits(command),
        Command::Config { config } => {
            let cfg = Config::load(&config)?;
            emit(&format!("{}: valid\n{cfg:#?}\n", config.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`kdtrain ... | head`) ends output quietly instead of panicking.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn run_data(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Validate { dir, mode, json } => {
            let report = data::validate::validate(&dir, mode.into())?;
            emit(&if json {
                report.to_json() + "\n"
            } else {
                report.to_text()
            })?;
            if !report.valid {
                return Ok(ExitCode::FAILURE);
            }
        }
        DataCommand::Stats { dir, mode, json } => {
            let ds = data::Dataset::load(&dir, mode.into())?;
            let stats = data::stats::compute(&ds);
            emit(&if json {
                stats.to_json() + "\n"
            } else {
                stats.to_text()
            })?;
        }
        DataCommand::Import {
            source,
            raw,
            out,
            limit,
            seed,
            val,
        } => {
            let counts = match source {
                Source::FashionMnist => import::fashion_mnist::import(
                    &raw,
                    &out,
                    &import::fashion_mnist::Options { limit, seed, val },
                )?,
                Source::Digits => import::digits::import(&raw, &out, limit, seed)?,
                Source::FashionMosaic => import::mosaic::import(
                    &raw,
                    &out,
                    &import::mosaic::Options {
                        limit,
                        seed,
                        val,
                        ..Default::default()
                    },
                )?,
            };
            emit(&format!(
                "{}: train {} / val {} / test {} images\n",
                out.display(),
                counts[0],
                counts[1],
                counts[2]
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
