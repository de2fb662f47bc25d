//! ONNX Runtime backend: runs the exported `model_qat_int8.onnx` in ONNX Runtime with the same
//! letterbox ([`crate::image_input`]) and postprocessing ([`crate::report`]) as kdruntime, so a
//! Raspberry Pi or Jetson user can use ONNX Runtime's execution providers on the same model.
//!
//! The library is loaded at run time (the `ort` crate's `load-dynamic`): from `--ort-lib`, else
//! `ORT_DYLIB_PATH`, else `libonnxruntime.so` on the loader's search path. One thread and the CPU
//! provider by default; basic graph optimisations, as the Python harness uses, so the Rust and
//! Python runs of the same library agree bit for bit.
//!
//! ONNX tensors carry no quantisation parameters, so the int8 input scale (for int8-input
//! models) and the output scale, zero point and "ends in SOFTMAX" flag come from the model's
//! metadata (`kdedge.input_scale`, `kdedge.input_zero_point`, `kdedge.output_scale`,
//! `kdedge.output_zero_point`, `kdedge.output_softmax`), or else from the `.tflite` file with the
//! same stem beside the `.onnx` file (the exporter writes both). Raw runs need neither.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue, SessionInputs};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::image_input::{InputSpec, InputType};
use crate::report::OutputQuant;

/// An ONNX Runtime execution provider, tried in the order given; ONNX Runtime falls back to the
/// CPU for operators a provider does not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// The default CPU provider (always present).
    Cpu,
    /// NVIDIA CUDA (Jetson, desktop GPUs); needs a CUDA build of ONNX Runtime.
    Cuda,
    /// NVIDIA TensorRT (Jetson); needs a TensorRT build of ONNX Runtime.
    Tensorrt,
    /// XNNPACK (ARM and x86 CPUs, e.g. Raspberry Pi); needs a build with XNNPACK.
    Xnnpack,
    /// Arm Compute Library (Arm Cortex-A); needs an ACL build.
    Acl,
}

/// How ONNX Runtime optimises the graph before running it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Optimization {
    /// No graph optimisation.
    Disable,
    /// Constant folding and redundant-node removal only (the harness's setting).
    #[default]
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Everything, including layout changes.
    All,
}

/// Session settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrtOptions {
    /// Intra-op threads (inter-op is always 1: the graph runs sequentially).
    pub threads: usize,
    /// Execution providers in priority order; empty means the CPU provider only.
    pub providers: Vec<Provider>,
    /// Graph optimisation level.
    pub optimization: Optimization,
    /// The ONNX Runtime shared library; `None` uses `ORT_DYLIB_PATH` or the loader's search path.
    pub library: Option<PathBuf>,
}

impl Default for OrtOptions {
    /// One thread, CPU provider, basic optimisations, library from the environment.
    fn default() -> Self {
        Self {
            threads: 1,
            providers: Vec::new(),
            optimization: Optimization::Basic,
            library: None,
        }
    }
}

/// A model input or output as ONNX Runtime reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDesc {
    /// Tensor name in the graph.
    pub name: String,
    /// Static shape (dynamic dimensions are rejected at load).
    pub shape: Vec<i64>,
    /// Element type.
    pub dtype: TensorElementType,
}

impl TensorDesc {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product::<i64>().max(0) as usize
    }

    /// Bytes of the whole tensor.
    pub fn byte_len(&self) -> usize {
        self.elements() * elem_size(self.dtype).unwrap_or(0)
    }
}

fn elem_size(t: TensorElementType) -> Option<usize> {
    use TensorElementType as T;
    Some(match t {
        T::Uint8 | T::Int8 | T::Bool => 1,
        T::Int16 | T::Uint16 => 2,
        T::Int32 | T::Uint32 | T::Float32 => 4,
        T::Int64 | T::Uint64 | T::Float64 => 8,
        _ => return None,
    })
}

/// ONNX Runtime errors carry a builder or other non-`Send` payload; keep the message only.
fn ort_err<R>(what: impl std::fmt::Display) -> impl FnOnce(ort::Error<R>) -> anyhow::Error {
    move |e| anyhow!("{what}: {e}")
}

