//! `bench`: the latency benchmark behind `make bench`.
//!
//! ```text
//! bench run [--out DIR] [--model PATH.tflite]... [--quick]
//!     Times MobileNetV2-0.35@96, MobileNetV2-1.0@224 and EfficientNet-Lite0@224 (random
//!     weights) plus the demo model (or the --model files instead of it, e.g. the exported
//!     model_qat_int8.tflite; an .onnx file with the same stem is timed on ONNX Runtime) on
//!     kdruntime, TFLite XNNPACK, TFLite BUILTIN_REF, TFLite Micro and ONNX Runtime.
//!     Writes DIR/latency.json (default docs/benchmarks); models go to target/bench/models.
//!     --quick: 1 warm-up, 3 timed invokes, no time floor (for a smoke test).
//! bench profile [--model PATH.tflite]... [--kernels reference|avx2|fastest] [--threads N] [--runs N] [--top N]
//!     Per-operator medians on kdruntime (default: the three standard networks, every kernel
//!     family, 1 thread, 20 runs, the 12 slowest operators).
//! bench report [--json FILE] [--accuracy FILE] [--markdown FILE] [--plot FILE]
//!     Rewrites BENCHMARKS.md's generated latency and accuracy blocks and the ratio plot
//!     (defaults: docs/benchmarks/latency.json, docs/benchmarks/accuracy.json, BENCHMARKS.md,
//!     docs/benchmarks/latency_ratio.svg).
//! ```
//!
//! Run it from the repository root with the release build (`make bench` does); the Python
//! peers need the venv (`KDEDGE_PYTHON`) and ONNX Runtime needs `ORT_DYLIB_PATH`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use kdruntime::kernels::simd::Kernels;
use kdtests::bench::{measure, profile, report, BenchReport, Policy};

