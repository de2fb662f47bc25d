//! Runs models in the real interpreters through `tools/refharness.py` (see its `--help`).
//!
//! ```no_run
//! use kdtests::reference::{self, Backend};
//! # fn demo(model: &[u8], input: Vec<u8>) -> Result<(), reference::Error> {
//! let r = reference::run(model, Backend::TfliteRef, &[input])?;
//! println!("{} output bytes, median {:?} us", r.outputs[0].len(), r.timing.median_us);
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

/// Which interpreter runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// TFLite with `BUILTIN_REF` (reference kernels): the oracle kdruntime matches bit for bit.
    TfliteRef,
    /// TFLite with optimised builtin kernels and no default delegate.
    TfliteBuiltin,
    /// TFLite `AUTO` resolver: XNNPACK delegate, 1 thread.
    Xnnpack,
    /// TFLite Micro.
    Tflm,
    /// ONNX Runtime (CPU, 1 thread, basic graph optimisations).
    Onnx,
}

impl Backend {
    /// Every TFLite backend (all but ONNX).
    pub const TFLITE: [Backend; 4] = [
        Backend::TfliteRef,
        Backend::TfliteBuiltin,
        Backend::Xnnpack,
        Backend::Tflm,
    ];

    /// The harness's `--backend` name.
    pub fn cli_name(self) -> &'static str {
        match self {
            Backend::TfliteRef => "ref",
            Backend::TfliteBuiltin => "builtin",
            Backend::Xnnpack => "xnnpack",
            Backend::Tflm => "tflm",
            Backend::Onnx => "onnx",
        }
    }
}

/// Why a reference run failed.
#[derive(Debug)]
pub enum Error {
    /// The venv python or the harness script is missing.
    Setup(String),
    /// The harness ran and reported an error (its stderr).
    Harness(String),
    /// File I/O or an unreadable report.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Setup(m) => write!(f, "reference setup: {m}"),
            Error::Harness(m) => write!(f, "reference harness: {m}"),
            Error::Io(m) => write!(f, "reference I/O: {m}"),
        }
    }
}

impl std::error::Error for Error {}

type Result<T> = std::result::Result<T, Error>;

/// A tensor as the interpreter reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Shape after the interpreter's own shape inference.
    pub shape: Vec<i64>,
    /// numpy dtype name (`uint8`, `int8`, `float32`, ...).
    pub dtype: String,
    /// Quantisation scales (empty when not quantised).
    pub scales: Vec<f64>,
    /// Quantisation zero points.
    pub zero_points: Vec<i64>,
    /// Per-channel axis.
    pub quantized_dimension: i64,
}

impl TensorInfo {
    /// Bytes per element of `dtype`.
    pub fn elem_size(&self) -> Result<usize> {
        Ok(match self.dtype.as_str() {
            "uint8" | "int8" | "bool" => 1,
            "int16" | "float16" => 2,
            "int32" | "float32" => 4,
            "int64" | "float64" => 8,
            other => {
                return Err(Error::Io(format!(
                    "tensor '{}' has unknown dtype {other}",
                    self.name
                )))
            }
        })
    }

    /// Total bytes of the tensor.
    pub fn byte_len(&self) -> Result<usize> {
        let n: i64 = self.shape.iter().product();
        Ok(n.max(0) as usize * self.elem_size()?)
    }

    fn from_json(v: &Value) -> Result<Self> {
        let bad = || Error::Io(format!("malformed tensor info in report: {v}"));
        let ints = |key: &str| -> Result<Vec<i64>> {
            v.get(key)
                .and_then(Value::as_array)
                .ok_or_else(bad)?
                .iter()
                .map(|x| x.as_i64().ok_or_else(bad))
                .collect()
        };
        Ok(TensorInfo {
            name: v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            shape: ints("shape")?,
            dtype: v
                .get("dtype")
                .and_then(Value::as_str)
                .ok_or_else(bad)?
                .to_string(),
            scales: v
                .get("scales")
                .and_then(Value::as_array)
                .ok_or_else(bad)?
                .iter()
                .map(|x| x.as_f64().ok_or_else(bad))
                .collect::<Result<_>>()?,
            zero_points: ints("zero_points")?,
            quantized_dimension: v
                .get("quantized_dimension")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        })
    }
}

/// Latency figures (microseconds) from the harness.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timing {
    /// Every timed invoke.
    pub latencies_us: Vec<f64>,
    /// Median of `latencies_us`.
    pub median_us: Option<f64>,
    /// 90th percentile of `latencies_us`.
    pub p90_us: Option<f64>,
}