/// The process-wide ONNX Runtime environment. The library is loaded once; the first caller's
/// `library` wins.
pub fn environment(library: Option<&Path>) -> Result<Environment> {
    static ENV: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = library
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"));
        let builder = ort::init_from(&path).map_err(|e| {
            format!(
                "loading ONNX Runtime from {}: {e} (pass --ort-lib or set ORT_DYLIB_PATH; \
                 `make setup` puts one under .cache/onnxruntime/<arch>/)",
                path.display()
            )
        })?;
        builder
            .with_name("kdedge")
            .build()
            .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// A loaded ONNX model and its session.
pub struct OrtModel {
    session: Session,
    path: PathBuf,
    inputs: Vec<TensorDesc>,
    outputs: Vec<TensorDesc>,
}

impl OrtModel {
    /// Loads `path` into a session configured by `opts`.
    pub fn load(path: &Path, opts: &OrtOptions) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(&bytes, path, opts)
    }

    /// Builds a session from model bytes; `path` names the model in errors and locates the
    /// `.tflite` sibling.
    pub fn from_bytes(bytes: &[u8], path: &Path, opts: &OrtOptions) -> Result<Self> {
        if opts.threads == 0 {
            bail!("ONNX Runtime needs at least one thread");
        }
        let env = environment(opts.library.as_deref())?;
        let what = path.display().to_string();
        let session = configure(Session::builder(&env).map_err(ort_err(&what))?, opts, &what)?
            .commit_from_memory(bytes)
            .map_err(|e| anyhow!("{what}: ONNX Runtime could not load the model: {e}"))?;
        let desc = |kind: &str, v: &[ort::value::Outlet]| -> Result<Vec<TensorDesc>> {
            v.iter()
                .map(|o| {
                    let ValueType::Tensor { ty, shape, .. } = o.dtype() else {
                        bail!("{what}: {kind} '{}' is not a tensor", o.name());
                    };
                    let shape: Vec<i64> = shape.iter().copied().collect();
                    if shape.iter().any(|&d| d < 0) {
                        bail!(
                            "{what}: {kind} '{}' has a dynamic shape {shape:?}; export it with fixed dimensions",
                            o.name()
                        );
                    }
                    if elem_size(*ty).is_none() {
                        bail!("{what}: {kind} '{}' has unsupported type {ty:?}", o.name());
                    }
                    Ok(TensorDesc { name: o.name().to_string(), shape, dtype: *ty })
                })
                .collect()
        };
        let inputs = desc("input", session.inputs())?;
        let outputs = desc("output", session.outputs())?;
        Ok(Self {
            session,
            path: path.to_path_buf(),
            inputs,
            outputs,
        })
    }

    /// The graph inputs, in order.
    pub fn inputs(&self) -> &[TensorDesc] {
        &self.inputs
    }

    /// The graph outputs, in order.
    pub fn outputs(&self) -> &[TensorDesc] {
        &self.outputs
    }

    /// Runs once: `inputs[i]` holds input i's raw bytes (little-endian); returns each output's
    /// raw bytes.
    pub fn run(&mut self, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        if inputs.len() != self.inputs.len() {
            bail!(
                "{}: {} inputs given, the model has {}",
                self.path.display(),
                inputs.len(),
                self.inputs.len()
            );
        }
        let mut feed: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        for (d, bytes) in self.inputs.iter().zip(inputs) {
            if bytes.len() != d.byte_len() {
                bail!(
                    "{}: input '{}' {:?} {:?} needs {} bytes, got {}",
                    self.path.display(),
                    d.name,
                    d.shape,
                    d.dtype,
                    d.byte_len(),
                    bytes.len()
                );
            }
            feed.push((Cow::Owned(d.name.clone()), to_value(d, bytes)?.into()));
        }
        let what = self.path.display().to_string();
        let outs = self
            .session
            .run(SessionInputs::from(feed))
            .map_err(ort_err(format!("{what}: run")))?;
        self.outputs
            .iter()
            .enumerate()
            .map(|(i, d)| from_value(&outs[i], d).with_context(|| what.clone()))
            .collect()
    }

    /// Runs every input set in `data` (back to back, input 0 then input 1 ... per run) and
    /// returns the outputs back to back in the same order, as `kdrun raw` does on kdruntime.
    pub fn run_raw(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let sizes: Vec<usize> = self.inputs.iter().map(TensorDesc::byte_len).collect();
        let per_run: usize = sizes.iter().sum();
        if per_run == 0 || data.is_empty() || !data.len().is_multiple_of(per_run) {
            bail!(
                "input is {} bytes, not a positive multiple of the {per_run} bytes one run takes (inputs: {sizes:?})",
                data.len()
            );
        }
        let mut out = Vec::new();
        for chunk in data.chunks(per_run) {
            let mut at = 0;
            let parts: Vec<&[u8]> = sizes
                .iter()
                .map(|&n| {
                    at += n;
                    &chunk[at - n..at]
                })
                .collect();
            for o in self.run(&parts)? {
                out.extend_from_slice(&o);
            }
        }
        Ok(out)
    }

    /// The image input (input 0), with its quantisation when it is int8.
    pub fn input_spec(&self) -> Result<InputSpec> {
        let d = self
            .inputs
            .first()
            .with_context(|| format!("{}: the model has no input", self.path.display()))?;
        let what = format!("{}: input '{}'", self.path.display(), d.name);
        let dtype = match d.dtype {
            TensorElementType::Uint8 => InputType::UInt8,
            TensorElementType::Int8 => {
                let (scale, zero_point) = self.quant()?.input.with_context(|| {
                    format!("{what} is int8 but no input quantisation was found")
                })?;
                InputType::Int8 { scale, zero_point }
            }
            other => bail!("{what} is {other:?}; kdrun run handles uint8 and int8"),
        };
        InputSpec::new(&what, &d.shape, dtype)
    }

    /// How to read output 0 (which must be int8).
    pub fn output_quant(&self) -> Result<OutputQuant> {
        let d = self
            .outputs
            .first()
            .with_context(|| format!("{}: the model has no output", self.path.display()))?;
        if d.dtype != TensorElementType::Int8 {
            bail!(
                "{}: output '{}' is {:?}; kdrun run expects int8",
                self.path.display(),
                d.name,
                d.dtype
            );
        }
        Ok(self.quant()?.output)
    }

    /// Quantisation from the metadata, else from the `.tflite` sibling.
    fn quant(&self) -> Result<SideQuant> {
        if let Some(q) = self.quant_from_metadata()? {
            return Ok(q);
        }
        let sibling = self.path.with_extension("tflite");
        if !sibling.is_file() {
            bail!(
                "{}: ONNX tensors carry no quantisation; found neither kdedge.output_scale / \
                 kdedge.output_zero_point metadata nor {} beside it",
                self.path.display(),
                sibling.display()
            );
        }
        quant_from_tflite(&sibling)
    }

    fn quant_from_metadata(&self) -> Result<Option<SideQuant>> {
        let meta = self
            .session
            .metadata()
            .map_err(ort_err(self.path.display()))?;
        let get = |k: &str| meta.custom(k);
        let (Some(scale), Some(zp)) = (get("kdedge.output_scale"), get("kdedge.output_zero_point"))
        else {
            return Ok(None);
        };
        let what = self.path.display();
        let num = |key: &str, v: &str| -> Result<f64> {
            v.trim()
                .parse::<f64>()
                .map_err(|_| anyhow!("{what}: metadata {key} = {v:?} is not a number"))
        };
        let input = match (get("kdedge.input_scale"), get("kdedge.input_zero_point")) {
            (Some(s), Some(z)) => Some((
                num("kdedge.input_scale", &s)? as f32,
                num("kdedge.input_zero_point", &z)? as i32,
            )),
            _ => None,
        };
        let softmax = match get("kdedge.output_softmax").as_deref().map(str::trim) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(v) => bail!("{what}: metadata kdedge.output_softmax = {v:?} is not true/false"),
        };
        let scale = num("kdedge.output_scale", &scale)? as f32;
        if !(scale > 0.0 && scale.is_finite()) {
            bail!("{what}: metadata kdedge.output_scale = {scale} must be positive");
        }
        Ok(Some(SideQuant {
            input,
            output: OutputQuant {
                scale,
                zero_point: num("kdedge.output_zero_point", &zp)? as i32,
                ends_in_softmax: softmax,
            },
        }))
    }
}

