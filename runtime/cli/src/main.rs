//! `kdrun`: inspect a full-integer TFLite model, classify an image with it, or run raw tensors,
//! all on kdruntime with the same letterbox the trainer used.

mod config;
mod image_input;
mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kdruntime::{Interpreter, Model};

/// Run full-integer TFLite models on kdruntime.
#[derive(Parser)]
#[command(name = "kdrun", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        /// The .tflite file.
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
    },
    /// Raw tensors in and out: INPUT holds one or more input tensors back to back, each run in
    /// turn; OUTPUT receives the outputs back to back.
    Raw {
        /// The .tflite file.
        model: PathBuf,
        /// Raw input bytes (a multiple of the input tensor's size).
        input: PathBuf,
        /// Where to write the raw output bytes.
        output: PathBuf,
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
        } => {
            let bytes = read(&model)?;
            let m = load(&model, &bytes)?;
            let cfg = match &config {
                Some(p) => config::InferenceConfig::load(p)?,
                None => config::InferenceConfig::default(),
            };
            let labels = match &labels {
                Some(p) => Some(config::read_labels(p)?),
                None => cfg.labels.clone(),
            };
            let mut arena = vec![
                0u8;
                m.arena_size()
                    .with_context(|| model.display().to_string())?
            ];
            let mut interp = Interpreter::new(&m, &mut arena)
                .with_context(|| format!("{}: init", model.display()))?;
            let geometry = image_input::fill(&mut interp, &image, &cfg)?;
            interp
                .invoke()
                .with_context(|| format!("{}: invoke", model.display()))?;
            let result = report::classify(&interp, &cfg, labels.as_deref(), top_k)?;
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
        } => {
            let bytes = read(&model)?;
            let m = load(&model, &bytes)?;
            let data = read(&input)?;
            let out = run_raw(&m, &data)
                .with_context(|| format!("{} on {}", model.display(), input.display()))?;
            fs::write(&output, out).with_context(|| format!("writing {}", output.display()))?;
        }
    }
    Ok(())
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
fn run_raw(m: &Model<'_>, data: &[u8]) -> Result<Vec<u8>> {
    let mut arena = vec![0u8; m.arena_size()?];
    let mut interp = Interpreter::new(m, &mut arena)?;
    let in_sizes: Vec<usize> = (0..m.num_inputs())
        .map(|i| interp.input_info(i).map(|t| t.byte_size()))
        .collect::<Result<_, _>>()?;
    let per_run: usize = in_sizes.iter().sum();
    if per_run == 0 || data.is_empty() || data.len() % per_run != 0 {
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
