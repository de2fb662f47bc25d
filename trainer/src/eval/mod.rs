//! Evaluation metrics for multi-class and multi-label classifiers, `metrics.json`, and the
//! confusion-matrix plot.
//!
//! Every metric is computed from plain row-major scores (`&[f32]`, `images x classes`) so the
//! exporter can evaluate kdruntime's outputs with the same code; [`scores_from_tensor`] turns a
//! tch logits/probabilities tensor into that form.
//!
//! # Definitions
//!
//! **Multi-class** (`scores` are logits or probabilities; only their order matters):
//! - *top-k accuracy*: the fraction of images whose true class is among the `k` highest scores,
//!   `k = min(5, classes)` for top-5 (so top-5 is 1 when there are at most 5 classes). Ties are
//!   broken by class index: the rank of the true class `c` is the number of classes scoring
//!   strictly more than `c`, plus those scoring the same with a lower index.
//! - *confusion matrix*: `confusion[true][predicted]` counts, the prediction being the top-1 class.
//! - *per class*: precision `= C[c][c] / sum_i C[i][c]`, recall `= C[c][c] / sum_j C[c][j]`,
//!   F1 `= 2PR / (P + R)`.
//!
//! **Multi-label** (`scores` are probabilities, i.e. after the sigmoid): class `c` is predicted for
//! an image iff `p > threshold[c]` (strictly above). Per class, `tp`, `fp` and `fn` count images.
//! - *micro* precision/recall/F1 pool the counts of all classes; *macro* averages the per-class
//!   values (every class weighs the same, including classes without support).
//! - *no-label rate*: among images whose ground truth has no class, the fraction with no class
//!   predicted (no probability above its threshold); `null` when there is no such image.
//!
//! Everywhere, `0 / 0` is defined as 0 (scikit-learn's `zero_division=0`).
//!
//! # `metrics.json`
//!
//! Written by [`Metrics::to_json`] (schema `kdedge.eval.metrics/1`):
//!
//! ```json
//! { "schema": "kdedge.eval.metrics/1", "mode": "multi-class", "images": 500,
//!   "classes": ["Ankle boot", ...],
//!   "top1": 0.83, "top5": 0.99, "top5_k": 5,
//!   "per_class": [{"class": "Ankle boot", "support": 50, "precision": 0.9, "recall": 0.8, "f1": 0.85}, ...],
//!   "confusion": [[45, 0, ...], ...] }
//! { "schema": "kdedge.eval.metrics/1", "mode": "multi-label", "images": 500,
//!   "classes": [...], "thresholds": [0.5, ...],
//!   "micro": {"precision": 0.8, "recall": 0.7, "f1": 0.75},
//!   "macro": {"precision": 0.8, "recall": 0.7, "f1": 0.74},
//!   "per_class": [{"class": "Bag", "support": 40, "tp": 30, "fp": 5, "fn": 10,
//!                  "precision": 0.857, "recall": 0.75, "f1": 0.8, "threshold": 0.5}, ...],
//!   "no_label": {"images": 20, "correct": 15, "rate": 0.75} }
//! ```

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Schema tag of `metrics.json`.
pub const SCHEMA: &str = "kdedge.eval.metrics/1";

/// `num / den`, with `0 / 0 = 0`.
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Harmonic mean of precision and recall, 0 when both are 0.
fn f1(p: f64, r: f64) -> f64 {
    ratio(2.0 * p * r, p + r)
}

/// Per-class result of a multi-class evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassScore {
    /// Class name.
    pub class: String,
    /// Images whose true class this is.
    pub support: u64,
    /// Precision of predicting this class.
    pub precision: f64,
    /// Recall of this class.
    pub recall: f64,
    /// F1 of precision and recall.
    pub f1: f64,
}

