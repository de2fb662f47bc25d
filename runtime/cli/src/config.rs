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
///
/// In the file, `mean` and `std` are numbers or per-channel lists (the exporter writes lists
/// and `folded_into_model: true`, its models having uint8 inputs); int8 inputs take one value,
/// so a list must repeat it unless the normalisation is folded into the model.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "RawNormalization")]
pub struct Normalization {
    /// Subtracted from every 0..255 pixel value.
    pub mean: f32,
    /// Divides the centred value.
    pub std: f32,
    /// The model's uint8 input quantisation carries the normalisation (the exporter's models):
    /// the letterboxed pixels go in as they are, and an int8 input is an error.
    pub folded_into_model: bool,
}

impl Default for Normalization {
    /// The students' normalisation, `(x - 127) / 128`.
    fn default() -> Self {
        Self {
            mean: 127.0,
            std: 128.0,
            folded_into_model: false,
        }
    }
}

/// One value, or one per channel.
#[derive(Deserialize)]
#[serde(untagged)]
enum Channels {
    One(f32),
    Each(Vec<f32>),
}

/// `normalization` as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNormalization {
    mean: Channels,
    std: Channels,
    #[serde(default)]
    folded_into_model: bool,
    /// The exporter's explanation for readers.
    #[serde(default, rename = "note")]
    _note: Option<serde::de::IgnoredAny>,
}

impl TryFrom<RawNormalization> for Normalization {
    type Error = String;

    fn try_from(raw: RawNormalization) -> std::result::Result<Self, String> {
        let one = |c: Channels, key: &str| match c {
            Channels::One(v) => Ok(v),
            Channels::Each(v) => match v.first() {
                None => Err(format!("normalization.{key} is an empty list")),
                Some(&x) if raw.folded_into_model || v.iter().all(|&y| y == x) => Ok(x),
                Some(_) => Err(format!(
                    "normalization.{key} = {v:?}: int8 inputs take one value for every channel \
                     (per-channel values need folded_into_model: true)"
                )),
            },
        };
        Ok(Self {
            mean: one(raw.mean, "mean")?,
            std: one(raw.std, "std")?,
            folded_into_model: raw.folded_into_model,
        })
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

/// `thresholds` in the file: null (multi-class; the exporter writes that), a list with one
/// threshold per class (the exporter's multi-label form), or `{global, per_class}`.
fn thresholds<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Thresholds, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        PerClass(Vec<f32>),
        Table(Thresholds),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => Thresholds::default(),
        Some(Raw::PerClass(v)) => Thresholds {
            global: None,
            per_class: Some(v),
        },
        Some(Raw::Table(t)) => t,
    })
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
    #[serde(default, deserialize_with = "thresholds")]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> std::result::Result<InferenceConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_exporters_normalization_and_thresholds() {
        // The shapes kdtrain's exporter writes (trainer/src/export/sidecars.rs).
        let norm = r#""normalization": {"folded_into_model": true, "mean": [0.485, 0.456, 0.406],
            "note": "feed the letterboxed uint8 bytes as they are", "std": [0.229, 0.224, 0.225]}"#;
        let c = parse(&format!(
            r#"{{"task": "multi-class", {norm}, "thresholds": null}}"#
        ))
        .unwrap();
        assert!(c.normalization.folded_into_model);
        assert_eq!(c.thresholds_for(3).unwrap(), [0.5, 0.5, 0.5]);
        let c = parse(&format!(
            r#"{{"task": "multi-label", {norm}, "thresholds": [0.25, 0.5, 0.75]}}"#
        ))
        .unwrap();
        assert_eq!(c.task, Task::MultiLabel);
        assert_eq!(c.thresholds_for(3).unwrap(), [0.25, 0.5, 0.75]);
        assert!(c.thresholds_for(2).is_err());
    }

    #[test]
    fn reads_kdruns_own_form() {
        let c = parse(
            r#"{"normalization": {"mean": 127.5, "std": [64, 64, 64]},
                "thresholds": {"global": 0.3}}"#,
        )
        .unwrap();
        assert_eq!((c.normalization.mean, c.normalization.std), (127.5, 64.0));
        assert!(!c.normalization.folded_into_model);
        assert_eq!(c.thresholds_for(2).unwrap(), [0.3, 0.3]);
        let d = parse("{}").unwrap().normalization;
        assert_eq!((d.mean, d.std, d.folded_into_model), (127.0, 128.0, false));
    }

    #[test]
    fn refuses_what_an_int8_input_cannot_use() {
        let e = parse(r#"{"normalization": {"mean": [1, 2, 3], "std": 1}}"#).unwrap_err();
        assert!(e.contains("normalization.mean = [1.0, 2.0, 3.0]"), "{e}");
        let e = parse(r#"{"normalization": {"mean": 1, "std": []}}"#).unwrap_err();
        assert!(e.contains("normalization.std is an empty list"), "{e}");
        let e = parse(r#"{"normalization": {"mean": 1, "std": 1, "scale": 2}}"#).unwrap_err();
        assert!(e.contains("unknown field `scale`"), "{e}");
    }
}
