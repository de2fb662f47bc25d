//! The comparison the seeds ask for: teacher(s) vs the distilled student vs the same student
//! trained from scratch (same data, epochs and schedule), on the test split.
//!
//! For each network: top-1 and top-5 (multi-class) or micro/macro F1 (multi-label), the accuracy
//! gap to the teacher ensemble (`ensemble top-1 - student top-1`), and the mean over test images
//! of `KL(student || ensemble)` at temperature 1:
//! `sum_c p_s(c) * (log p_s(c) - log p_e(c))` with softmax probabilities (multi-label: the sum
//! over classes of the Bernoulli KL of the sigmoid probabilities). The seed's success criteria
//! for the distilled student: gap < [`MAX_GAP`] and KL < [`MAX_KL`].
//!
//! Files: `comparison.json` ([`Comparison`]), `comparison.md` (the printed table) and
//! `comparison_curves.svg` (training and validation loss and validation top-1 / F1 per epoch of
//! both students).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::data::Mode;
use crate::eval::{self, Metrics};
use crate::train::checkpoint::atomic_write_text;
use crate::train::EpochRecord;

/// Largest accepted accuracy gap between the ensemble and the distilled student.
pub const MAX_GAP: f64 = 0.05;
/// Largest accepted mean KL(student || ensemble).
pub const MAX_KL: f64 = 0.2;

/// One network's figures on the test split.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `teacher <name>`, `ensemble`, `distilled` or `scratch`.
    pub name: String,
    /// Headline metrics ([`Metrics::summary`]: `top1`, `top5` or `f1_micro`, `f1_macro`, ...).
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Ensemble accuracy (top-1 / micro F1) minus this network's; `None` for teachers.
    pub gap: Option<f64>,
    /// Mean KL(this || ensemble) per test image; `None` for teachers.
    pub kl: Option<f64>,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Multi-class or multi-label.
    pub mode: String,
    /// Test images.
    pub images: usize,
    /// Teachers, the ensemble, then the students.
    pub rows: Vec<Row>,
    /// Whether the distilled student beats the scratch student on the headline metric.
    pub distilled_beats_scratch: bool,
    /// Distilled gap < [`MAX_GAP`].
    pub gap_ok: bool,
    /// Distilled KL < [`MAX_KL`].
    pub kl_ok: bool,
}

/// The headline accuracy of a metrics set: top-1, or micro F1 for multi-label.
pub fn headline(m: &Metrics) -> f64 {
    match m {
        Metrics::MultiClass(mc) => mc.top1,
        Metrics::MultiLabel(ml) => ml.micro.f1,
    }
}