struct SideQuant {
    input: Option<(f32, i32)>,
    output: OutputQuant,
}

fn quant_from_tflite(path: &Path) -> Result<SideQuant> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let m = kdruntime::Model::from_bytes(&bytes)
        .with_context(|| format!("{}: not a model kdruntime can read", path.display()))?;
    let t_in = m.tensor(m.input_tensor_index(0)?)?;
    let t_out = m.tensor(m.output_tensor_index(0)?)?;
    let last = m.num_operators().checked_sub(1);
    let ends_in_softmax = match last {
        Some(i) => m.operator(i)?.opcode == kdruntime::tflite::schema::builtin_operator::SOFTMAX,
        None => false,
    };
    Ok(SideQuant {
        input: (t_in.dtype == kdruntime::DType::Int8)
            .then(|| (t_in.scale(), t_in.zero_point() as i32)),
        output: OutputQuant {
            scale: t_out.scale(),
            zero_point: t_out.zero_point() as i32,
            ends_in_softmax,
        },
    })
}

fn configure(mut b: SessionBuilder, opts: &OrtOptions, what: &str) -> Result<SessionBuilder> {
    let level = match opts.optimization {
        Optimization::Disable => GraphOptimizationLevel::Disable,
        Optimization::Basic => GraphOptimizationLevel::Level1,
        Optimization::Extended => GraphOptimizationLevel::Level2,
        Optimization::All => GraphOptimizationLevel::All,
    };
    b = b
        .with_optimization_level(level)
        .map_err(ort_err(what))?
        .with_intra_threads(opts.threads)
        .map_err(ort_err(what))?
        .with_inter_threads(1)
        .map_err(ort_err(what))?
        .with_parallel_execution(false)
        .map_err(ort_err(what))?;
    if !opts.providers.is_empty() {
        let eps: Vec<ort::ep::ExecutionProviderDispatch> = opts
            .providers
            .iter()
            .map(|p| {
                // A provider the library lacks is an error, not a silent CPU fallback: the user
                // asked for it by name.
                match p {
                    Provider::Cpu => ort::ep::CPU::default().build(),
                    Provider::Cuda => ort::ep::CUDA::default().build(),
                    Provider::Tensorrt => ort::ep::TensorRT::default().build(),
                    Provider::Xnnpack => ort::ep::XNNPACK::default().build(),
                    Provider::Acl => ort::ep::ACL::default().build(),
                }
                .error_on_failure()
            })
            .collect();
        b = b
            .with_execution_providers(eps)
            .map_err(|e| anyhow!("{what}: registering {:?}: {e}", opts.providers))?;
    }
    Ok(b)
}

