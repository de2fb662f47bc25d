//! Full-integer export of an [`IntGraph`]: the files a device or a serving stack receives.
//!
//! * [`tflite`]: `model_qat_int8.tflite` (uint8 input, int8 output), written with kdruntime's
//!   flatbuffer writer; kdruntime runs it bit-exactly like TFLite's reference kernels.
//! * [`onnx`]: `model_qat_int8.onnx` in QOperator form (QLinearConv, QGemm, QLinearAdd,
//!   QLinearGlobalAveragePool), fed the same uint8 NHWC bytes.
//! * [`c_array`]: `model_data.c` / `model_data.h`, the TFLite bytes as an aligned C array.
//! * [`sidecars`]: `labels.txt`, `metrics.json` (the exported model run by kdruntime on the test
//!   split), `threshold_recommendation.json`, `inference_config.json`.
//!
//! [`write_all`] writes every file into one folder. Every writer is deterministic: the same
//! graph gives the same bytes.
//!
//! Before writing, [`check_graph`] validates the graph once (tensor indices, element types,
//! shapes implied by kernels, strides and pads, weight and bias sizes, quantisation ranges), so
//! the exporters never index out of range and a bad graph is reported by operator and tensor
//! name instead of failing inside an interpreter.

pub mod c_array;
pub mod onnx;
mod onnx_proto;
pub mod sidecars;
pub mod tflite;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::data::Dataset;
use crate::eval::Metrics;
use crate::pipeline::Normalization;
use crate::quant::graph::{ElemType, IntGraph, IntOp, IntTensor, QParams, TensorIx};

/// File name of the TFLite model.
pub const TFLITE_FILE: &str = "model_qat_int8.tflite";
/// File name of the ONNX model.
pub const ONNX_FILE: &str = "model_qat_int8.onnx";
/// File name of the C array source.
pub const C_FILE: &str = "model_data.c";
/// File name of the C array header.
pub const H_FILE: &str = "model_data.h";
/// C symbol of the model array in [`C_FILE`] (its length is `<symbol>_len`).
pub const C_SYMBOL: &str = "kdedge_model_data";
/// File name of the label list.
pub const LABELS_FILE: &str = "labels.txt";
/// File name of the test metrics of the exported model.
pub const METRICS_FILE: &str = "metrics.json";
/// File name of the threshold recommendation.
pub const THRESHOLDS_FILE: &str = "threshold_recommendation.json";
/// File name of the inference configuration.
pub const CONFIG_FILE: &str = "inference_config.json";

/// What [`write_all`] needs besides the graph and the data set.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The normalisation the network was trained with (folded into the input quantisation and
    /// the first layer; recorded in `inference_config.json`).
    pub normalization: Normalization,
    /// Thresholds tried by the multi-label search ([`sidecars::default_grid`]: 0.05 to 0.95 in
    /// steps of 0.01).
    pub threshold_grid: Vec<f32>,
    /// The TFLite model's `description` string.
    pub description: String,
}

impl ExportOptions {
    /// The defaults: the default grid and the description `kdedge`.
    pub fn new(normalization: Normalization) -> Self {
        ExportOptions {
            normalization,
            threshold_grid: sidecars::default_grid(),
            description: "kdedge".to_string(),
        }
    }
}

/// One file written by [`write_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    /// Full path.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: usize,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

/// What [`write_all`] wrote and measured.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// Every file, in writing order.
    pub files: Vec<WrittenFile>,
    /// Test-split metrics of the exported TFLite model run by kdruntime (`metrics.json`).
    pub metrics: Metrics,
    /// The recommendation written to `threshold_recommendation.json`.
    pub thresholds: sidecars::ThresholdRecommendation,
    /// kdruntime's arena size for the TFLite model (`Model::arena_size`).
    pub arena_bytes: usize,
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8], files: &mut Vec<WrittenFile>) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
    files.push(WrittenFile {
        path,
        bytes: bytes.len(),
        sha256: sha256_hex(bytes),
    });
    Ok(())
}

