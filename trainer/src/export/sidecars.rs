//! The files shipped beside the models: `labels.txt`, `metrics.json`,
//! `threshold_recommendation.json` and `inference_config.json`.
//!
//! Metrics and thresholds come from the **exported TFLite model run by kdruntime** ([`Runner`])
//! on the data set's splits, through the trainer's exact evaluation input
//! ([`crate::pipeline::eval_input`]: decode + kdruntime's letterbox, no augmentation), because
//! what ships is what is measured. The metric definitions are [`crate::eval`]'s. Scores are the
//! int8 outputs dequantised as TFLite does ([`kdruntime::postprocess::dequantize`]), then, for
//! multi-label, passed through kdruntime's sigmoid (the probability a device thresholds);
//! multi-class metrics rank the dequantised logits (ties by class index).
//!
//! # `threshold_recommendation.json`
//!
//! **Multi-label** (schema `kdedge.export.thresholds/1`): on the validation split, every
//! threshold `t` of the grid (default [`default_grid`]: 0.05 to 0.95 in steps of 0.01) is
//! applied to every class and F1 macro computed (a class is predicted when `p > t`). The
//! *global* threshold is the one with the highest F1 macro (the smallest on ties). Classes are
//! independent under F1 macro, so the best *per-class* thresholds are each class's own best
//! grid value (smallest on ties); they are recommended only when their F1 macro exceeds the
//! global one's by more than 0.005 (0.5 percentage points), otherwise every class gets the
//! global threshold. `thresholds` holds the per-class vector that ships (and that
//! `metrics.json` used on the test split). An empty validation split gives the default 0.5.
//!
//! **Multi-class**: the decision is the argmax, so no threshold is needed (`"applicable":
//! false`). For applications that want to reject unsure images, `confidence` lists, for each
//! grid value `t`, the fraction of validation images whose highest softmax probability exceeds
//! `t` (`coverage`) and the top-1 accuracy among those (`accuracy`, 0 when none is covered).

use anyhow::{anyhow, bail, Context, Result};
use kdruntime::{Interpreter, Model};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use super::WrittenFile;
use crate::data::{Dataset, Mode, Split};
use crate::eval::{self, Metrics};
use crate::pipeline::{eval_input, Normalization};
use crate::quant::graph::IntGraph;

/// Schema tag of `threshold_recommendation.json`.
pub const THRESHOLDS_SCHEMA: &str = "kdedge.export.thresholds/1";
/// Schema tag of `inference_config.json`.
pub const CONFIG_SCHEMA: &str = "kdedge.export.inference_config/1";
/// Minimum F1 macro gain (absolute) for per-class thresholds to replace the global one.
pub const PER_CLASS_MIN_GAIN: f64 = 0.005;

/// The grid: 0.05, 0.06, ..., 0.95 (91 values).
pub fn default_grid() -> Vec<f32> {
    (5..=95).map(|i| i as f32 / 100.0).collect()
}

/// `labels.txt`: one class name per line, in output order.
pub fn labels_txt(classes: &[String]) -> Result<String> {
    let mut s = String::new();
    for (i, c) in classes.iter().enumerate() {
        if c.is_empty() || c.contains(['\n', '\r']) {
            bail!("labels.txt: class {i} {c:?} is empty or spans lines");
        }
        s.push_str(c);
        s.push('\n');
    }
    Ok(s)
}

/// Runs an exported int8 TFLite model with kdruntime over data set images.
pub struct Runner {
    model: Vec<u8>,
    arena_bytes: usize,
    size: usize,
    classes: usize,
    out_scale: f32,
    out_zero_point: i32,
}

