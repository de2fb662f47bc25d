//! What kdrun prints: `info` tables and classification results.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use kdruntime::postprocess::{above_thresholds, dequantize, sigmoid, softmax, top_k};
use kdruntime::tflite::schema::builtin_operator;
use kdruntime::{DType, Interpreter, Model};
use serde_json::json;

use crate::config::{InferenceConfig, Task};

/// `kdrun info`: model header, graph inputs/outputs, operators and tensors, arena size.
pub fn info(m: &Model<'_>) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "schema version: {}", m.version())?;
    writeln!(
        s,
        "description: {}",
        String::from_utf8_lossy(m.description())
    )?;
    writeln!(s, "arena size: {} bytes", m.arena_size()?)?;
    for i in 0..m.num_inputs() {
        writeln!(
            s,
            "input {i}: {}",
            tensor_line(m, m.input_tensor_index(i)?)?
        )?;
    }
    for i in 0..m.num_outputs() {
        writeln!(
            s,
            "output {i}: {}",
            tensor_line(m, m.output_tensor_index(i)?)?
        )?;
    }
    writeln!(s, "operators: {}", m.num_operators())?;
    for op in m.operators() {
        let op = op?;
        let list = |v: &dyn Fn(usize) -> Option<usize>, n: usize| {
            (0..n)
                .map(|i| v(i).map_or("-".into(), |t| t.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        };
        writeln!(
            s,
            "  #{:<3} {:<18} v{} in [{}] out [{}]",
            op.index,
            if op.opcode >= 0 {
                builtin_operator::name(op.opcode)
            } else {
                "CUSTOM"
            },
            op.version,
            list(&|i| op.input(i), op.inputs.len()),
            list(&|i| op.output(i), op.outputs.len()),
        )?;
    }
    writeln!(s, "tensors: {}", m.num_tensors())?;
    for t in 0..m.num_tensors() {
        writeln!(s, "  {}", tensor_line(m, t)?)?;
    }
    Ok(s)
}

fn tensor_line(m: &Model<'_>, index: usize) -> Result<String> {
    let t = m.tensor(index)?;
    let quant = match t.quant.len() {
        0 => String::new(),
        1 => format!(" scale {:e} zp {}", t.scale(), t.zero_point()),
        n => format!(" per-channel x{n} (axis {})", t.quant.quantized_dimension),
    };
    Ok(format!(
        "#{:<3} {:<24} {:<7} {:?}{}{}",
        t.index,
        String::from_utf8_lossy(t.name),
        t.dtype.name(),
        t.shape.dims(),
        quant,
        if t.data.is_some() { " const" } else { "" }
    ))
}

/// One classification.
pub struct Classification {
    task: Task,
    /// (class index, label, probability) in reporting order.
    classes: Vec<(usize, Option<String>, f32)>,
    raw: Vec<i8>,
}

/// How to read a model's int8 output: its quantisation, and whether the model already ends in
/// SOFTMAX (then the output is probabilities and no softmax is applied again).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputQuant {
    /// Quantisation scale of the output tensor.
    pub scale: f32,
    /// Quantisation zero point of the output tensor.
    pub zero_point: i32,
    /// The last operator is SOFTMAX.
    pub ends_in_softmax: bool,
}

impl OutputQuant {
    /// Output 0 of a kdruntime model (must be int8).
    pub fn of_interpreter(interp: &Interpreter<'_, '_>) -> Result<Self> {
        let info = interp.output_info(0)?;
        if info.dtype != DType::Int8 {
            bail!(
                "output tensor {} is {}; kdrun run expects int8",
                info.index,
                info.dtype.name()
            );
        }
        let m = interp.model();
        Ok(Self {
            scale: info.scale(),
            zero_point: info.zero_point() as i32,
            ends_in_softmax: m.num_operators() > 0
                && m.operator(m.num_operators() - 1)?.opcode == builtin_operator::SOFTMAX,
        })
    }
}

/// Reads output 0 of a kdruntime model and classifies it (see [`classify_raw`]).
pub fn classify(
    interp: &Interpreter<'_, '_>,
    cfg: &InferenceConfig,
    labels: Option<&[String]>,
    top: usize,
) -> Result<Classification> {
    let quant = OutputQuant::of_interpreter(interp)?;
    let raw: Vec<i8> = interp.output(0)?.iter().map(|&b| b as i8).collect();
    classify_raw(raw, &quant, cfg, labels, top)
}

/// Dequantises a raw int8 output, applies softmax (multi-class; skipped when the model already
/// ends in SOFTMAX) or sigmoid (multi-label), then top-k or thresholds. Every backend's output
/// goes through this one function.
pub fn classify_raw(
    raw: Vec<i8>,
    quant: &OutputQuant,
    cfg: &InferenceConfig,
    labels: Option<&[String]>,
    top: usize,
) -> Result<Classification> {
    let n = raw.len();
    if let Some(l) = labels {
        if l.len() != n {
            bail!("{} labels for {n} outputs", l.len());
        }
    }
    let mut real = vec![0f32; n];
    dequantize(&raw, quant.scale, quant.zero_point, &mut real)?;
    let mut prob = vec![0f32; n];
    let picked: Vec<usize> = match cfg.task {
        Task::MultiClass => {
            if quant.ends_in_softmax {
                prob.copy_from_slice(&real);
            } else {
                softmax(&real, &mut prob)?;
            }
            let mut idx = vec![0usize; top.min(n)];
            top_k(&prob, &mut idx)?;
            idx
        }
        Task::MultiLabel => {
            sigmoid(&real, &mut prob)?;
            let th = cfg.thresholds_for(n)?;
            let mut idx = vec![0usize; n];
            let k = above_thresholds(&prob, &th, &mut idx)?;
            idx.truncate(k);
            idx
        }
    };
    let classes = picked
        .into_iter()
        .map(|i| (i, labels.and_then(|l| l.get(i).cloned()), prob[i]))
        .collect();
    Ok(Classification {
        task: cfg.task,
        classes,
        raw,
    })
}

impl Classification {
    /// Human-readable lines: `rank  class  label  probability`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if self.classes.is_empty() {
            s.push_str("no class above its threshold\n");
        }
        for (rank, (i, label, p)) in self.classes.iter().enumerate() {
            let _ = writeln!(
                s,
                "{:>2}. class {:<4} {:<20} {:.4}",
                rank + 1,
                i,
                label.as_deref().unwrap_or("-"),
                p
            );
        }
        s
    }

    /// The same as JSON, with the raw int8 output.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "task": match self.task { Task::MultiClass => "multi-class", Task::MultiLabel => "multi-label" },
            "classes": self.classes.iter().map(|(i, l, p)| json!({"index": i, "label": l, "probability": p})).collect::<Vec<_>>(),
            "raw_output": self.raw,
        })
    }
}
