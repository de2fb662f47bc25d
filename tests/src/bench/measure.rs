//! Builds (or reads) the benchmark models and times them on every backend.
//!
//! kdruntime and ONNX Runtime run in this process (ONNX Runtime through kdrun's `ort` backend,
//! [`kdrun::ort_backend`]); TFLite and TFLite Micro run in the Python harness
//! (`tools/refharness.py run --repeat --warmup --min-seconds`), which times `invoke()` alone.
//! Every backend gets the same input bytes (a real photo letterboxed by kdruntime's letterbox)
//! and the same [`Policy`]; its outputs are compared with kdruntime's. The headline pair
//! (kdruntime's fastest kernels and TFLite XNNPACK, 1 thread) alternate in [`HEADLINE_ROUNDS`]
//! rounds that share the policy's time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kdrun::image_input::{self, InputSpec};
use kdrun::ort_backend::{OrtModel, OrtOptions};
use kdruntime::kernels::simd::Kernels;
use kdruntime::{Interpreter, Model};

use super::machine::{self, Machine};
use super::{median_p90, Agreement, BackendId, BackendResult, BenchReport, ModelBench, Policy};
use crate::nets::{self, Net};
use crate::reference::{self, Backend, RunOptions, TempDir};

/// The photo every model is timed on (letterboxed to the model's input).
pub const PHOTO: &str = "chelsea.png";

/// A model ready to time.
pub struct BenchModel {
    /// Short name.
    pub name: String,
    /// How it was made.
    pub source: String,
    /// The .tflite file (an .onnx file with the same stem is timed on ONNX Runtime).
    pub tflite: PathBuf,
    /// Input 0's bytes.
    pub input: Vec<u8>,
    /// What the input is.
    pub input_desc: String,
    /// MACs per inference, when known.
    pub macs: Option<u64>,
}

fn from_net(net: Net, source: String, dir: &Path) -> Result<BenchModel> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tflite = dir.join(format!("{}.tflite", net.name));
    std::fs::write(&tflite, &net.model).with_context(|| format!("writing {}", tflite.display()))?;
    Ok(BenchModel {
        name: net.name,
        source,
        tflite,
        input: net.input,
        input_desc: format!("{} letterboxed to {r}x{r}", net.photo, r = net.resolution),
        macs: Some(net.macs),
    })
}

/// Builds one network.
type NetBuilder = fn() -> Result<Net, String>;

/// The three reference networks (random weights, calibrated on real photos), written to `dir`:
/// MobileNetV2-0.35@96, MobileNetV2-1.0@224, EfficientNet-Lite0@224, 1000 classes.
pub fn standard_models(dir: &Path) -> Result<Vec<BenchModel>> {
    let specs: [(&str, NetBuilder); 3] = [
        (
            "kdtests::nets::mobilenet_v2(0.35, 96, 1000 classes, seed 1)",
            || nets::mobilenet_v2_with(0.35, 96, 1000, 1, &nets::Options::default()),
        ),
        (
            "kdtests::nets::mobilenet_v2(1.0, 224, 1000 classes, seed 1)",
            || nets::mobilenet_v2_with(1.0, 224, 1000, 1, &nets::Options::default()),
        ),
        (
            "kdtests::nets::efficientnet_lite(0, 224, 1000 classes, seed 1)",
            || nets::efficientnet_lite_with(0, 224, 1000, 1, &nets::Options::default()),
        ),
    ];
    specs
        .iter()
        .map(|(source, build)| {
            let net = build().map_err(|e| anyhow!("building {source}: {e}"))?;
            from_net(net, source.to_string(), dir)
        })
        .collect()
}

/// The demo's model as `make demo` builds it ([`nets::demo_model`], 10 classes).
pub fn demo_model(dir: &Path) -> Result<BenchModel> {
    let mut net = nets::demo_model(10).map_err(|e| anyhow!("building the demo model: {e}"))?;
    net.name = format!("demo_{}", net.name);
    from_net(
        net,
        "kdtests::nets::demo_model(10) (the `make demo` network)".into(),
        dir,
    )
}

