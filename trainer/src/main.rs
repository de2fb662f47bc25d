//! `kdtrain`: the kdedge trainer's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use kdtrainer::data::{self, import, ModeChoice};

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
            let device = kdtrainer::device::resolve(match device {
                DeviceArg::Auto => kdtrainer::device::Choice::Auto,
                DeviceArg::Cpu => kdtrainer::device::Choice::Cpu,
                DeviceArg::Cuda => kdtrainer::device::Choice::Cuda,
            })?;
            print!("{}", kdtrainer::device::report(device));
        }
        Command::Data { command } => return run_data(command),
        Command::Config { config } => {
            let cfg = kdtrainer::config::Config::load(&config)?;
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