/// Metrics of `[N, C]` logits against the labels (multi-label: sigmoid, threshold 0.5).
pub fn metrics_of(
    logits: &Tensor,
    mode: Mode,
    classes: &[String],
    labels: &[Vec<usize>],
) -> Result<Metrics> {
    match mode {
        Mode::MultiClass => {
            let (scores, _) = eval::scores_from_tensor(logits)?;
            let single = labels
                .iter()
                .enumerate()
                .map(|(i, l)| match l[..] {
                    [c] => Ok(c),
                    _ => Err(anyhow!(
                        "test image {i}: multi-class needs exactly one class"
                    )),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Metrics::MultiClass(eval::multi_class(
                &scores, classes, &single,
            )?))
        }
        Mode::MultiLabel => {
            let (scores, _) = eval::scores_from_tensor(&logits.sigmoid())?;
            Ok(Metrics::MultiLabel(eval::multi_label(
                &scores,
                classes,
                labels,
                &vec![0.5; classes.len()],
            )?))
        }
    }
}

/// Mean over rows of KL(student || ensemble) at temperature 1 (see the module docs); both
/// `[N, C]` logits (the ensemble's may be log-probabilities: softmax is shift-invariant).
pub fn mean_kl(student: &Tensor, ensemble: &Tensor, mode: Mode) -> Result<f64> {
    if student.size() != ensemble.size() {
        bail!(
            "KL: student logits {:?} and ensemble logits {:?} differ in shape",
            student.size(),
            ensemble.size()
        );
    }
    let s = student.to_kind(Kind::Double);
    let e = ensemble.to_kind(Kind::Double);
    let kl = match mode {
        Mode::MultiClass => {
            let ls = s.log_softmax(-1, Kind::Double);
            let le = e.log_softmax(-1, Kind::Double);
            (ls.exp() * (&ls - le)).sum_dim_intlist([-1i64].as_slice(), false, Kind::Double)
        }
        Mode::MultiLabel => {
            // log sigmoid(x) = -softplus(-x); log(1 - sigmoid(x)) = -softplus(x).
            let (lps, lns) = ((-&s).softplus().neg(), s.softplus().neg());
            let (lpe, lne) = ((-&e).softplus().neg(), e.softplus().neg());
            (lps.exp() * (&lps - lpe) + lns.exp() * (&lns - lne)).sum_dim_intlist(
                [-1i64].as_slice(),
                false,
                Kind::Double,
            )
        }
    };
    Ok(kl.mean(Kind::Double).double_value(&[]))
}

/// Builds the comparison from test-split logits (`[N, C]` each, rows in list order).
pub fn compare(
    mode: Mode,
    classes: &[String],
    labels: &[Vec<usize>],
    teachers: &[(String, Tensor)],
    ensemble: &Tensor,
    distilled: &Tensor,
    scratch: &Tensor,
) -> Result<Comparison> {
    let mut rows = Vec::new();
    for (name, t) in teachers {
        let m = metrics_of(t, mode, classes, labels)?;
        rows.push(Row {
            name: format!("teacher {name}"),
            metrics: m.summary().into_iter().collect(),
            gap: None,
            kl: None,
        });
    }
    let em = metrics_of(ensemble, mode, classes, labels)?;
    let e_acc = headline(&em);
    rows.push(Row {
        name: "ensemble".into(),
        metrics: em.summary().into_iter().collect(),
        gap: None,
        kl: None,
    });
    let mut acc = [0.0; 2];
    let mut kls = [0.0; 2];
    for (i, (name, s)) in [("distilled", distilled), ("scratch", scratch)]
        .into_iter()
        .enumerate()
    {
        let m = metrics_of(s, mode, classes, labels)?;
        acc[i] = headline(&m);
        kls[i] = mean_kl(s, ensemble, mode)?;
        rows.push(Row {
            name: name.into(),
            metrics: m.summary().into_iter().collect(),
            gap: Some(e_acc - acc[i]),
            kl: Some(kls[i]),
        });
    }
    Ok(Comparison {
        mode: mode.name().into(),
        images: labels.len(),
        rows,
        distilled_beats_scratch: acc[0] > acc[1],
        gap_ok: e_acc - acc[0] < MAX_GAP,
        kl_ok: kls[0] < MAX_KL,
    })
}

impl Comparison {
    /// The table and the verdicts as Markdown.
    pub fn markdown(&self) -> String {
        let keys: Vec<String> = self
            .rows
            .first()
            .map(|r| r.metrics.keys().cloned().collect())
            .unwrap_or_default();
        let mut s = String::from("| network |");
        for k in &keys {
            let _ = write!(s, " {k} |");
        }
        s += " gap to ensemble | KL(student || ensemble) |\n|---|";
        s += &"---|".repeat(keys.len() + 2);
        s.push('\n');
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        for r in &self.rows {
            let _ = write!(s, "| {} |", r.name);
            for k in &keys {
                let _ = write!(s, " {:.4} |", r.metrics.get(k).copied().unwrap_or(f64::NAN));
            }
            let _ = writeln!(s, " {} | {} |", opt(r.gap), opt(r.kl));
        }
        let yes = |b: bool| if b { "yes" } else { "NO" };
        let _ = writeln!(
            s,
            "\nDistilled beats scratch: {}. Seed criteria for the distilled student: gap < {MAX_GAP}: \
             {}; KL < {MAX_KL}: {}. ({} test images, {}.)",
            yes(self.distilled_beats_scratch),
            yes(self.gap_ok),
            yes(self.kl_ok),
            self.images,
            self.mode
        );
        s
    }

    /// Writes `comparison.json` and `comparison.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        atomic_write_text(
            &dir.join("comparison.json"),
            &(serde_json::to_string_pretty(self)? + "\n"),
        )?;
        atomic_write_text(&dir.join("comparison.md"), &self.markdown())
    }
}