/// Multi-class metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MultiClassMetrics {
    /// Images evaluated.
    pub images: usize,
    /// Class names (output order).
    pub classes: Vec<String>,
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-k accuracy with `k = top5_k`.
    pub top5: f64,
    /// `min(5, classes)`.
    pub top5_k: usize,
    /// Per-class precision, recall, F1.
    pub per_class: Vec<ClassScore>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

/// Precision, recall and F1 of one averaging.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Prf {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// Per-class result of a multi-label evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabelScore {
    /// Class name.
    pub class: String,
    /// Images carrying this class.
    pub support: u64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// `tp / (tp + fp)`.
    pub precision: f64,
    /// `tp / (tp + fn)`.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Decision threshold used.
    pub threshold: f32,
}

/// The no-label rate and its counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct NoLabel {
    /// Images without any true class.
    pub images: u64,
    /// Of those, images with no class predicted.
    pub correct: u64,
    /// `correct / images`; `None` (JSON `null`) without such images.
    pub rate: Option<f64>,
}

/// Multi-label metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MultiLabelMetrics {
    /// Images evaluated.
    pub images: usize,
    /// Class names (output order).
    pub classes: Vec<String>,
    /// Per-class thresholds used.
    pub thresholds: Vec<f32>,
    /// Pooled counts.
    pub micro: Prf,
    /// Mean of the per-class values.
    pub macro_: Prf,
    /// Per-class counts and values.
    pub per_class: Vec<LabelScore>,
    /// The no-label rate.
    pub no_label: NoLabel,
}

/// Either kind of result.
#[derive(Clone, Debug, PartialEq)]
pub enum Metrics {
    /// Multi-class.
    MultiClass(MultiClassMetrics),
    /// Multi-label.
    MultiLabel(MultiLabelMetrics),
}

/// Checks `scores` is `images x classes` and every label is a valid class.
fn check_shape(scores: &[f32], classes: usize, images: usize, what: &str) -> Result<()> {
    if classes == 0 {
        bail!("{what}: no classes");
    }
    if scores.len() != images * classes {
        bail!(
            "{what}: {} scores for {images} images x {classes} classes",
            scores.len()
        );
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        bail!(
            "{what}: score of image {} class {} is NaN",
            i / classes,
            i % classes
        );
    }
    Ok(())
}

/// Rank (0 = best) of class `c` in `row`, ties broken by class index.
fn rank(row: &[f32], c: usize) -> usize {
    let sc = row[c];
    row.iter()
        .enumerate()
        .filter(|&(j, &s)| s > sc || (s == sc && j < c))
        .count()
}

/// Multi-class metrics from row-major `scores` (`labels.len() x classes.len()`) and the true
/// class index of each image.
pub fn multi_class(
    scores: &[f32],
    classes: &[String],
    labels: &[usize],
) -> Result<MultiClassMetrics> {
    let nc = classes.len();
    check_shape(scores, nc, labels.len(), "multi-class evaluation")?;
    let k = nc.min(5);
    let mut confusion = vec![vec![0u64; nc]; nc];
    let (mut top1, mut topk) = (0usize, 0usize);
    for (i, (row, &y)) in scores.chunks_exact(nc).zip(labels).enumerate() {
        if y >= nc {
            bail!("multi-class evaluation: image {i} has class index {y}, only {nc} classes");
        }
        let r = rank(row, y);
        top1 += usize::from(r == 0);
        topk += usize::from(r < k);
        // The top-1 prediction: highest score, lowest index among ties.
        let pred = (0..nc).find(|&j| rank(row, j) == 0).unwrap_or(0);
        confusion[y][pred] += 1;
    }
    let per_class = (0..nc)
        .map(|c| {
            let support: u64 = confusion[c].iter().sum();
            let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
            let hit = confusion[c][c] as f64;
            let (p, r) = (ratio(hit, predicted as f64), ratio(hit, support as f64));
            ClassScore {
                class: classes[c].clone(),
                support,
                precision: p,
                recall: r,
                f1: f1(p, r),
            }
        })
        .collect();
    let n = labels.len() as f64;
    Ok(MultiClassMetrics {
        images: labels.len(),
        classes: classes.to_vec(),
        top1: ratio(top1 as f64, n),
        top5: ratio(topk as f64, n),
        top5_k: k,
        per_class,
        confusion,
    })
}

