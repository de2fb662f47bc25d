//! `kdtrain`: the kdedge trainer's command line.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

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
}

/// `--device auto|cpu|cuda`.
#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Info { device } => {
            let device = kdtrainer::device::resolve(match device {
                DeviceArg::Auto => kdtrainer::device::Choice::Auto,
                DeviceArg::Cpu => kdtrainer::device::Choice::Cpu,
                DeviceArg::Cuda => kdtrainer::device::Choice::Cuda,
            })?;
            print!("{}", kdtrainer::device::report(device));
        }
    }
    Ok(())
}