/// A model file (e.g. the exported `model_qat_int8.tflite`): its input is [`PHOTO`] through
/// kdrun's letterbox, normalised with the `inference_config.json` beside it when there is one.
pub fn file_model(path: &Path) -> Result<BenchModel> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let m = Model::from_bytes(&bytes)
        .with_context(|| format!("{}: not a model kdruntime can run", path.display()))?;
    let mut arena = vec![0u8; m.arena_size()?];
    let interp = Interpreter::new(&m, &mut arena).with_context(|| path.display().to_string())?;
    let spec = InputSpec::of_interpreter(&interp).with_context(|| path.display().to_string())?;
    let cfg_path = path.with_file_name("inference_config.json");
    let cfg = if cfg_path.is_file() {
        kdrun::config::InferenceConfig::load(&cfg_path)?
    } else {
        kdrun::config::InferenceConfig::default()
    };
    let photo = crate::workspace_root().join("data/raw/photos").join(PHOTO);
    let input = image_input::prepare(&photo, &spec, &cfg)?.bytes;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let parent = path
        .parent()
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned());
    Ok(BenchModel {
        name: match parent {
            Some(p) => format!("{p}/{stem}"),
            None => stem,
        },
        source: format!("file {}", relative(path)),
        tflite: path.to_path_buf(),
        input,
        input_desc: format!("{PHOTO} letterboxed to {}x{}", spec.height, spec.width),
        macs: None,
    })
}

/// `path` relative to the repository root when inside it.
pub fn relative(path: &Path) -> String {
    let root = crate::workspace_root();
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let root = root.canonicalize().unwrap_or(root);
    abs.strip_prefix(&root)
        .unwrap_or(&abs)
        .display()
        .to_string()
}

/// Times `f` under `policy`; `f` does one run (refilling the inputs first, untimed) and returns
/// how long the invoke itself took. Returns every timed latency in microseconds.
pub fn time_invokes(policy: &Policy, mut f: impl FnMut() -> Result<Duration>) -> Result<Vec<f64>> {
    for _ in 0..policy.warmup {
        f()?;
    }
    let mut lat = Vec::new();
    let mut total = 0.0;
    while lat.len() < policy.max_runs
        && (lat.len() < policy.min_runs || total < policy.min_seconds * 1e6)
    {
        let us = f()?.as_secs_f64() * 1e6;
        total += us;
        lat.push(us);
    }
    Ok(lat)
}

fn timed(
    backend: BackendId,
    config: String,
    lat: &[f64],
    agreement: Option<Agreement>,
) -> BackendResult {
    let mp = median_p90(lat);
    BackendResult {
        backend,
        config,
        median_us: mp.map(|m| m.0),
        p90_us: mp.map(|m| m.1),
        runs: lat.len(),
        ratio_to_kdruntime: None,
        outputs_vs_kdruntime: agreement,
        note: None,
    }
}

fn skipped(backend: BackendId, config: &str, note: String) -> BackendResult {
    BackendResult {
        backend,
        config: config.into(),
        median_us: None,
        p90_us: None,
        runs: 0,
        ratio_to_kdruntime: None,
        outputs_vs_kdruntime: None,
        note: Some(note),
    }
}

/// Everything the run learns besides the per-model results.
#[derive(Default)]
pub struct RunContext {
    /// Python package versions reported by the harness.
    pub python_versions: BTreeMap<String, String>,
}