/// Result of a reference run.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Outputs of the first run, one byte vector per model output.
    pub outputs: Vec<Vec<u8>>,
    /// Outputs of every run (`runs[r][o]`).
    pub runs: Vec<Vec<Vec<u8>>>,
    /// Input tensors as the interpreter sees them.
    pub input_info: Vec<TensorInfo>,
    /// Output tensors as the interpreter sees them.
    pub output_info: Vec<TensorInfo>,
    /// Latencies.
    pub timing: Timing,
    /// Arena bytes TFLite Micro used (TFLM backend only).
    pub tflm_arena_bytes: Option<u64>,
    /// The whole JSON report (resolver, versions, ...).
    pub report: Value,
}

/// Timing options for [`run_samples`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Timed passes over all samples.
    pub repeat: usize,
    /// Untimed invokes before timing.
    pub warmup: usize,
    /// Keep timing further passes (up to 1000) until the timed invokes total this many
    /// milliseconds; 0 times exactly `repeat` passes.
    pub min_time_ms: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            repeat: 1,
            warmup: 0,
            min_time_ms: 0,
        }
    }
}

/// The venv python (`KDEDGE_PYTHON` overrides) and the harness script, checked to exist.
pub fn harness_paths() -> Result<(PathBuf, PathBuf)> {
    let root = crate::workspace_root();
    let python = match std::env::var_os("KDEDGE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => root.join(".venv").join("bin").join("python"),
    };
    if !python.exists() {
        return Err(Error::Setup(format!(
            "{} not found: run `make setup` (or scripts/setup.sh) to create the venv, or set KDEDGE_PYTHON",
            python.display()
        )));
    }
    let script = root.join("tools").join("refharness.py");
    if !script.exists() {
        return Err(Error::Setup(format!("{} not found", script.display())));
    }
    Ok((python, script))
}