/// Multi-label metrics from row-major probabilities (`labels.len() x classes.len()`), the true
/// class indices of each image (possibly none) and one threshold per class.
pub fn multi_label(
    probs: &[f32],
    classes: &[String],
    labels: &[Vec<usize>],
    thresholds: &[f32],
) -> Result<MultiLabelMetrics> {
    let nc = classes.len();
    check_shape(probs, nc, labels.len(), "multi-label evaluation")?;
    if thresholds.len() != nc {
        bail!(
            "multi-label evaluation: {} thresholds for {nc} classes",
            thresholds.len()
        );
    }
    let (mut tp, mut fp, mut fn_) = (vec![0u64; nc], vec![0u64; nc], vec![0u64; nc]);
    let mut no_label = NoLabel {
        images: 0,
        correct: 0,
        rate: None,
    };
    let mut truth = vec![false; nc];
    for (i, (row, ls)) in probs.chunks_exact(nc).zip(labels).enumerate() {
        truth.iter_mut().for_each(|t| *t = false);
        for &c in ls {
            match truth.get_mut(c) {
                Some(t) => *t = true,
                None => bail!(
                    "multi-label evaluation: image {i} has class index {c}, only {nc} classes"
                ),
            }
        }
        let mut any_predicted = false;
        for c in 0..nc {
            let pred = row[c] > thresholds[c];
            any_predicted |= pred;
            match (pred, truth[c]) {
                (true, true) => tp[c] += 1,
                (true, false) => fp[c] += 1,
                (false, true) => fn_[c] += 1,
                (false, false) => {}
            }
        }
        if ls.is_empty() {
            no_label.images += 1;
            no_label.correct += u64::from(!any_predicted);
        }
    }
    if no_label.images > 0 {
        no_label.rate = Some(no_label.correct as f64 / no_label.images as f64);
    }
    let per_class: Vec<LabelScore> = (0..nc)
        .map(|c| {
            let p = ratio(tp[c] as f64, (tp[c] + fp[c]) as f64);
            let r = ratio(tp[c] as f64, (tp[c] + fn_[c]) as f64);
            LabelScore {
                class: classes[c].clone(),
                support: tp[c] + fn_[c],
                tp: tp[c],
                fp: fp[c],
                fn_: fn_[c],
                precision: p,
                recall: r,
                f1: f1(p, r),
                threshold: thresholds[c],
            }
        })
        .collect();
    let (stp, sfp, sfn) = (
        tp.iter().sum::<u64>() as f64,
        fp.iter().sum::<u64>() as f64,
        fn_.iter().sum::<u64>() as f64,
    );
    let (mp, mr) = (ratio(stp, stp + sfp), ratio(stp, stp + sfn));
    let mean = |f: fn(&LabelScore) -> f64| per_class.iter().map(f).sum::<f64>() / nc as f64;
    Ok(MultiLabelMetrics {
        images: labels.len(),
        classes: classes.to_vec(),
        thresholds: thresholds.to_vec(),
        micro: Prf {
            precision: mp,
            recall: mr,
            f1: f1(mp, mr),
        },
        macro_: Prf {
            precision: mean(|s| s.precision),
            recall: mean(|s| s.recall),
            f1: mean(|s| s.f1),
        },
        per_class,
        no_label,
    })
}

/// Copies a 2-D `[images, classes]` tensor (any device, any float kind) into row-major `f32`s;
/// returns the values and the number of classes.
pub fn scores_from_tensor(t: &Tensor) -> Result<(Vec<f32>, usize)> {
    let size = t.size();
    let [n, c] = size[..] else {
        bail!("scores tensor: expected [images, classes], got shape {size:?}");
    };
    let flat = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    let v = Vec::<f32>::try_from(&flat).context("scores tensor: cannot copy to the host")?;
    debug_assert_eq!(v.len() as i64, n * c);
    Ok((v, c as usize))
}

