//! Per-epoch logs and training curves, rewritten from the checkpointed history after every epoch
//! (so after a resume they hold exactly the committed epochs, each once).
//!
//! - `train_log.jsonl`: one [`EpochRecord`] per line (`epoch`, `phase`, `phase_epoch`, `lr`,
//!   `train_loss`, `val_loss`, `val_metrics` object, `seconds`, `images_per_s`, `steps`).
//! - `train_log.csv`: the same with one column per validation metric (`val_<name>`), header first.
//! - `loss.svg`: train and validation loss per epoch; `metrics.svg`: validation metrics per epoch.
//! - `train_steps.jsonl` ([`StepLog`]): one line per optimisation step: `epoch`, `phase`, `step`,
//!   `global_step`, `lr`, `loss` and the objective's statistics (distillation: `total`, `ce`,
//!   `kd`, `kd_weight`, `temperature`, `coverage`, `mean_conf`, ...). After a resume it holds
//!   each committed step once.

use std::fmt::Write as _;
use std::path::Path;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;

use anyhow::{anyhow, Context, Result};

use super::checkpoint::atomic_write_text;
use super::objective::StepContext;
use super::EpochRecord;

/// `train_steps.jsonl`, appended one line per step.
pub struct StepLog {
    file: File,
    path: std::path::PathBuf,
}

impl StepLog {
    /// Opens `out_dir/train_steps.jsonl` for appending, first dropping the lines of steps at or
    /// after `global_step` (written after the checkpoint a resumed run continues from).
    pub fn open(out_dir: &Path, global_step: u64) -> Result<StepLog> {
        let path = out_dir.join("train_steps.jsonl");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("global_step").and_then(|g| g.as_u64()))
                        .is_some_and(|g| g < global_step)
                })
                .flat_map(|l| [l, "\n"])
                .collect();
            atomic_write_text(&path, &kept)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        Ok(StepLog { file, path })
    }

    /// Appends the line of one step.
    pub fn append(
        &mut self,
        ctx: &StepContext,
        lr: f64,
        loss: f64,
        stats: &BTreeMap<String, f64>,
    ) -> Result<()> {
        let mut v = serde_json::json!({
            "epoch": ctx.epoch, "phase": ctx.phase_name, "step": ctx.step,
            "global_step": ctx.global_step, "lr": lr, "loss": loss,
        });
        if let Some(o) = v.as_object_mut() {
            for (k, x) in stats {
                o.insert(k.clone(), serde_json::json!(x));
            }
        }
        writeln!(self.file, "{v}").with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// Writes `train_log.jsonl`, `train_log.csv`, `loss.svg` and `metrics.svg` into `out_dir`.
pub fn write_all(out_dir: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut jsonl = String::new();
    for r in history {
        jsonl += &serde_json::to_string(r)?;
        jsonl.push('\n');
    }
    atomic_write_text(&out_dir.join("train_log.jsonl"), &jsonl)?;
    atomic_write_text(&out_dir.join("train_log.csv"), &csv(history))?;
    if !history.is_empty() {
        plot(&out_dir.join("loss.svg"), "loss", &loss_series(history))?;
        let metrics = metric_names(history);
        let series: Vec<(String, Vec<(f64, f64)>)> = metrics
            .iter()
            .map(|m| {
                let pts = history
                    .iter()
                    .filter_map(|r| r.val_metrics.get(m).map(|&v| (r.epoch as f64, v)))
                    .collect();
                (format!("val {m}"), pts)
            })
            .collect();
        plot(&out_dir.join("metrics.svg"), "validation metrics", &series)?;
    }
    Ok(())
}

fn stat_names(history: &[EpochRecord]) -> Vec<String> {
    let mut names: Vec<String> = history
        .iter()
        .flat_map(|r| r.train_stats.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn metric_names(history: &[EpochRecord]) -> Vec<String> {
    let mut names: Vec<String> = history
        .iter()
        .flat_map(|r| r.val_metrics.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn loss_series(history: &[EpochRecord]) -> Vec<(String, Vec<(f64, f64)>)> {
    vec![
        (
            "train loss".into(),
            history
                .iter()
                .map(|r| (r.epoch as f64, r.train_loss))
                .collect(),
        ),
        (
            "val loss".into(),
            history
                .iter()
                .map(|r| (r.epoch as f64, r.val_loss))
                .collect(),
        ),
    ]
}

/// The CSV text: fixed columns, then `val_<metric>` columns in name order, then the objective's
/// `train_<statistic>` columns (if any).
pub fn csv(history: &[EpochRecord]) -> String {
    let metrics = metric_names(history);
    let stats = stat_names(history);
    let mut s = String::from("epoch,phase,phase_epoch,lr,train_loss,val_loss");
    for m in &metrics {
        let _ = write!(s, ",val_{m}");
    }
    for m in &stats {
        let _ = write!(s, ",train_{m}");
    }
    s += ",seconds,images_per_s,steps\n";
    for r in history {
        let _ = write!(
            s,
            "{},{},{},{},{},{}",
            r.epoch, r.phase, r.phase_epoch, r.lr, r.train_loss, r.val_loss
        );
        for m in &metrics {
            match r.val_metrics.get(m) {
                Some(v) => {
                    let _ = write!(s, ",{v}");
                }
                None => s.push(','),
            }
        }
        for m in &stats {
            match r.train_stats.get(m) {
                Some(v) => {
                    let _ = write!(s, ",{v}");
                }
                None => s.push(','),
            }
        }
        let _ = writeln!(s, ",{},{},{}", r.seconds, r.images_per_s, r.steps);
    }
    s
}

/// Line plot of named series of `(epoch, value)` as SVG.
fn plot(path: &Path, title: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| anyhow!("{}: plot: {e}", path.display());
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts.filter(|(_, y)| y.is_finite()) {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, p)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                p.iter().copied().filter(|(_, y)| y.is_finite()),
                color,
            ))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