impl Runner {
    /// Loads `model` (validated by kdruntime, arena planned); its input must be uint8
    /// `[1, S, S, 3]` and its output int8 `[1, C]`.
    pub fn new(model: &[u8]) -> Result<Runner> {
        let m = Model::from_bytes(model).map_err(|e| anyhow!("kdruntime: model: {e}"))?;
        let arena_bytes = m
            .arena_size()
            .map_err(|e| anyhow!("kdruntime: arena plan: {e}"))?;
        let tensor = |ix: Result<usize, kdruntime::Error>| {
            ix.and_then(|i| m.tensor(i))
                .map_err(|e| anyhow!("kdruntime: {e}"))
        };
        let input = tensor(m.input_tensor_index(0))?;
        let output = tensor(m.output_tensor_index(0))?;
        let ins = input.shape.dims();
        if input.dtype != kdruntime::DType::UInt8
            || ins.len() != 4
            || ins[1] != ins[2]
            || ins[3] != 3
        {
            bail!(
                "kdruntime: model input must be uint8 [1, S, S, 3], is {:?} {ins:?}",
                input.dtype
            );
        }
        let outs = output.shape.dims();
        if output.dtype != kdruntime::DType::Int8 || outs.len() != 2 {
            bail!(
                "kdruntime: model output must be int8 [1, C], is {:?} {outs:?}",
                output.dtype
            );
        }
        Ok(Runner {
            model: model.to_vec(),
            arena_bytes,
            size: ins[1] as usize,
            classes: outs[1] as usize,
            out_scale: output.scale(),
            out_zero_point: output.zero_point() as i32,
        })
    }

    /// kdruntime's arena size for the model (`Model::arena_size`).
    pub fn arena_bytes(&self) -> usize {
        self.arena_bytes
    }

    /// Input side `S`.
    pub fn input_size(&self) -> usize {
        self.size
    }

    /// Runs one image (`S * S * 3` uint8 RGB bytes) with the given arena; the raw int8 output.
    fn invoke(&self, arena: &mut [u8], image: &[u8]) -> Result<Vec<i8>> {
        let m = Model::from_bytes(&self.model).map_err(|e| anyhow!("kdruntime: {e}"))?;
        let mut it = Interpreter::new(&m, arena).map_err(|e| anyhow!("kdruntime: {e}"))?;
        let input = it.input_mut(0).map_err(|e| anyhow!("kdruntime: {e}"))?;
        if input.len() != image.len() {
            bail!(
                "kdruntime: image has {} bytes, the model input {}",
                image.len(),
                input.len()
            );
        }
        input.copy_from_slice(image);
        it.invoke().map_err(|e| anyhow!("kdruntime: {e}"))?;
        let out = it.output(0).map_err(|e| anyhow!("kdruntime: {e}"))?;
        Ok(out.iter().map(|&b| b as i8).collect())
    }

    /// Raw int8 outputs of `images` (each `S * S * 3` bytes), in order (run in parallel).
    pub fn run(&self, images: &[Vec<u8>]) -> Result<Vec<Vec<i8>>> {
        images
            .par_iter()
            .map_init(
                || vec![0u8; self.arena_bytes],
                |arena, img| self.invoke(arena, img),
            )
            .collect()
    }