/// A unique temporary folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `kdtests-<pid>-<n>-<tag>` under the system temp folder.
    pub fn new(tag: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kdtests-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
        Ok(TempDir(dir))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `name` inside the folder and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let p = self.0.join(name);
        std::fs::write(&p, bytes)
            .map_err(|e| Error::Io(format!("writing {}: {e}", p.display())))?;
        Ok(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the harness with `args`; returns its stdout, or its stderr as the error.
pub fn harness(args: &[&std::ffi::OsStr]) -> Result<String> {
    let (python, script) = harness_paths()?;
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| Error::Setup(format!("could not start {}: {e}", python.display())))?;
    if !out.status.success() {
        return Err(Error::Harness(format!(
            "{} exited with {}: {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Io(format!("parsing {}: {e}", path.display())))
}

fn tensor_list(v: &Value, key: &str) -> Result<Vec<TensorInfo>> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Io(format!("report has no '{key}' list")))?
        .iter()
        .map(TensorInfo::from_json)
        .collect()
}

/// Splits concatenated output bytes into runs and outputs using the reported tensor sizes.
fn split_outputs(bytes: &[u8], info: &[TensorInfo]) -> Result<Vec<Vec<Vec<u8>>>> {
    let sizes = info
        .iter()
        .map(TensorInfo::byte_len)
        .collect::<Result<Vec<_>>>()?;
    let per_run: usize = sizes.iter().sum();
    if per_run == 0 || !bytes.len().is_multiple_of(per_run) {
        return Err(Error::Io(format!(
            "{} output bytes are not a multiple of one run's {per_run}",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks(per_run)
        .map(|run| {
            let mut off = 0;
            sizes
                .iter()
                .map(|&s| {
                    let v = run[off..off + s].to_vec();
                    off += s;
                    v
                })
                .collect()
        })
        .collect())
}

/// Runs `model` once on `inputs` (one byte buffer per model input, in order).
pub fn run<I: AsRef<[u8]>>(model: &[u8], backend: Backend, inputs: &[I]) -> Result<Reference> {
    run_samples(model, backend, &[inputs], RunOptions::default())
}

/// Runs `model` on several samples (each one buffer per model input) in one process.
pub fn run_samples<I: AsRef<[u8]>, S: AsRef<[I]>>(
    model: &[u8],
    backend: Backend,
    samples: &[S],
    opts: RunOptions,
) -> Result<Reference> {
    let dir = TempDir::new(backend.cli_name())?;
    let ext = if backend == Backend::Onnx {
        "onnx"
    } else {
        "tflite"
    };
    let model_path = dir.write(&format!("model.{ext}"), model)?;
    let input: Vec<u8> = samples
        .iter()
        .flat_map(|s| s.as_ref().iter().flat_map(|i| i.as_ref().iter().copied()))
        .collect();
    let input_path = dir.write("input.bin", &input)?;
    run_files(&model_path, backend, &input_path, &dir, opts)
}

/// Runs a model file (e.g. an ONNX export) on a raw input file; temporary outputs go to `dir`.
pub fn run_files(
    model: &Path,
    backend: Backend,
    input: &Path,
    dir: &TempDir,
    opts: RunOptions,
) -> Result<Reference> {
    let out_path = dir.path().join("output.bin");
    let json_path = dir.path().join("report.json");
    let repeat = opts.repeat.to_string();
    let warmup = opts.warmup.to_string();
    let min_seconds = (opts.min_time_ms as f64 / 1000.0).to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        "run".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--backend".as_ref(),
        backend.cli_name().as_ref(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        out_path.as_os_str(),
        "--json".as_ref(),
        json_path.as_os_str(),
        "--repeat".as_ref(),
        repeat.as_ref(),
        "--warmup".as_ref(),
        warmup.as_ref(),
        "--min-seconds".as_ref(),
        min_seconds.as_ref(),
    ];
    harness(&args)?;
    let report = read_json(&json_path)?;
    let input_info = tensor_list(&report, "inputs")?;
    let output_info = tensor_list(&report, "outputs")?;
    let bytes = std::fs::read(&out_path)
        .map_err(|e| Error::Io(format!("reading {}: {e}", out_path.display())))?;
    let runs = split_outputs(&bytes, &output_info)?;
    let t = report.get("timing").cloned().unwrap_or(Value::Null);
    let timing = Timing {
        latencies_us: t
            .get("latencies_us")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
        median_us: t.get("median_us").and_then(Value::as_f64),
        p90_us: t.get("p90_us").and_then(Value::as_f64),
    };
    Ok(Reference {
        outputs: runs.first().cloned().unwrap_or_default(),
        runs,
        input_info,
        output_info,
        timing,
        tflm_arena_bytes: report.get("tflm_arena_bytes").and_then(Value::as_u64),
        report,
    })
}

/// One model and one sample for [`run_batch`].
#[derive(Clone, Debug)]
pub struct Case {
    /// Label used in file names and messages.
    pub name: String,
    /// Model bytes.
    pub model: Vec<u8>,
    /// One buffer per model input.
    pub inputs: Vec<Vec<u8>>,
}

/// Per-case outcome of [`run_batch`].
#[derive(Clone, Debug)]
pub struct BatchOutput {
    /// The case's name.
    pub name: String,
    /// Outputs (one buffer per model output) and tensor info, or the interpreter's error.
    pub result: std::result::Result<(Vec<Vec<u8>>, Vec<TensorInfo>), String>,
}

/// Runs many models in ONE harness process (interpreter start-up dominates single runs).
/// A model that fails to load or run gives an `Err` entry; only harness-level failures are `Err`.
pub fn run_batch(cases: &[Case], backend: Backend) -> Result<Vec<BatchOutput>> {
    let dir = TempDir::new("batch")?;
    let ext = if backend == Backend::Onnx {
        "onnx"
    } else {
        "tflite"
    };
    let mut manifest = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let model = format!("{i:05}.{ext}");
        let input = format!("{i:05}.in");
        dir.write(&model, &c.model)?;
        dir.write(&input, &c.inputs.concat())?;
        manifest.push(
            serde_json::json!({"model": model, "input": input, "output": format!("{i:05}.out")}),
        );
    }
    let manifest_path = dir.write(
        "manifest.json",
        serde_json::to_string(&manifest)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let json_path = dir.path().join("report.json");
    harness(&[
        "batch".as_ref(),
        "--manifest".as_ref(),
        manifest_path.as_os_str(),
        "--backend".as_ref(),
        backend.cli_name().as_ref(),
        "--json".as_ref(),
        json_path.as_os_str(),
    ])?;
    let report = read_json(&json_path)?;
    let results = report
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Io("batch report has no 'results'".into()))?;
    if results.len() != cases.len() {
        return Err(Error::Io(format!(
            "batch report has {} results for {} cases",
            results.len(),
            cases.len()
        )));
    }
    let mut out = Vec::with_capacity(cases.len());
    for (i, (c, r)) in cases.iter().zip(results).enumerate() {
        let result = if r.get("ok").and_then(Value::as_bool) == Some(true) {
            let info = tensor_list(r, "outputs")?;
            let p = dir.path().join(format!("{i:05}.out"));
            let bytes = std::fs::read(&p)
                .map_err(|e| Error::Io(format!("reading {}: {e}", p.display())))?;
            let run = split_outputs(&bytes, &info)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::Io(format!("{} produced no output bytes", p.display())))?;
            Ok((run, info))
        } else {
            Err(r
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string())
        };
        out.push(BatchOutput {
            name: c.name.clone(),
            result,
        });
    }
    Ok(out)
}