const USAGE: &str = "usage: bench run [--out DIR] [--model PATH.tflite]... [--quick]\n       bench profile [--model PATH.tflite]... [--kernels reference|avx2|fastest] [--threads N] [--runs N] [--top N]\n       bench report [--json FILE] [--accuracy FILE] [--markdown FILE] [--plot FILE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--flag VALUE` pairs and bare flags, checked against what the subcommand accepts.
struct Args {
    pairs: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: &[String], valued: &[&str], bare: &[&str]) -> Result<Self> {
        let (mut pairs, mut flags) = (Vec::new(), Vec::new());
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if valued.contains(&a.as_str()) {
                let v = it
                    .next()
                    .with_context(|| format!("{a} needs a value\n{USAGE}"))?;
                pairs.push((a.clone(), v.clone()));
            } else if bare.contains(&a.as_str()) {
                flags.push(a.clone());
            } else {
                bail!("unknown argument '{a}'\n{USAGE}");
            }
        }
        Ok(Self { pairs, flags })
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn path(&self, key: &str, default: &str) -> PathBuf {
        PathBuf::from(self.all(key).last().copied().unwrap_or(default))
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let root = kdtests::workspace_root();
    match args.first().map(String::as_str) {
        Some("run") => {
            let a = Args::parse(&args[1..], &["--out", "--model"], &["--quick"])?;
            let out = a.path("--out", "docs/benchmarks");
            let policy = if a.flags.iter().any(|f| f == "--quick") {
                Policy {
                    warmup: 1,
                    min_runs: 3,
                    min_seconds: 0.0,
                    max_runs: 3,
                }
            } else {
                Policy::default()
            };
            let model_dir = root.join("target/bench/models");
            let mut models = measure::standard_models(&model_dir)?;
            let files = a.all("--model");
            if files.is_empty() {
                models.push(measure::demo_model(&model_dir)?);
            }
            for f in &files {
                models.push(measure::file_model(Path::new(f))?);
            }
            let mut command = String::from("make bench");
            if !files.is_empty() {
                command += &format!(" BENCH_MODELS={}", files.join(","));
            }
            if a.flags.iter().any(|f| f == "--quick") {
                command = format!("bench run --quick ({command} policy shortened)");
            }
            let rep = measure::run(&models, &policy, &command)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let path = out.join("latency.json");
            std::fs::write(&path, serde_json::to_string_pretty(&rep)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "bench: wrote {} ({:.0} s)",
                path.display(),
                rep.wall_seconds
            );
            Ok(())
        }
        Some("profile") => {
            let a = Args::parse(
                &args[1..],
                &["--model", "--kernels", "--threads", "--runs", "--top"],
                &[],
            )?;
            let number = |k: &str, default: usize| -> Result<usize> {
                a.all(k).last().map_or(Ok(default), |v: &&str| {
                    v.parse().with_context(|| format!("{k} {v}: not a number"))
                })
            };
            let (runs, top) = (number("--runs", 20)?, number("--top", 12)?);
            let threads = number("--threads", 1)?;
            if threads == 0 {
                bail!("--threads 0: at least 1");
            }
            let kernels: Vec<Kernels> = match a.all("--kernels").last().copied() {
                None => vec![Kernels::Reference, Kernels::Avx2, Kernels::Fastest],
                Some("reference") => vec![Kernels::Reference],
                Some("avx2") => vec![Kernels::Avx2],
                Some("fastest") => vec![Kernels::Fastest],
                Some(k) => bail!("--kernels {k}: expected reference, avx2 or fastest"),
            };
            let files = a.all("--model");
            let models = if files.is_empty() {
                measure::standard_models(&root.join("target/bench/models"))?
            } else {
                files
                    .iter()
                    .map(|f| measure::file_model(Path::new(f)))
                    .collect::<Result<_>>()?
            };
            for m in &models {
                for &k in &kernels {
                    let times = profile::profile(m, k, threads, runs)?;
                    println!(
                        "== {} on {k:?} ({:?}), {threads} thread(s)",
                        m.name,
                        k.path()
                    );
                    println!("{}", profile::table(&times, top));
                }
            }
            Ok(())
        }
        Some("report") => {
            let a = Args::parse(
                &args[1..],
                &["--json", "--accuracy", "--markdown", "--plot"],
                &[],
            )?;
            let json = a.path("--json", "docs/benchmarks/latency.json");
            let acc = a.path("--accuracy", "docs/benchmarks/accuracy.json");
            let md = a.path("--markdown", "BENCHMARKS.md");
            let plot = a.path("--plot", "docs/benchmarks/latency_ratio.svg");
            let text = std::fs::read_to_string(&json)
                .with_context(|| format!("reading {} (run `make bench` first)", json.display()))?;
            let rep: BenchReport = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", json.display()))?;
            if rep.schema != kdtests::bench::SCHEMA {
                bail!(
                    "{}: schema {} but this bench reads {}",
                    json.display(),
                    rep.schema,
                    kdtests::bench::SCHEMA
                );
            }
            report::plot_ratios(&rep, &plot)?;
            let accuracy: Option<report::AccuracyReport> = if acc.is_file() {
                let t = std::fs::read_to_string(&acc)
                    .with_context(|| format!("reading {}", acc.display()))?;
                Some(
                    serde_json::from_str(&t)
                        .with_context(|| format!("parsing {}", acc.display()))?,
                )
            } else {
                None
            };
            let doc = std::fs::read_to_string(&md)
                .with_context(|| format!("reading {}", md.display()))?;
            let rel = |p: &Path| measure::relative(p);
            let latency = report::latency_markdown(&rep, Some(&rel(&plot)));
            let doc = report::replace_block(&doc, "latency", &rel(&json), &latency)?;
            let acc_md = report::accuracy_markdown(accuracy.as_ref(), &rel(&acc))?;
            let doc = report::replace_block(&doc, "accuracy", &rel(&acc), &acc_md)?;
            std::fs::write(&md, doc).with_context(|| format!("writing {}", md.display()))?;
            eprintln!("bench: updated {} and {}", md.display(), plot.display());
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}