/// Multi-class metrics from a logits (or probabilities) tensor.
pub fn multi_class_from_tensor(
    logits: &Tensor,
    classes: &[String],
    labels: &[usize],
) -> Result<MultiClassMetrics> {
    let (v, _) = scores_from_tensor(logits)?;
    multi_class(&v, classes, labels)
}

/// Multi-label metrics from a logits tensor (the sigmoid is applied here).
pub fn multi_label_from_logits(
    logits: &Tensor,
    classes: &[String],
    labels: &[Vec<usize>],
    thresholds: &[f32],
) -> Result<MultiLabelMetrics> {
    let (v, _) = scores_from_tensor(&logits.sigmoid())?;
    multi_label(&v, classes, labels, thresholds)
}

impl Metrics {
    /// The `metrics.json` document (see the module docs).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Metrics::MultiClass(m) => json!({
                "schema": SCHEMA, "mode": "multi-class", "images": m.images,
                "classes": m.classes, "top1": m.top1, "top5": m.top5, "top5_k": m.top5_k,
                "per_class": m.per_class, "confusion": m.confusion,
            }),
            Metrics::MultiLabel(m) => json!({
                "schema": SCHEMA, "mode": "multi-label", "images": m.images,
                "classes": m.classes, "thresholds": m.thresholds, "micro": m.micro,
                "macro": m.macro_, "per_class": m.per_class, "no_label": m.no_label,
            }),
        }
    }

    /// Writes `metrics.json` (pretty-printed) to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json())? + "\n";
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
    }

    /// The headline numbers as `(name, value)`, as logged per epoch: `top1`, `top5` (multi-class);
    /// `f1_micro`, `f1_macro`, `precision_micro`, `recall_micro`, `no_label_rate` when defined
    /// (multi-label).
    pub fn summary(&self) -> Vec<(String, f64)> {
        match self {
            Metrics::MultiClass(m) => vec![("top1".into(), m.top1), ("top5".into(), m.top5)],
            Metrics::MultiLabel(m) => {
                let mut v = vec![
                    ("f1_micro".into(), m.micro.f1),
                    ("f1_macro".into(), m.macro_.f1),
                    ("precision_micro".into(), m.micro.precision),
                    ("recall_micro".into(), m.micro.recall),
                ];
                if let Some(r) = m.no_label.rate {
                    v.push(("no_label_rate".into(), r));
                }
                v
            }
        }
    }
}