/// Times one model on every backend.
pub fn bench_model(bm: &BenchModel, policy: &Policy, ctx: &mut RunContext) -> Result<ModelBench> {
    let bytes =
        std::fs::read(&bm.tflite).with_context(|| format!("reading {}", bm.tflite.display()))?;
    let m = Model::from_bytes(&bytes).with_context(|| bm.tflite.display().to_string())?;
    let arena_bytes = m.arena_size_for(Kernels::Reference)?;
    let fastest_arena_bytes = m.arena_size_for(Kernels::Fastest)?;
    let mut arena = vec![0u8; arena_bytes];
    let mut interp = Interpreter::with_kernels(&m, &mut arena, Kernels::Reference)
        .with_context(|| bm.name.clone())?;
    let info = interp.input_info(0)?;
    let input_shape: Vec<i64> = info.shape.dims().iter().map(|&d| i64::from(d)).collect();
    if m.num_inputs() != 1 || interp.input_mut(0)?.len() != bm.input.len() {
        bail!(
            "{}: the benchmark feeds one input of {} bytes; the model has {} inputs, input 0 {:?}",
            bm.name,
            bm.input.len(),
            m.num_inputs(),
            input_shape
        );
    }
    let dir = TempDir::new("bench").map_err(|e| anyhow!("{e}"))?;
    let input_path = dir
        .write("input.u8", &bm.input)
        .map_err(|e| anyhow!("{e}"))?;
    let python = |backend: Backend, policy: &Policy| {
        let opts = RunOptions {
            repeat: policy.min_runs,
            warmup: policy.warmup,
            min_time_ms: (policy.min_seconds * 1000.0) as u64,
        };
        reference::run_files(&bm.tflite, backend, &input_path, &dir, opts)
    };

    // The headline pair, kdruntime's fastest kernels and TFLite XNNPACK (1 thread), alternate in
    // HEADLINE_ROUNDS rounds, each timed for its share of the policy: a slow phase of a shared
    // machine then falls on both instead of on whichever ran during it.
    eprintln!(
        "bench: {} on {} and TFLite XNNPACK",
        bm.name,
        BackendId::Kdruntime.label()
    );
    let round = Policy {
        min_runs: policy.min_runs.div_ceil(HEADLINE_ROUNDS),
        min_seconds: policy.min_seconds / HEADLINE_ROUNDS as f64,
        max_runs: policy.max_runs.div_ceil(HEADLINE_ROUNDS),
        ..*policy
    };
    let (mut kd_lat, mut kd_out) = (Vec::new(), None);
    let mut xnnpack: Option<Result<reference::Reference, reference::Error>> = None;
    for _ in 0..HEADLINE_ROUNDS {
        let (lat, out) = time_kdruntime(&m, &bm.input, Kernels::Fastest, 1, &round)?;
        kd_lat.extend(lat);
        kd_out.get_or_insert(out);
        xnnpack = match (xnnpack, python(Backend::Xnnpack, &round)) {
            (None, r) => Some(r),
            (Some(Ok(mut first)), Ok(r)) => {
                first.timing.latencies_us.extend(r.timing.latencies_us);
                Some(Ok(first))
            }
            (Some(Ok(_)), Err(e)) | (Some(Err(e)), _) => Some(Err(e)),
        };
    }
    let kd_out = kd_out.unwrap_or_default();
    let mut results = vec![timed(
        BackendId::Kdruntime,
        format!(
            "release build, 1 thread, fastest kernels for this CPU ({:?}); timed in {} rounds \
             alternating with TFLite XNNPACK",
            Kernels::Fastest.path(),
            HEADLINE_ROUNDS
        ),
        &kd_lat,
        None,
    )];

    // kdruntime's other two configurations; their outputs are compared with the headline's.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (id, kernels, threads, config) in [
        (
            BackendId::KdruntimeReference,
            Kernels::Reference,
            1,
            "release build, 1 thread, plain reference kernels (before the optimised kernels)"
                .to_string(),
        ),
        (
            BackendId::KdruntimeThreads,
            Kernels::Fastest,
            cores,
            format!("release build, fastest kernels, {cores} threads (set_threads)"),
        ),
    ] {
        eprintln!("bench: {} on {}", bm.name, id.label());
        let (lat, out) = time_kdruntime(&m, &bm.input, kernels, threads, policy)?;
        results.push(timed(id, config, &lat, Agreement::of(&out, &kd_out)));
    }

    let mut tflm_arena = None;
    for (id, backend, config) in [
        (
            BackendId::TfliteXnnpack,
            Backend::Xnnpack,
            "ai-edge-litert, OpResolverType.AUTO (XNNPACK delegate), num_threads=1",
        ),
        (
            BackendId::TfliteRef,
            Backend::TfliteRef,
            "ai-edge-litert, OpResolverType.BUILTIN_REF, num_threads=1",
        ),
        (
            BackendId::Tflm,
            Backend::Tflm,
            "tflite-micro Python interpreter (reference kernels)",
        ),
    ] {
        let run = match backend {
            Backend::Xnnpack => xnnpack.take().unwrap_or_else(|| python(backend, policy)),
            _ => {
                eprintln!("bench: {} on {}", bm.name, id.label());
                python(backend, policy)
            }
        };
        match run {
            Ok(r) => {
                if let Some(v) = r.report.get("versions").and_then(|v| v.as_object()) {
                    for (k, v) in v {
                        if let Some(s) = v.as_str() {
                            ctx.python_versions.insert(k.clone(), s.to_string());
                        }
                    }
                }
                let mut config = config.to_string();
                if backend == Backend::Xnnpack {
                    let applied = r.report.get("xnnpack_delegate_applied") == Some(&true.into());
                    config += if applied {
                        " (delegate applied)"
                    } else {
                        " (delegate NOT applied)"
                    };
                    config +=
                        &format!(", timed in {HEADLINE_ROUNDS} rounds alternating with kdruntime");
                }
                if backend == Backend::Tflm {
                    tflm_arena = r.tflm_arena_bytes;
                }
                let agreement = r.outputs.first().and_then(|o| Agreement::of(o, &kd_out));
                results.push(timed(id, config, &r.timing.latencies_us, agreement));
            }
            Err(e) => {
                let msg = e.to_string();
                let first = msg.lines().last().unwrap_or(&msg).trim().to_string();
                eprintln!("bench: {} on {} failed: {msg}", bm.name, id.label());
                results.push(skipped(id, config, format!("did not run: {first}")));
            }
        }
    }

    let ort_config = "kdrun ort backend (Rust, in process), CPU provider, 1 intra-op thread, sequential, basic graph optimisations";
    let onnx = bm.tflite.with_extension("onnx");
    let (onnx_file, onnx_bytes) = if onnx.is_file() {
        eprintln!("bench: {} on ONNX Runtime", bm.name);
        match time_ort(&onnx, &bm.input, policy) {
            Ok((lat, out)) => {
                let agreement = Agreement::of(&out, &kd_out);
                let mut r = timed(BackendId::Onnxruntime, ort_config.into(), &lat, agreement);
                if agreement.is_none() {
                    r.note = Some(format!(
                        "output 0 has {} bytes, kdruntime's {}: not the same model?",
                        out.len(),
                        kd_out.len()
                    ));
                }
                results.push(r);
            }
            Err(e) => {
                eprintln!("bench: {} on ONNX Runtime failed: {e:#}", bm.name);
                results.push(skipped(
                    BackendId::Onnxruntime,
                    ort_config,
                    format!("did not run: {e:#}"),
                ))
            }
        }
        (
            Some(relative(&onnx)),
            std::fs::metadata(&onnx).ok().map(|m| m.len()),
        )
    } else {
        results.push(skipped(
            BackendId::Onnxruntime,
            ort_config,
            "no .onnx file beside the .tflite (the trainer's exporter writes one for trained \
             models; no TFLite-to-ONNX converter is available offline)"
                .into(),
        ));
        (None, None)
    };

    let kd_median = results[0].median_us;
    for r in &mut results[1..] {
        r.ratio_to_kdruntime = match (r.median_us, kd_median) {
            (Some(p), Some(k)) if k > 0.0 => Some(p / k),
            _ => None,
        };
    }
    Ok(ModelBench {
        name: bm.name.clone(),
        source: bm.source.clone(),
        tflite_file: relative(&bm.tflite),
        tflite_bytes: bytes.len() as u64,
        onnx_file,
        onnx_bytes,
        macs: bm.macs,
        operators: m.num_operators(),
        input_shape,
        input: bm.input_desc.clone(),
        kdruntime_arena_bytes: arena_bytes as u64,
        kdruntime_fastest_arena_bytes: Some(fastest_arena_bytes as u64),
        tflm_arena_bytes: tflm_arena,
        results,
    })
}

