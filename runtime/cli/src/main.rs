//! `kdrun`: inspect a full-integer TFLite model, classify an image with it, or run raw tensors,
//! all on kdruntime with the same letterbox the trainer used; with the `ort` feature, `run` and
//! `raw` also run the exported ONNX model in ONNX Runtime (`--backend ort`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kdrun::{config, image_input, report};
use kdruntime::kernels::simd::Kernels;
use kdruntime::{Interpreter, Model};

/// Run full-integer TFLite models on kdruntime (or ONNX models on ONNX Runtime).
#[derive(Parser)]
#[command(name = "kdrun", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which engine runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// kdruntime on a .tflite file.
    Kdruntime,
    /// ONNX Runtime on a .onnx file (needs kdrun built with the `ort` feature).
    Ort,
}

/// `--kernels` values (kdruntime's `Kernels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum KernelChoice {
    /// The fastest this CPU has.
    Fastest,
    /// The plain reference kernels.
    Reference,
    /// x86_64 AVX2 (the reference where the CPU lacks it).
    Avx2,
}

impl BackendArgs {
    /// kdruntime's interpreter on `m` in `arena` (sized here) with the chosen kernels and
    /// threads.
    fn interpreter<'m, 'a>(
        &self,
        m: &Model<'m>,
        arena: &'a mut Vec<u8>,
    ) -> Result<Interpreter<'m, 'a>> {
        let kernels = match self.kernels {
            KernelChoice::Fastest => Kernels::Fastest,
            KernelChoice::Reference => Kernels::Reference,
            KernelChoice::Avx2 => Kernels::Avx2,
        };
        *arena = vec![0u8; m.arena_size_for(kernels)?];
        let mut interp = Interpreter::with_kernels(m, arena, kernels)?;
        interp.set_threads(usize::from(self.threads));
        Ok(interp)
    }
}

/// Backend selection shared by `run` and `raw`.
#[derive(clap::Args)]
struct BackendArgs {
    /// The engine: kdruntime (.tflite) or ort (ONNX Runtime, .onnx).
    #[arg(long, value_enum, default_value_t = Backend::Kdruntime)]
    backend: Backend,
    /// kdruntime's kernels: the fastest bit-exact ones this CPU has, the plain reference
    /// kernels, or (x86_64) the AVX2 ones. Every choice gives the same bytes.
    #[arg(long, value_enum, default_value_t = KernelChoice::Fastest)]
    kernels: KernelChoice,
    /// kdruntime threads per large convolution (x86_64 packed kernels; workers start once).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1)]
    ort_threads: usize,
    /// ONNX Runtime execution providers in priority order, comma-separated
    /// (cpu, cuda, tensorrt, xnnpack, acl); CPU only when not given. A provider missing
    /// from the loaded library is an error.
    #[arg(long, value_enum, value_delimiter = ',')]
    ort_ep: Vec<OrtProvider>,
    /// ONNX Runtime graph optimisation level.
    #[arg(long, value_enum, default_value_t = OrtOptimization::Basic)]
    ort_optimization: OrtOptimization,
    /// The ONNX Runtime shared library (default: ORT_DYLIB_PATH, else libonnxruntime.so on the
    /// loader's search path).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
}

#[cfg(feature = "ort")]
use kdrun::ort_backend::{Optimization as OrtOptimization, Provider as OrtProvider};

/// Stand-ins so the options parse (and are rejected with a clear message) without the feature.
#[cfg(not(feature = "ort"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OrtProvider {
    Cpu,
    Cuda,
    Tensorrt,
    Xnnpack,
    Acl,
}

#[cfg(not(feature = "ort"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OrtOptimization {
    Disable,
    Basic,
    Extended,
    All,
}

#[derive(Subcommand)]
enum Command {
    /// Operators, tensors, quantisation and the arena size of a model.
    Info {
        /// The .tflite file.
        model: PathBuf,
    },
    /// Decode an image, letterbox it, infer, and print the top classes (or those above threshold).
    Run {
        /// The .tflite file (.onnx with --backend ort).
        model: PathBuf,
        /// A JPEG, PNG, BMP or PPM/PGM image.
        image: PathBuf,
        /// labels.txt: one class name per line, in output order.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// inference_config.json written by kdtrain export (task, labels, thresholds, normalisation).
        #[arg(long)]
        config: Option<PathBuf>,
        /// How many classes to print for multi-class models.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: BackendArgs,
    },
    /// Raw tensors in and out: INPUT holds one or more input tensors back to back, each run in
    /// turn; OUTPUT receives the outputs back to back.
    Raw {
        /// The .tflite file (.onnx with --backend ort).
        model: PathBuf,
        /// Raw input bytes (a multiple of the input tensor's size).
        input: PathBuf,
        /// Where to write the raw output bytes.
        output: PathBuf,
        #[command(flatten)]
        engine: BackendArgs,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kdrun: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { model } => {
            let bytes = read(&model)?;
            let m = load(&model, &bytes)?;
            print!(
                "{}",
                report::info(&m).with_context(|| model.display().to_string())?
            );
        }
        Command::Run {
            model,
            image,
            labels,
            config,
            top_k,
            json,
            engine,
        } => {
            let cfg = match &config {
                Some(p) => config::InferenceConfig::load(p)?,
                None => config::InferenceConfig::default(),
            };
            let labels = match &labels {
                Some(p) => Some(config::read_labels(p)?),
                None => cfg.labels.clone(),
            };
            let (result, geometry) = match engine.backend {
                Backend::Kdruntime => {
                    classify_kdruntime(&engine, &model, &image, &cfg, labels.as_deref(), top_k)?
                }
                Backend::Ort => {
                    classify_ort(&engine, &model, &image, &cfg, labels.as_deref(), top_k)?
                }
            };
            if json {
                let mut v = result.to_json();
                v["image"] = image.display().to_string().into();
                v["letterbox"] = geometry;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", result.to_text());
            }
        }
        Command::Raw {
            model,
            input,
            output,
            engine,
        } => {
            let data = read(&input)?;
            let out = match engine.backend {
                Backend::Kdruntime => {
                    let bytes = read(&model)?;
                    let m = load(&model, &bytes)?;
                    run_raw(&engine, &m, &data)
                }
                Backend::Ort => raw_ort(&engine, &model, &data),
            }
            .with_context(|| format!("{} on {}", model.display(), input.display()))?;
            fs::write(&output, out).with_context(|| format!("writing {}", output.display()))?;
        }
    }
    Ok(())
}