    /// Scores of every image of `split` (row-major `images x classes`): dequantised logits
    /// (multi-class) or sigmoid probabilities (multi-label), and each image's true classes.
    pub fn scores(&self, ds: &Dataset, split: Split) -> Result<(Vec<f32>, Vec<Vec<usize>>)> {
        if self.classes != ds.classes.len() {
            bail!(
                "the model has {} outputs, the data set {} classes",
                self.classes,
                ds.classes.len()
            );
        }
        let entries = ds.split(split);
        let dir = ds.images_dir();
        let labels = entries
            .iter()
            .map(|e| {
                e.labels
                    .iter()
                    .map(|l| {
                        ds.class_index(l).with_context(|| {
                            format!("{}:{}: unknown class {l:?}", split.file_name(), e.line)
                        })
                    })
                    .collect::<Result<Vec<usize>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let rows: Vec<Vec<f32>> = entries
            .par_iter()
            .map_init(
                || vec![0u8; self.arena_bytes],
                |arena, e| -> Result<Vec<f32>> {
                    let path = dir.join(&e.image);
                    let img = eval_input(&path, self.size)?;
                    let q = self
                        .invoke(arena, &img)
                        .with_context(|| path.display().to_string())?;
                    self.to_scores(&q, ds.mode)
                },
            )
            .collect::<Result<_>>()?;
        Ok((rows.concat(), labels))
    }

    /// Dequantises one output (and applies the sigmoid for multi-label).
    fn to_scores(&self, q: &[i8], mode: Mode) -> Result<Vec<f32>> {
        use kdruntime::postprocess::{dequantize, sigmoid};
        let mut logits = vec![0f32; q.len()];
        dequantize(q, self.out_scale, self.out_zero_point, &mut logits)
            .map_err(|e| anyhow!("dequantize: {e:?}"))?;
        Ok(match mode {
            Mode::MultiClass => logits,
            Mode::MultiLabel => {
                let mut p = vec![0f32; q.len()];
                sigmoid(&logits, &mut p).map_err(|e| anyhow!("sigmoid: {e:?}"))?;
                p
            }
        })
    }
}

/// One row of the multi-class confidence table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ConfidencePoint {
    /// Threshold on the highest softmax probability.
    pub threshold: f32,
    /// Fraction of images whose highest probability exceeds it.
    pub coverage: f64,
    /// Top-1 accuracy among those images (0 when none).
    pub accuracy: f64,
}

/// What `threshold_recommendation.json` holds (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub enum ThresholdRecommendation {
    /// Multi-label: global and optional per-class thresholds.
    MultiLabel {
        /// Validation images searched.
        images: usize,
        /// The grid searched.
        grid: Vec<f32>,
        /// Best global threshold.
        global: f32,
        /// F1 macro on validation with the global threshold.
        global_f1_macro: f64,
        /// Each class's best threshold.
        per_class: Vec<f32>,
        /// F1 macro on validation with `per_class`.
        per_class_f1_macro: f64,
        /// Whether `per_class` is recommended (gain above [`PER_CLASS_MIN_GAIN`]).
        use_per_class: bool,
    },
    /// Multi-class: argmax decision; confidence table only.
    MultiClass {
        /// Validation images.
        images: usize,
        /// Coverage and accuracy per grid value.
        confidence: Vec<ConfidencePoint>,
    },
}

impl ThresholdRecommendation {
    /// The per-class thresholds that ship (multi-label), `None` for multi-class.
    pub fn thresholds(&self) -> Option<Vec<f32>> {
        match self {
            ThresholdRecommendation::MultiLabel {
                global,
                per_class,
                use_per_class,
                ..
            } => Some(if *use_per_class {
                per_class.clone()
            } else {
                vec![*global; per_class.len()]
            }),
            ThresholdRecommendation::MultiClass { .. } => None,
        }
    }

    /// The JSON document.
    pub fn to_json(&self) -> Value {
        match self {
            ThresholdRecommendation::MultiLabel {
                images,
                grid,
                global,
                global_f1_macro,
                per_class,
                per_class_f1_macro,
                use_per_class,
            } => json!({
                "schema": THRESHOLDS_SCHEMA, "mode": "multi-label", "split": "val",
                "validation_images": images, "objective": "f1_macro",
                "grid": {"min": grid.first(), "max": grid.last(), "count": grid.len()},
                "decision": "class predicted when sigmoid(dequantised logit) > threshold",
                "global": {"threshold": global, "f1_macro": global_f1_macro},
                "per_class": {"thresholds": per_class, "f1_macro": per_class_f1_macro,
                              "min_gain": PER_CLASS_MIN_GAIN, "recommended": use_per_class},
                "thresholds": self.thresholds(),
            }),
            ThresholdRecommendation::MultiClass { images, confidence } => json!({
                "schema": THRESHOLDS_SCHEMA, "mode": "multi-class", "split": "val",
                "validation_images": images, "applicable": false,
                "decision": "argmax of the logits; no threshold is needed",
                "confidence": confidence,
            }),
        }
    }
}

