//! The latency benchmark behind `make bench`: the same full-integer models timed on kdruntime,
//! TFLite (XNNPACK and BUILTIN_REF), TFLite Micro and ONNX Runtime in one run on one machine.
//!
//! - [`measure`]: builds or loads the models and times every backend ([`measure::run`]).
//! - [`machine`]: CPU model, flags, cores, memory, OS, tool versions, date.
//! - [`profile`]: per-operator times of one model on kdruntime (`bench profile`).
//! - [`report`]: renders the JSON into BENCHMARKS.md's generated sections and an SVG plot.
//!
//! The JSON ([`BenchReport`], `docs/benchmarks/latency.json`) is the source of truth; the
//! markdown and the plot are regenerated from it (`bench report`).

pub mod machine;
pub mod measure;
pub mod profile;
pub mod report;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the JSON layout below.
pub const SCHEMA: u32 = 1;

/// One `make bench` run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// [`SCHEMA`].
    pub schema: u32,
    /// When the run started, UTC, ISO 8601.
    pub date_utc: String,
    /// The command that produced it.
    pub command: String,
    /// `git rev-parse --short HEAD` (with `-dirty` when the tree had changes), if known.
    pub git_commit: Option<String>,
    /// Wall time of the measurement, seconds (building the models included).
    pub wall_seconds: f64,
    /// Where it ran.
    pub machine: machine::Machine,
    /// Tool and library versions (`kdedge`, `rustc`, `ai-edge-litert`, `tflite-micro`,
    /// `onnxruntime` (Python), `libonnxruntime`, `python`, `numpy`).
    pub versions: BTreeMap<String, String>,
    /// How many invokes were timed.
    pub policy: Policy,
    /// One entry per model.
    pub models: Vec<ModelBench>,
}

/// Timing policy, the same for every backend: `warmup` untimed invokes, then timed invokes until
/// at least `min_runs` were timed and they took `min_seconds` in total, at most `max_runs`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Untimed invokes first.
    pub warmup: usize,
    /// Fewest timed invokes.
    pub min_runs: usize,
    /// Least total timed seconds.
    pub min_seconds: f64,
    /// Most timed invokes.
    pub max_runs: usize,
}

impl Default for Policy {
    /// 2 warm-up invokes, then at least 5 timed invokes and 2 s, at most 1000.
    fn default() -> Self {
        Self {
            warmup: 2,
            min_runs: 5,
            min_seconds: 2.0,
            max_runs: 1000,
        }
    }
}

/// One model on every backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelBench {
    /// Short name (`mobilenet_v2_0.35_96`, ...).
    pub name: String,
    /// How it was made: the builder call, or the file it was read from.
    pub source: String,
    /// The .tflite file that was timed (relative to the repository root when inside it).
    pub tflite_file: String,
    /// Its size in bytes.
    pub tflite_bytes: u64,
    /// The .onnx file beside it, if any.
    pub onnx_file: Option<String>,
    /// Its size in bytes.
    pub onnx_bytes: Option<u64>,
    /// Multiply-accumulates per inference (convolutions and fully connected), when known.
    pub macs: Option<u64>,
    /// Operators in the .tflite model.
    pub operators: usize,
    /// Input shape `[1, H, W, C]`.
    pub input_shape: Vec<i64>,
    /// What the input was (a letterboxed real photo).
    pub input: String,
    /// `Model::arena_size()`.
    pub kdruntime_arena_bytes: u64,
    /// `Model::arena_size_for(Kernels::Fastest)`: with the weights the packed kernels rearrange
    /// (absent in runs before the optimised kernels).
    #[serde(default)]
    pub kdruntime_fastest_arena_bytes: Option<u64>,
    /// TFLite Micro's recorded arena use, when it ran.
    pub tflm_arena_bytes: Option<u64>,
    /// One entry per backend, kdruntime first.
    pub results: Vec<BackendResult>,
}

/// The backends, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendId {
    /// kdruntime, its fastest kernels for this CPU, 1 thread, release build (the headline).
    Kdruntime,
    /// kdruntime's plain reference kernels, 1 thread (the figures before the optimised kernels).
    KdruntimeReference,
    /// kdruntime's fastest kernels with every core (`Interpreter::set_threads`).
    KdruntimeThreads,
    /// TFLite `AUTO` resolver with the XNNPACK delegate, 1 thread.
    TfliteXnnpack,
    /// TFLite `BUILTIN_REF` (reference kernels).
    TfliteRef,
    /// TFLite Micro (Python wheel).
    Tflm,
    /// ONNX Runtime, CPU provider, 1 thread, through kdrun's Rust backend.
    Onnxruntime,
}