/// Writes every export file of `graph` into `out_dir` (created if missing):
/// [`TFLITE_FILE`], [`ONNX_FILE`], [`C_FILE`], [`H_FILE`], [`LABELS_FILE`],
/// [`THRESHOLDS_FILE`] (searched on the validation split), [`METRICS_FILE`] (the TFLite model
/// run by kdruntime on the test split, with the recommended thresholds) and [`CONFIG_FILE`].
///
/// The labels and the task come from `ds` (`ds.classes` is the output order, `ds.mode` the
/// task); the graph's output must have one value per class.
pub fn write_all(
    out_dir: &Path,
    graph: &IntGraph,
    ds: &Dataset,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    check_graph(graph)?;
    let out = &graph.tensors[graph.output];
    if out.shape != [1, ds.classes.len()] {
        bail!(
            "export: the graph output '{}' has shape {:?} but the data set has {} classes",
            out.name,
            out.shape,
            ds.classes.len()
        );
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create", out_dir.display()))?;
    let mut files = Vec::new();

    let model = tflite::write(graph, &opts.description).context("export: TFLite")?;
    write_file(out_dir, TFLITE_FILE, &model, &mut files)?;
    let onnx = onnx::write(graph).context("export: ONNX")?;
    write_file(out_dir, ONNX_FILE, &onnx, &mut files)?;
    let (c, h) = c_array::write(&model, C_SYMBOL)?;
    write_file(out_dir, C_FILE, c.as_bytes(), &mut files)?;
    write_file(out_dir, H_FILE, h.as_bytes(), &mut files)?;
    write_file(
        out_dir,
        LABELS_FILE,
        sidecars::labels_txt(&ds.classes)?.as_bytes(),
        &mut files,
    )?;

    let runner = sidecars::Runner::new(&model)?;
    let thresholds = sidecars::recommend_thresholds(&runner, ds, &opts.threshold_grid)?;
    write_file(
        out_dir,
        THRESHOLDS_FILE,
        pretty(&thresholds.to_json())?.as_bytes(),
        &mut files,
    )?;
    let metrics = sidecars::test_metrics(&runner, ds, &thresholds)?;
    write_file(
        out_dir,
        METRICS_FILE,
        pretty(&sidecars::metrics_json(&metrics))?.as_bytes(),
        &mut files,
    )?;
    let config = sidecars::inference_config(
        graph,
        ds,
        &opts.normalization,
        &thresholds,
        runner.arena_bytes(),
        &files,
    )?;
    write_file(
        out_dir,
        CONFIG_FILE,
        pretty(&config)?.as_bytes(),
        &mut files,
    )?;
    Ok(ExportReport {
        files,
        metrics,
        thresholds,
        arena_bytes: runner.arena_bytes(),
    })
}

fn pretty(v: &serde_json::Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// Name of an operator for error messages (`operator 3 (Conv)`).
pub(crate) fn op_label(i: usize, op: &IntOp) -> String {
    let kind = match op {
        IntOp::Quantize { .. } => "Quantize",
        IntOp::Conv {
            depthwise: true, ..
        } => "DepthwiseConv",
        IntOp::Conv { .. } => "Conv",
        IntOp::Add { .. } => "Add",
        IntOp::GlobalAvgPool { .. } => "GlobalAvgPool",
        IntOp::FullyConnected { .. } => "FullyConnected",
    };
    format!("operator {i} ({kind})")
}

/// Validates `graph` for export (see the module docs); errors name the operator and tensor.
pub fn check_graph(graph: &IntGraph) -> Result<()> {
    let n = graph.tensors.len();
    let tensor = |ix: TensorIx, what: &str| -> Result<&IntTensor> {
        graph
            .tensors
            .get(ix)
            .with_context(|| format!("{what}: tensor {ix} does not exist ({n} tensors)"))
    };
    for (i, t) in graph.tensors.iter().enumerate() {
        check_qparams(t.q, t.elem, &format!("tensor {i} '{}'", t.name))?;
        if !(t.shape.len() == 4 || t.shape.len() == 2) || t.shape[0] != 1 {
            bail!(
                "tensor {i} '{}': shape {:?} is neither [1, H, W, C] nor [1, C]",
                t.name,
                t.shape
            );
        }
        if t.shape.contains(&0) {
            bail!("tensor {i} '{}': shape {:?} has a 0", t.name, t.shape);
        }
        if let Some(j) = graph.tensors[..i].iter().position(|u| u.name == t.name) {
            bail!("tensors {j} and {i} are both named '{}'", t.name);
        }
    }
    let input = tensor(graph.input, "graph input")?;
    if input.elem != ElemType::U8 || input.shape.len() != 4 {
        bail!(
            "graph input '{}' must be uint8 [1, H, W, C], is {:?} {:?}",
            input.name,
            input.elem,
            input.shape
        );
    }
    let output = tensor(graph.output, "graph output")?;
    if output.elem != ElemType::I8 || output.shape.len() != 2 {
        bail!(
            "graph output '{}' must be int8 [1, C], is {:?} {:?}",
            output.name,
            output.elem,
            output.shape
        );
    }
    let mut produced = vec![false; n];
    produced[graph.input] = true;
    for (i, op) in graph.ops.iter().enumerate() {
        let label = op_label(i, op);
        let read = |ix: TensorIx, produced: &[bool]| -> Result<&IntTensor> {
            let t = tensor(ix, &label)?;
            if !produced[ix] {
                bail!("{label}: reads '{}' before it is computed", t.name);
            }
            Ok(t)
        };
        let (ins, out_ix): (Vec<&IntTensor>, TensorIx) = match op {
            IntOp::Quantize { input, output } => (vec![read(*input, &produced)?], *output),
            IntOp::Conv { input, output, .. }
            | IntOp::GlobalAvgPool { input, output }
            | IntOp::FullyConnected { input, output, .. } => {
                (vec![read(*input, &produced)?], *output)
            }
            IntOp::Add { a, b, output, .. } => {
                (vec![read(*a, &produced)?, read(*b, &produced)?], *output)
            }
        };
        let out = tensor(out_ix, &label)?;
        if produced[out_ix] {
            bail!("{label}: output '{}' is written twice", out.name);
        }
        produced[out_ix] = true;
        if out.elem != ElemType::I8 {
            bail!("{label}: output '{}' must be int8", out.name);
        }
        let x = ins[0];
        let need_i8 = |t: &IntTensor| -> Result<()> {
            if t.elem != ElemType::I8 {
                bail!("{label}: input '{}' must be int8", t.name);
            }
            Ok(())
        };
        match op {
            IntOp::Quantize { .. } => {
                if x.elem != ElemType::U8 || x.shape != out.shape {
                    bail!(
                        "{label}: '{}' {:?} {:?} -> '{}' {:?} must be uint8 -> int8 of one shape",
                        x.name,
                        x.elem,
                        x.shape,
                        out.name,
                        out.shape
                    );
                }
            }
            IntOp::Conv {
                weights,
                depthwise,
                stride,
                pads,
                ..
            } => {
                need_i8(x)?;
                if x.shape.len() != 4 || out.shape.len() != 4 {
                    bail!(
                        "{label}: '{}' and '{}' must be [1, H, W, C]",
                        x.name,
                        out.name
                    );
                }
                let (h, w, c) = (x.shape[1], x.shape[2], x.shape[3]);
                let (oh, ow, oc) = (out.shape[1], out.shape[2], out.shape[3]);
                let ws = &weights.shape;
                let (kh, kw) = match (depthwise, &ws[..]) {
                    (false, &[o, kh, kw, i]) if o == oc && i == c => (kh, kw),
                    (true, &[1, kh, kw, m]) if m == c && c == oc => (kh, kw),
                    _ => bail!(
                        "{label}: weights {ws:?} do not fit input '{}' {:?} -> output '{}' {:?}",
                        x.name,
                        x.shape,
                        out.name,
                        out.shape
                    ),
                };
                if *stride == 0 || kh == 0 || kw == 0 {
                    bail!("{label}: stride {stride} and kernel {kh}x{kw} must be >= 1");
                }
                let [t, b, l, r] = *pads;
                let span = |size: usize, lo: usize, hi: usize, k: usize| {
                    (size + lo + hi).checked_sub(k).map(|v| v / stride + 1)
                };
                if span(h, t, b, kh) != Some(oh) || span(w, l, r, kw) != Some(ow) {
                    bail!(
                        "{label}: input '{}' {h}x{w}, kernel {kh}x{kw}, stride {stride}, pads {pads:?} \
                         do not give the output '{}' {oh}x{ow}",
                        x.name,
                        out.name
                    );
                }
                if t >= kh || b >= kh || l >= kw || r >= kw {
                    bail!("{label}: pads {pads:?} must each be smaller than the kernel {kh}x{kw}");
                }
                check_weights(weights, oc, &label)?;
            }
            IntOp::Add { .. } => {
                need_i8(x)?;
                need_i8(ins[1])?;
                if x.shape != ins[1].shape || x.shape != out.shape {
                    bail!(
                        "{label}: '{}' {:?} + '{}' {:?} -> '{}' {:?} need one shape",
                        x.name,
                        x.shape,
                        ins[1].name,
                        ins[1].shape,
                        out.name,
                        out.shape
                    );
                }
            }
            IntOp::GlobalAvgPool { .. } => {
                need_i8(x)?;
                if x.shape.len() != 4 || out.shape != [1, x.shape[3]] {
                    bail!(
                        "{label}: '{}' {:?} -> '{}' {:?} must be [1, H, W, C] -> [1, C]",
                        x.name,
                        x.shape,
                        out.name,
                        out.shape
                    );
                }
            }
            IntOp::FullyConnected { weights, .. } => {
                need_i8(x)?;
                let ok = x.shape.len() == 2
                    && out.shape.len() == 2
                    && weights.shape == [out.shape[1], x.shape[1]];
                if !ok {
                    bail!(
                        "{label}: '{}' {:?} -> '{}' {:?} with weights {:?} must be [1, I] -> [1, O] with [O, I]",
                        x.name,
                        x.shape,
                        out.name,
                        out.shape,
                        weights.shape
                    );
                }
                check_weights(weights, out.shape[1], &label)?;
            }
        }
    }
    if !produced[graph.output] {
        bail!("graph output '{}' is never computed", output.name);
    }
    Ok(())
}

fn check_qparams(q: QParams, elem: ElemType, what: &str) -> Result<()> {
    if !(q.scale.is_finite() && q.scale > 0.0) {
        bail!("{what}: scale {} must be finite and > 0", q.scale);
    }
    let (lo, hi) = match elem {
        ElemType::U8 => (0, 255),
        ElemType::I8 => (-128, 127),
    };
    if !(lo..=hi).contains(&q.zero_point) {
        bail!("{what}: zero point {} is outside {lo}..={hi}", q.zero_point);
    }
    Ok(())
}

fn check_weights(
    w: &crate::quant::graph::ChannelWeights,
    channels: usize,
    label: &str,
) -> Result<()> {
    let count: usize = w.shape.iter().product();
    if w.values.len() != count {
        bail!(
            "{label}: {} weight values for shape {:?} ({count})",
            w.values.len(),
            w.shape
        );
    }
    if w.scales.len() != channels || w.bias.len() != channels {
        bail!(
            "{label}: {} weight scales and {} biases for {channels} output channels",
            w.scales.len(),
            w.bias.len()
        );
    }
    if let Some(c) = w.scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        bail!(
            "{label}: weight scale {c} = {} must be finite and > 0",
            w.scales[c]
        );
    }
    if let Some(i) = w.values.iter().position(|&v| v == -128) {
        bail!("{label}: weight {i} is -128; symmetric int8 weights lie in [-127, 127]");
    }
    Ok(())
}