/// Rounds in which the headline pair (kdruntime's fastest kernels, TFLite XNNPACK) alternate.
pub const HEADLINE_ROUNDS: usize = 3;

/// Times kdruntime on `model` with `kernels` and `threads`; returns the latencies and output 0.
fn time_kdruntime(
    model: &Model,
    input: &[u8],
    kernels: Kernels,
    threads: usize,
    policy: &Policy,
) -> Result<(Vec<f64>, Vec<u8>)> {
    let mut arena = vec![0u8; model.arena_size_for(kernels)?];
    let mut interp = Interpreter::with_kernels(model, &mut arena, kernels)?;
    interp.set_threads(threads);
    // The planner reuses the input's bytes for later activations once the input is dead,
    // so every run refills it (untimed), as an application does.
    let lat = time_invokes(policy, || {
        interp.input_mut(0)?.copy_from_slice(input);
        let t0 = Instant::now();
        interp.invoke()?;
        Ok(t0.elapsed())
    })?;
    Ok((lat, interp.output(0)?.to_vec()))
}

/// Times ONNX Runtime on `onnx`; returns the latencies and output 0 of the first run.
fn time_ort(onnx: &Path, input: &[u8], policy: &Policy) -> Result<(Vec<f64>, Vec<u8>)> {
    let mut model = OrtModel::load(onnx, &OrtOptions::default())?;
    if model.inputs().len() != 1 || model.inputs()[0].byte_len() != input.len() {
        bail!(
            "{}: expects inputs {:?}, the benchmark feeds one input of {} bytes",
            onnx.display(),
            model.inputs(),
            input.len()
        );
    }
    let first = model.run(&[input])?.swap_remove(0);
    // `run` creates the input tensor, runs and copies the outputs out: all timed, as the Python
    // harness's `sess.run` is.
    let lat = time_invokes(policy, || {
        let t0 = Instant::now();
        model.run(&[input])?;
        Ok(t0.elapsed())
    })?;
    Ok((lat, first))
}