/// `comparison_curves.svg`: training loss, validation loss and validation headline metric
/// (`top1`, or `f1_micro`) per epoch of the distilled and the scratch student.
pub fn plot_curves(distilled: &[EpochRecord], scratch: &[EpochRecord], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| anyhow!("{}: plot: {e}", path.display());
    let metric = |r: &EpochRecord| {
        r.val_metrics
            .get("top1")
            .or_else(|| r.val_metrics.get("f1_micro"))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let root = SVGBackend::new(path, (960, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(480);
    let epochs = distilled.len().max(scratch.len()).max(1) as f64;
    let loss = |r: &EpochRecord| [r.train_loss, r.val_loss];
    let accuracy = |r: &EpochRecord| [metric(r), f64::NAN];
    type Series<'a> = &'a dyn Fn(&EpochRecord) -> [f64; 2];
    let panels: [(_, &str, Series); 2] = [
        (&left, "loss (thick: train, thin: val)", &loss),
        (&right, "validation accuracy", &accuracy),
    ];
    for (area, title, f) in panels {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for r in distilled.iter().chain(scratch) {
            for v in f(r).into_iter().filter(|v| v.is_finite()) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..epochs, (lo - pad)..(hi + pad))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (name, hist)) in [("distilled", distilled), ("scratch", scratch)]
            .iter()
            .enumerate()
        {
            let color = Palette99::pick(i).to_rgba();
            for k in 0..2 {
                let pts: Vec<(f64, f64)> = hist
                    .iter()
                    .map(|r| (r.epoch as f64 + 1.0, f(r)[k]))
                    .filter(|(_, y)| y.is_finite())
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let style = color.stroke_width(if k == 0 { 2 } else { 1 });
                let series = chart
                    .draw_series(LineSeries::new(pts, style))
                    .map_err(|e| err(&e))?;
                if k == 0 {
                    series
                        .label(*name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// What [`compare_folders`] compares: the teachers and the two students' training folders and
/// their training histories.
pub struct Subjects<'a> {
    /// The teacher set (its ensemble is the reference).
    pub teachers: &'a super::teachers::TeacherSet,
    /// The distilled student's training folder and history.
    pub distilled: (&'a Path, &'a [EpochRecord]),
    /// The scratch student's training folder and history.
    pub scratch: (&'a Path, &'a [EpochRecord]),
}

/// Runs the teachers, their ensemble and both students (best checkpoints) over the test split
/// of `ds`, compares them ([`compare`]) and writes `comparison.json`, `comparison.md` and
/// `comparison_curves.svg` into `out`.
pub fn compare_folders(
    s: &Subjects,
    ds: &crate::data::Dataset,
    batch_size: usize,
    workers: usize,
    out: &Path,
) -> Result<Comparison> {
    use crate::data::Split;
    use crate::stages::{load_trained, split_logits, SavedModel};
    let set = s.teachers;
    let mut per_teacher = Vec::with_capacity(set.len());
    let mut labels = Vec::new();
    for (k, m) in set.members().iter().enumerate() {
        let (logits, l) = split_logits(
            &|x: &Tensor| set.member_logits(k, x),
            m.input_size,
            m.normalization,
            ds,
            Split::Test,
            batch_size,
            workers,
        )?;
        let name = m
            .config
            .path
            .file_name()
            .unwrap_or(m.config.path.as_os_str());
        per_teacher.push((name.to_string_lossy().into_owned(), logits));
        labels = l;
    }
    let regions: Vec<Option<String>> = ds
        .split(Split::Test)
        .iter()
        .map(|e| e.attrs.region.clone())
        .collect();
    let stacked = Tensor::stack(
        &per_teacher
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .collect::<Vec<_>>(),
        1,
    );
    let ensemble = set
        .combine(&stacked.to_device(set.device()), &regions)?
        .logits;
    let student = |dir: &Path| -> Result<Tensor> {
        let saved = SavedModel::load(dir)?;
        let (_vs, net) = load_trained(dir, &saved, set.device())?;
        let spec = net.spec().clone();
        let dev = set.device();
        Ok(split_logits(
            &|x: &Tensor| Ok(net.forward_t(&x.to_device(dev), false)),
            spec.input_size,
            spec.normalization,
            ds,
            Split::Test,
            batch_size,
            workers,
        )?
        .0)
    };
    let distilled = student(s.distilled.0)?;
    let scratch = student(s.scratch.0)?;
    let c = compare(
        ds.mode,
        &ds.classes,
        &labels,
        &per_teacher,
        &ensemble.to_device(tch::Device::Cpu),
        &distilled,
        &scratch,
    )?;
    std::fs::create_dir_all(out).map_err(|e| anyhow!("{}: cannot create: {e}", out.display()))?;
    c.write(out)?;
    plot_curves(
        s.distilled.1,
        s.scratch.1,
        &out.join("comparison_curves.svg"),
    )?;
    Ok(c)
}