/// Classification on kdruntime: letterbox into the arena, invoke, postprocess.
fn classify_kdruntime(
    engine: &BackendArgs,
    model: &Path,
    image: &Path,
    cfg: &config::InferenceConfig,
    labels: Option<&[String]>,
    top_k: usize,
) -> Result<(report::Classification, serde_json::Value)> {
    let bytes = read(model)?;
    let m = load(model, &bytes)?;
    let mut arena = Vec::new();
    let mut interp = engine
        .interpreter(&m, &mut arena)
        .with_context(|| format!("{}: init", model.display()))?;
    let geometry = image_input::fill(&mut interp, image, cfg)?;
    interp
        .invoke()
        .with_context(|| format!("{}: invoke", model.display()))?;
    Ok((report::classify(&interp, cfg, labels, top_k)?, geometry))
}

#[cfg(feature = "ort")]
fn ort_model(engine: &BackendArgs, model: &Path) -> Result<kdrun::ort_backend::OrtModel> {
    let opts = kdrun::ort_backend::OrtOptions {
        threads: engine.ort_threads,
        providers: engine.ort_ep.clone(),
        optimization: engine.ort_optimization,
        library: engine.ort_lib.clone(),
    };
    kdrun::ort_backend::OrtModel::load(model, &opts)
}

/// Classification on ONNX Runtime with the same letterbox and postprocessing.
#[cfg(feature = "ort")]
fn classify_ort(
    engine: &BackendArgs,
    model: &Path,
    image: &Path,
    cfg: &config::InferenceConfig,
    labels: Option<&[String]>,
    top_k: usize,
) -> Result<(report::Classification, serde_json::Value)> {
    let mut m = ort_model(engine, model)?;
    let spec = m.input_spec()?;
    let quant = m.output_quant()?;
    let prepared = image_input::prepare(image, &spec, cfg)?;
    let outs = m.run(&[&prepared.bytes])?;
    let raw: Vec<i8> = outs[0].iter().map(|&b| b as i8).collect();
    Ok((
        report::classify_raw(raw, &quant, cfg, labels, top_k)?,
        prepared.geometry,
    ))
}

#[cfg(feature = "ort")]
fn raw_ort(engine: &BackendArgs, model: &Path, data: &[u8]) -> Result<Vec<u8>> {
    ort_model(engine, model)?.run_raw(data)
}

#[cfg(not(feature = "ort"))]
const NO_ORT: &str =
    "kdrun was built without ONNX Runtime; rebuild with `cargo build -p kdrun --features ort`";

#[cfg(not(feature = "ort"))]
fn classify_ort(
    _: &BackendArgs,
    _: &Path,
    _: &Path,
    _: &config::InferenceConfig,
    _: Option<&[String]>,
    _: usize,
) -> Result<(report::Classification, serde_json::Value)> {
    bail!(NO_ORT)
}

#[cfg(not(feature = "ort"))]
fn raw_ort(_: &BackendArgs, _: &Path, _: &[u8]) -> Result<Vec<u8>> {
    bail!(NO_ORT)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn load<'a>(path: &Path, bytes: &'a [u8]) -> Result<Model<'a>> {
    Model::from_bytes(bytes)
        .with_context(|| format!("{}: not a model kdruntime can run", path.display()))
}

/// Runs every input tensor in `data` (back to back, input 0 then input 1 ... per run) and
/// returns the outputs back to back in the same order.
fn run_raw(engine: &BackendArgs, m: &Model<'_>, data: &[u8]) -> Result<Vec<u8>> {
    let mut arena = Vec::new();
    let mut interp = engine.interpreter(m, &mut arena)?;
    let in_sizes: Vec<usize> = (0..m.num_inputs())
        .map(|i| interp.input_info(i).map(|t| t.byte_size()))
        .collect::<Result<_, _>>()?;
    let per_run: usize = in_sizes.iter().sum();
    if per_run == 0 || data.is_empty() || !data.len().is_multiple_of(per_run) {
        bail!(
            "input is {} bytes, not a positive multiple of the {per_run} bytes one run takes (inputs: {in_sizes:?})",
            data.len()
        );
    }
    let mut out = Vec::new();
    for chunk in data.chunks(per_run) {
        let mut at = 0;
        for (i, &n) in in_sizes.iter().enumerate() {
            interp.input_mut(i)?.copy_from_slice(&chunk[at..at + n]);
            at += n;
        }
        interp.invoke()?;
        for o in 0..m.num_outputs() {
            out.extend_from_slice(interp.output(o)?);
        }
    }
    Ok(out)
}