fn check_grid(grid: &[f32]) -> Result<()> {
    if grid.is_empty() {
        bail!("threshold grid: empty");
    }
    for (i, &t) in grid.iter().enumerate() {
        if !(t > 0.0 && t < 1.0) {
            bail!("threshold grid[{i}] = {t} must lie in (0, 1)");
        }
        if i > 0 && t <= grid[i - 1] {
            bail!("threshold grid[{i}] = {t} must be above grid[{}]", i - 1);
        }
    }
    Ok(())
}

/// Index of the first maximum.
fn first_max(v: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// Searches thresholds on the validation split (see the module docs).
pub fn recommend_thresholds(
    runner: &Runner,
    ds: &Dataset,
    grid: &[f32],
) -> Result<ThresholdRecommendation> {
    check_grid(grid)?;
    let (scores, labels) = runner.scores(ds, Split::Val)?;
    let nc = ds.classes.len();
    let images = labels.len();
    match ds.mode {
        Mode::MultiLabel => {
            if images == 0 {
                return Ok(ThresholdRecommendation::MultiLabel {
                    images,
                    grid: grid.to_vec(),
                    global: 0.5,
                    global_f1_macro: 0.0,
                    per_class: vec![0.5; nc],
                    per_class_f1_macro: 0.0,
                    use_per_class: false,
                });
            }
            let runs = grid
                .iter()
                .map(|&t| eval::multi_label(&scores, &ds.classes, &labels, &vec![t; nc]))
                .collect::<Result<Vec<_>>>()?;
            let g = first_max(runs.iter().map(|m| m.macro_.f1));
            let per_class: Vec<f32> = (0..nc)
                .map(|c| grid[first_max(runs.iter().map(|m| m.per_class[c].f1))])
                .collect();
            let pc = eval::multi_label(&scores, &ds.classes, &labels, &per_class)?;
            let global_f1_macro = runs[g].macro_.f1;
            Ok(ThresholdRecommendation::MultiLabel {
                images,
                grid: grid.to_vec(),
                global: grid[g],
                global_f1_macro,
                per_class,
                per_class_f1_macro: pc.macro_.f1,
                use_per_class: pc.macro_.f1 - global_f1_macro > PER_CLASS_MIN_GAIN,
            })
        }
        Mode::MultiClass => {
            // (highest softmax probability, top-1 correct) per image.
            let mut best = Vec::with_capacity(images);
            let mut probs = vec![0f32; nc];
            for (row, truth) in scores.chunks_exact(nc).zip(&labels) {
                kdruntime::postprocess::softmax(row, &mut probs)
                    .map_err(|e| anyhow!("softmax: {e:?}"))?;
                let top = first_max(row.iter().map(|&x| f64::from(x)));
                best.push((probs[top], truth.first() == Some(&top)));
            }
            let confidence = grid
                .iter()
                .map(|&t| {
                    let covered: Vec<bool> = best.iter().filter(|b| b.0 > t).map(|b| b.1).collect();
                    let n = covered.len() as f64;
                    let right = covered.iter().filter(|&&c| c).count() as f64;
                    ConfidencePoint {
                        threshold: t,
                        coverage: if images == 0 { 0.0 } else { n / images as f64 },
                        accuracy: if n == 0.0 { 0.0 } else { right / n },
                    }
                })
                .collect();
            Ok(ThresholdRecommendation::MultiClass { images, confidence })
        }
    }
}

/// Test-split metrics of the exported model (multi-label with the recommended thresholds).
pub fn test_metrics(
    runner: &Runner,
    ds: &Dataset,
    rec: &ThresholdRecommendation,
) -> Result<Metrics> {
    let (scores, labels) = runner.scores(ds, Split::Test)?;
    if labels.is_empty() {
        bail!("test split: no image to evaluate the exported model on");
    }
    Ok(match (ds.mode, rec.thresholds()) {
        (Mode::MultiClass, _) => {
            let single = labels
                .iter()
                .zip(ds.split(Split::Test))
                .map(|(l, e)| match l[..] {
                    [c] => Ok(c),
                    _ => bail!(
                        "test.txt:{}: multi-class needs exactly one class per image",
                        e.line
                    ),
                })
                .collect::<Result<Vec<usize>>>()?;
            Metrics::MultiClass(eval::multi_class(&scores, &ds.classes, &single)?)
        }
        (Mode::MultiLabel, Some(t)) => {
            Metrics::MultiLabel(eval::multi_label(&scores, &ds.classes, &labels, &t)?)
        }
        (Mode::MultiLabel, None) => bail!("multi-label metrics need a multi-label recommendation"),
    })
}

/// `metrics.json` of the exported model: [`Metrics::to_json`] plus where it was measured.
pub fn metrics_json(m: &Metrics) -> Value {
    let mut v = m.to_json();
    if let Some(o) = v.as_object_mut() {
        o.insert("split".into(), json!("test"));
        o.insert(
            "measured_with".into(),
            json!(format!(
                "{} (int8) run by kdruntime on the trainer's evaluation input",
                super::TFLITE_FILE
            )),
        );
    }
    v
}

/// The `inference_config.json` document (schema [`CONFIG_SCHEMA`]). `files` are the model files
/// already written (their names, sizes and SHA-256 are listed).
pub fn inference_config(
    graph: &IntGraph,
    ds: &Dataset,
    normalization: &Normalization,
    rec: &ThresholdRecommendation,
    arena_bytes: usize,
    files: &[WrittenFile],
) -> Result<Value> {
    let input = &graph.tensors[graph.input];
    let output = &graph.tensors[graph.output];
    let (h, w) = (input.shape[1], input.shape[2]);
    let file_list: Vec<Value> = files
        .iter()
        .map(|f| {
            let name = f
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            json!({"file": name, "bytes": f.bytes, "sha256": f.sha256})
        })
        .collect();
    let (task, post) = match ds.mode {
        Mode::MultiClass => ("multi-class", "softmax, then argmax (top-k)"),
        Mode::MultiLabel => ("multi-label", "sigmoid per class, then > threshold"),
    };
    Ok(json!({
        "schema": CONFIG_SCHEMA,
        "task": task,
        "labels": ds.classes,
        "input": {
            "name": input.name, "shape": input.shape, "dtype": "uint8", "layout": "NHWC",
            "channel_order": "RGB",
            "quantization": {"scale": input.q.scale, "zero_point": input.q.zero_point},
        },
        "letterbox": {
            "function": "kdruntime::letterbox::letterbox",
            "target": [h, w],
            "scale": "min(H / h, W / w), exact fraction; nothing is cropped",
            "resized_size": "round(h * scale), round(w * scale), halves up, at least 1",
            "placement": "centred: top = floor((H - new_h) / 2), left = floor((W - new_w) / 2) (odd margins put the extra row/column at the bottom/right)",
            "fill": 0,
            "resize": "bilinear, half-pixel centres (OpenCV INTER_LINEAR / PIL convention), edge replicate, Q11 fixed-point weights, one rounding (halves up), no antialiasing",
            "grey_sources": "replicated into R, G and B",
        },
        "normalization": {
            "folded_into_model": true,
            "mean": normalization.mean, "std": normalization.std,
            "note": "feed the letterboxed uint8 bytes as they are; (x - mean) / std is carried by the input quantisation and the first layer",
        },
        "output": {
            "name": output.name, "shape": output.shape, "dtype": "int8", "meaning": "logits",
            "quantization": {"scale": output.q.scale, "zero_point": output.q.zero_point},
            "postprocess": post,
        },
        "thresholds": rec.thresholds(),
        "arena_bytes": arena_bytes,
        "models": file_list,
    }))
}