/// Times every model and assembles the report.
pub fn run(models: &[BenchModel], policy: &Policy, command: &str) -> Result<BenchReport> {
    let t0 = Instant::now();
    let date_utc = machine::now_utc();
    let machine = Machine::detect();
    let mut ctx = RunContext::default();
    let mut out = Vec::new();
    for bm in models {
        out.push(bench_model(bm, policy, &mut ctx)?);
    }
    let mut versions = BTreeMap::new();
    versions.insert(
        "kdedge".to_string(),
        format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            machine::git_commit().unwrap_or_else(|| "unknown commit".into())
        ),
    );
    if let Some(v) = machine::command_line("rustc", &["-V"]) {
        versions.insert("rustc".into(), v);
    }
    for (k, v) in ctx.python_versions {
        versions.insert(k, v);
    }
    if let Some(lib) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(lib);
        let real = p.canonicalize().unwrap_or(p);
        versions.insert(
            "libonnxruntime (Rust backend)".into(),
            real.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    versions.insert("ort crate".into(), "2.0.0-rc.15 (load-dynamic)".into());
    Ok(BenchReport {
        schema: super::SCHEMA,
        date_utc,
        command: command.into(),
        git_commit: machine::git_commit(),
        wall_seconds: t0.elapsed().as_secs_f64(),
        machine,
        versions,
        policy: *policy,
        models: out,
    })
}
