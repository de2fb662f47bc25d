//! The parts of `inference_config.json` (written by `kdtrain export`) that kdrun needs, and
//! labels.txt. Unknown keys are ignored here: the exporter owns the full schema.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Classification task of a model.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Exactly one class per image: softmax and top-k.
    #[default]
    #[serde(alias = "multiclass", alias = "multi_class")]
    MultiClass,
    /// Any number of classes per image: sigmoid and per-class thresholds.
    #[serde(alias = "multilabel", alias = "multi_label")]
    MultiLabel,
}

/// Input normalisation for models whose input tensor is int8 rather than uint8 (a uint8 input
/// carries its normalisation in its own scale and zero point): `real = (pixel - mean) / std`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Subtracted from every 0..255 pixel value.
    pub mean: f32,
    /// Divides the centred value.
    pub std: f32,
}

impl Default for Normalization {
    /// The students' normalisation, `(x - 127) / 128`.
    fn default() -> Self {
        Self {
            mean: 127.0,
            std: 128.0,
        }
    }
}

/// Decision thresholds for multi-label models.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Thresholds {
    /// One threshold for every class.
    pub global: Option<f32>,
    /// A threshold per class, in output order (overrides `global`).
    pub per_class: Option<Vec<f32>>,
}

/// What kdrun reads from inference_config.json.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct InferenceConfig {
    /// multi-class or multi-label.
    #[serde(default)]
    pub task: Task,
    /// Class names in output order.
    pub labels: Option<Vec<String>>,
    /// Multi-label thresholds.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Normalisation for int8-input models.
    #[serde(default)]
    pub normalization: Normalization,
}

impl InferenceConfig {
    /// Reads and checks a config file; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: Self =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if !(cfg.normalization.std.is_finite() && cfg.normalization.std != 0.0) {
            bail!(
                "{}: normalization.std must be finite and non-zero",
                path.display()
            );
        }
        for (i, t) in cfg.thresholds.per_class.iter().flatten().enumerate() {
            if !(0.0..=1.0).contains(t) {
                bail!(
                    "{}: thresholds.per_class[{i}] = {t} is not in [0, 1]",
                    path.display()
                );
            }
        }
        Ok(cfg)
    }

    /// The threshold of every one of `classes` classes (0.5 when none is configured).
    pub fn thresholds_for(&self, classes: usize) -> Result<Vec<f32>> {
        match (&self.thresholds.per_class, self.thresholds.global) {
            (Some(v), _) if v.len() != classes => bail!(
                "thresholds.per_class has {} entries but the model has {classes} classes",
                v.len()
            ),
            (Some(v), _) => Ok(v.clone()),
            (None, g) => Ok(vec![g.unwrap_or(0.5); classes]),
        }
    }
}

/// Reads labels.txt (one name per line, output order) with kdruntime's parser.
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let labels = kdruntime::postprocess::Labels::parse(&bytes)
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(labels.iter().map(str::to_owned).collect())
}