impl BackendId {
    /// Every backend in table order.
    pub const ALL: [BackendId; 7] = [
        BackendId::Kdruntime,
        BackendId::KdruntimeReference,
        BackendId::KdruntimeThreads,
        BackendId::TfliteXnnpack,
        BackendId::TfliteRef,
        BackendId::Tflm,
        BackendId::Onnxruntime,
    ];

    /// Column heading.
    pub fn label(self) -> &'static str {
        match self {
            BackendId::Kdruntime => "kdruntime",
            BackendId::KdruntimeReference => "kdruntime reference kernels",
            BackendId::KdruntimeThreads => "kdruntime all cores",
            BackendId::TfliteXnnpack => "TFLite XNNPACK",
            BackendId::TfliteRef => "TFLite BUILTIN_REF",
            BackendId::Tflm => "TFLite Micro",
            BackendId::Onnxruntime => "ONNX Runtime",
        }
    }
}

/// One model on one backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendResult {
    /// Which backend.
    pub backend: BackendId,
    /// How it was configured (resolver, threads, provider).
    pub config: String,
    /// Median latency of the timed invokes, microseconds; `None` when it did not run.
    pub median_us: Option<f64>,
    /// 90th percentile, microseconds.
    pub p90_us: Option<f64>,
    /// Timed invokes.
    pub runs: usize,
    /// `median_us / kdruntime's median_us` (above 1: slower than kdruntime).
    pub ratio_to_kdruntime: Option<f64>,
    /// Its outputs against kdruntime's on the same input.
    pub outputs_vs_kdruntime: Option<Agreement>,
    /// Why it did not run, or a remark.
    pub note: Option<String>,
}

/// How two int8 outputs compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// Values compared.
    pub values: usize,
    /// Values that differ.
    pub differ: usize,
    /// Largest difference in quantisation steps.
    pub max_abs_diff: i32,
}

impl Agreement {
    /// Compares two int8 byte buffers; `None` when their lengths differ.
    pub fn of(a: &[u8], b: &[u8]) -> Option<Self> {
        (a.len() == b.len()).then(|| {
            let (mut differ, mut max_abs_diff) = (0, 0);
            for (&x, &y) in a.iter().zip(b) {
                let d = (i32::from(x as i8) - i32::from(y as i8)).abs();
                differ += usize::from(d != 0);
                max_abs_diff = max_abs_diff.max(d);
            }
            Self {
                values: a.len(),
                differ,
                max_abs_diff,
            }
        })
    }
}

/// Median and 90th percentile of `latencies` (the harness's definitions: the middle value or
/// the mean of the two middle values; `sorted[min(n-1, floor(0.9 n))]`).
pub fn median_p90(latencies: &[f64]) -> Option<(f64, f64)> {
    if latencies.is_empty() {
        return None;
    }
    let mut v = latencies.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let p90 = v[(n * 9 / 10).min(n - 1)];
    Some((median, p90))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_follow_the_harness_definitions() {
        // Odd count: the middle value; p90 index floor(0.9 * 5) = 4.
        assert_eq!(median_p90(&[5.0, 1.0, 3.0, 2.0, 4.0]), Some((3.0, 5.0)));
        // Even count: mean of 4 and 5; p90 index floor(0.9 * 10) = 9 -> 10.
        let v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(median_p90(&v), Some((5.5, 10.0)));
        assert_eq!(median_p90(&[]), None);
    }

    #[test]
    fn agreement_counts_int8_steps() {
        // -1 (0xff) vs 1: two steps; 127 vs -128: 255 steps.
        let a = [0xffu8, 7, 127];
        let b = [1u8, 7, 0x80];
        assert_eq!(
            Agreement::of(&a, &b),
            Some(Agreement {
                values: 3,
                differ: 2,
                max_abs_diff: 255
            })
        );
        assert_eq!(Agreement::of(&a, &b[..2]), None);
    }
}