fn to_value(d: &TensorDesc, bytes: &[u8]) -> Result<DynValue> {
    use TensorElementType as T;
    let shape = d.shape.clone();
    fn le<const N: usize, X>(bytes: &[u8], f: impl Fn([u8; N]) -> X) -> Vec<X> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N bytes")))
            .collect()
    }
    let err = |e: ort::Error| anyhow!("input '{}': {e}", d.name);
    Ok(match d.dtype {
        T::Uint8 => Tensor::from_array((shape, bytes.to_vec()))
            .map_err(err)?
            .into_dyn(),
        T::Int8 => Tensor::from_array((shape, le(bytes, |[b]| b as i8)))
            .map_err(err)?
            .into_dyn(),
        T::Int32 => Tensor::from_array((shape, le(bytes, i32::from_le_bytes)))
            .map_err(err)?
            .into_dyn(),
        T::Int64 => Tensor::from_array((shape, le(bytes, i64::from_le_bytes)))
            .map_err(err)?
            .into_dyn(),
        T::Float32 => Tensor::from_array((shape, le(bytes, f32::from_le_bytes)))
            .map_err(err)?
            .into_dyn(),
        other => bail!(
            "input '{}' is {other:?}; raw runs feed uint8, int8, int32, int64 and float32",
            d.name
        ),
    })
}

fn from_value(v: &DynValue, d: &TensorDesc) -> Result<Vec<u8>> {
    use TensorElementType as T;
    let err = |e: ort::Error| anyhow!("output '{}': {e}", d.name);
    let out = match d.dtype {
        T::Uint8 => v.try_extract_tensor::<u8>().map_err(err)?.1.to_vec(),
        T::Int8 => v
            .try_extract_tensor::<i8>()
            .map_err(err)?
            .1
            .iter()
            .map(|&x| x as u8)
            .collect(),
        T::Int32 => v
            .try_extract_tensor::<i32>()
            .map_err(err)?
            .1
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        T::Int64 => v
            .try_extract_tensor::<i64>()
            .map_err(err)?
            .1
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        T::Float32 => v
            .try_extract_tensor::<f32>()
            .map_err(err)?
            .1
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => bail!(
            "output '{}' is {other:?}; raw runs read uint8, int8, int32, int64 and float32",
            d.name
        ),
    };
    if out.len() != d.byte_len() {
        bail!(
            "output '{}' came back with {} bytes, expected {} for {:?}",
            d.name,
            out.len(),
            d.byte_len(),
            d.shape
        );
    }
    Ok(out)
}