/// Draws a confusion matrix as an SVG heat map with counts (rows: true class, columns:
/// predicted class).
pub fn plot_confusion(m: &MultiClassMetrics, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let nc = m.classes.len();
    let cell = 48u32;
    let margin = 140u32;
    let side = margin + cell * nc as u32 + 20;
    let root = SVGBackend::new(path, (side, side)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: plot: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max = m
        .confusion
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let font = ("sans-serif", 12).into_font();
    let title = format!(
        "confusion (rows: true, cols: predicted), top-1 {:.3}",
        m.top1
    );
    root.draw(&Text::new(title, (10, 10), font.clone()))
        .map_err(|e| err(&e))?;
    for (i, row) in m.confusion.iter().enumerate() {
        for (j, &count) in row.iter().enumerate() {
            let (x, y) = (
                (margin + cell * j as u32) as i32,
                (margin + cell * i as u32) as i32,
            );
            let shade = (255.0 * (1.0 - count as f64 / max)) as u8;
            let color = RGBColor(shade, shade, 255);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                color.filled(),
            ))
            .map_err(|e| err(&e))?;
            let ink = if shade < 128 { WHITE } else { BLACK };
            root.draw(&Text::new(
                count.to_string(),
                (x + 6, y + cell as i32 / 2 - 6),
                font.clone().color(&ink),
            ))
            .map_err(|e| err(&e))?;
        }
    }
    for (k, name) in m.classes.iter().enumerate() {
        let at = (margin + cell * k as u32) as i32;
        let short: String = name.chars().take(18).collect();
        root.draw(&Text::new(
            short.clone(),
            (4, at + cell as i32 / 2 - 6),
            font.clone(),
        ))
        .map_err(|e| err(&e))?;
        let vertical = font.clone().transform(FontTransform::Rotate270);
        root.draw(&Text::new(
            short,
            (at + cell as i32 / 2 - 6, margin as i32 - 4),
            vertical,
        ))
        .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn multi_class_by_hand() {
        // 3 classes, 4 images.
        // img0 true 0, scores (0.7, 0.2, 0.1): pred 0.
        // img1 true 1, scores (0.5, 0.4, 0.1): pred 0, true class rank 1.
        // img2 true 2, scores (0.3, 0.3, 0.4): pred 2.
        // img3 true 1, scores (0.4, 0.4, 0.2): tie 0/1 -> pred 0 (lower index); rank of 1 is 1.
        let s = [
            0.7, 0.2, 0.1, 0.5, 0.4, 0.1, 0.3, 0.3, 0.4, 0.4, 0.4, 0.2f32,
        ];
        let m = multi_class(&s, &names(3), &[0, 1, 2, 1]).unwrap();
        assert_eq!(m.top1, 0.5);
        assert_eq!(m.top5, 1.0); // k = 3 with 3 classes
        assert_eq!(m.top5_k, 3);
        assert_eq!(
            m.confusion,
            vec![vec![1, 0, 0], vec![2, 0, 0], vec![0, 0, 1]]
        );
        // Class 0: predicted 3 times, 1 right: P = 1/3, R = 1/1, F1 = 2*(1/3)/(4/3) = 0.5.
        let c0 = &m.per_class[0];
        assert!((c0.precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((c0.recall, c0.support), (1.0, 1));
        assert!((c0.f1 - 0.5).abs() < 1e-12);
        // Class 1: never predicted, support 2: P = 0 (0/0), R = 0.
        assert_eq!(
            (m.per_class[1].precision, m.per_class[1].recall),
            (0.0, 0.0)
        );
    }

    #[test]
    fn top5_counts_ranks_below_five() {
        // 7 classes; the true class 6 has the 5th highest score in img0 and the 6th in img1.
        let img0 = [0.9, 0.8, 0.7, 0.6, 0.1, 0.0, 0.5f32];
        let img1 = [0.9, 0.8, 0.7, 0.6, 0.55, 0.0, 0.5f32];
        let s: Vec<f32> = img0.iter().chain(&img1).copied().collect();
        let m = multi_class(&s, &names(7), &[6, 6]).unwrap();
        assert_eq!((m.top1, m.top5, m.top5_k), (0.0, 0.5, 5));
    }

    #[test]
    fn multi_label_by_hand() {
        // 3 classes, thresholds 0.5 (strictly above counts), 4 images:
        // img0 truth {0,1}, probs (0.9, 0.4, 0.6): tp0, fn1, fp2.
        // img1 truth {1},   probs (0.1, 0.8, 0.5): tp1 (0.5 is not above 0.5 -> not class 2).
        // img2 truth {},    probs (0.2, 0.3, 0.5): nothing predicted -> no-label correct.
        // img3 truth {},    probs (0.7, 0.1, 0.1): fp0 -> no-label wrong.
        let p = [
            0.9, 0.4, 0.6, 0.1, 0.8, 0.5, 0.2, 0.3, 0.5, 0.7, 0.1, 0.1f32,
        ];
        let labels = vec![vec![0, 1], vec![1], vec![], vec![]];
        let m = multi_label(&p, &names(3), &labels, &[0.5; 3]).unwrap();
        // Class 0: tp 1, fp 1, fn 0: P 0.5, R 1, F1 2/3.
        // Class 1: tp 1, fp 0, fn 1: P 1, R 0.5, F1 2/3.
        // Class 2: tp 0, fp 1, fn 0: P 0, R 0 (0/0), F1 0.
        let c: Vec<_> = m.per_class.iter().map(|s| (s.tp, s.fp, s.fn_)).collect();
        assert_eq!(c, [(1, 1, 0), (1, 0, 1), (0, 1, 0)]);
        assert_eq!(m.per_class[1].support, 2);
        // Micro: tp 2, fp 2, fn 1: P 0.5, R 2/3, F1 = 2 * (1/3) / (7/6) = 4/7.
        assert!((m.micro.precision - 0.5).abs() < 1e-12);
        assert!((m.micro.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.micro.f1 - 4.0 / 7.0).abs() < 1e-12);
        // Macro: P (0.5 + 1 + 0) / 3 = 0.5, R (1 + 0.5 + 0) / 3 = 0.5, F1 (2/3 + 2/3 + 0) / 3 = 4/9.
        assert!((m.macro_.precision - 0.5).abs() < 1e-12);
        assert!((m.macro_.recall - 0.5).abs() < 1e-12);
        assert!((m.macro_.f1 - 4.0 / 9.0).abs() < 1e-12);
        assert_eq!(
            m.no_label,
            NoLabel {
                images: 2,
                correct: 1,
                rate: Some(0.5)
            }
        );
        // Per-class thresholds: lowering class 2's to 0.45 turns img1's 0.5 into a false positive
        // and img2's into a prediction (no-label now wrong).
        let m = multi_label(&p, &names(3), &labels, &[0.5, 0.5, 0.45]).unwrap();
        assert_eq!(m.per_class[2].fp, 3);
        assert_eq!(m.no_label.correct, 0);
    }

    #[test]
    fn tensors_and_json_follow_the_schema() {
        let logits = Tensor::from_slice(&[2.0f32, -1.0, 0.0, 3.0]).view([2, 2]);
        let m = multi_label_from_logits(&logits, &names(2), &[vec![0], vec![]], &[0.5; 2]).unwrap();
        // sigmoid: (0.88, 0.27) -> {0}; (0.5, 0.95) -> {1}: class 1 fp, no-label wrong.
        assert_eq!((m.per_class[0].tp, m.per_class[1].fp), (1, 1));
        let j = Metrics::MultiLabel(m).to_json();
        assert_eq!(j["schema"], SCHEMA);
        assert_eq!(j["no_label"]["rate"], 0.0);
        assert_eq!(j["per_class"][1]["fn"], 0);
        let mc = multi_class_from_tensor(&logits, &names(2), &[0, 0]).unwrap();
        assert_eq!(mc.top1, 0.5);
        let j = Metrics::MultiClass(mc.clone()).to_json();
        assert_eq!(j["confusion"], serde_json::json!([[1, 1], [0, 0]]));
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("confusion.svg");
        plot_confusion(&mc, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("c1"), "{text}");
    }

    #[test]
    fn bad_inputs_are_named() {
        let e = multi_class(&[0.1, 0.2, 0.3], &names(2), &[0]).unwrap_err();
        assert!(
            e.to_string().contains("3 scores for 1 images x 2 classes"),
            "{e}"
        );
        let e = multi_class(&[0.1, 0.2], &names(2), &[5]).unwrap_err();
        assert!(e.to_string().contains("image 0 has class index 5"), "{e}");
        let e = multi_label(&[0.1, f32::NAN], &names(2), &[vec![]], &[0.5; 2]).unwrap_err();
        assert!(e.to_string().contains("image 0 class 1 is NaN"), "{e}");
        let e = multi_label(&[0.1, 0.2], &names(2), &[vec![]], &[0.5]).unwrap_err();
        assert!(e.to_string().contains("1 thresholds for 2 classes"), "{e}");
    }
}
