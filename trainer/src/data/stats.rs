//! Data set statistics: images per split, per-class counts, label cardinality, no-label rate.
//!
//! Computed from the parsed lists alone (no image is read), so `kdtrain data stats` is fast;
//! `kdtrain data validate` embeds the same report.
//!
//! # JSON schema (`kdtrain data stats --json`)
//!
//! ```text
//! {
//!   "schema": "kdedge.data.stats/1",
//!   "root": "path/to/dataset",          // as given on the command line
//!   "mode": "multi-class" | "multi-label",
//!   "classes": ["Ankle_boot", ...],     // the vocabulary; index = model output index
//!   "splits": {                         // always the three keys train, val, test
//!     "train": SplitStats, "val": SplitStats, "test": SplitStats
//!   },
//!   "overall": SplitStats               // the three splits together
//! }
//!
//! SplitStats = {
//!   "images": 1234,                     // lines in the list
//!   "labelled": 1200,                   // images with at least one class
//!   "no_label": 34,                     // images with no class
//!   "no_label_rate": 0.02755,           // no_label / images (0 when images == 0)
//!   "label_cardinality": 1.71,          // mean classes per image, unlabelled images count 0
//!                                       //   (0 when images == 0)
//!   "labels_per_image": [34, 500, 700], // element k = images with exactly k classes
//!   "class_counts": {"Ankle_boot": 120, ...}  // images carrying each class; every vocabulary
//!                                       //   class is present, 0 when absent from the split
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Dataset, Entry, Mode, Split};

/// The schema identifier written in the JSON report.
pub const SCHEMA: &str = "kdedge.data.stats/1";

/// Statistics of one split (or of all splits together).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitStats {
    /// Number of images listed.
    pub images: usize,
    /// Images with at least one class.
    pub labelled: usize,
    /// Images with no class.
    pub no_label: usize,
    /// `no_label / images`, 0 for an empty split.
    pub no_label_rate: f64,
    /// Mean number of classes per image (unlabelled images count 0), 0 for an empty split.
    pub label_cardinality: f64,
    /// Element `k`: images with exactly `k` classes.
    pub labels_per_image: Vec<usize>,
    /// Images carrying each vocabulary class (0 when absent).
    pub class_counts: BTreeMap<String, usize>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The data set root as given.
    pub root: String,
    /// Resolved mode.
    pub mode: Mode,
    /// Sorted vocabulary.
    pub classes: Vec<String>,
    /// Per split, keyed `train`, `val`, `test`.
    pub splits: BTreeMap<&'static str, SplitStats>,
    /// All splits together.
    pub overall: SplitStats,
}

/// Counts the entries of one split against a vocabulary.
pub fn split_stats<'a>(
    classes: &[String],
    entries: impl IntoIterator<Item = &'a Entry>,
) -> SplitStats {
    let mut class_counts: BTreeMap<String, usize> =
        classes.iter().map(|c| (c.clone(), 0)).collect();
    let mut images = 0usize;
    let mut total_labels = 0usize;
    let mut labels_per_image: Vec<usize> = vec![0];
    for e in entries {
        images += 1;
        total_labels += e.labels.len();
        if labels_per_image.len() <= e.labels.len() {
            labels_per_image.resize(e.labels.len() + 1, 0);
        }
        if let Some(slot) = labels_per_image.get_mut(e.labels.len()) {
            *slot += 1;
        }
        for l in &e.labels {
            *class_counts.entry(l.clone()).or_insert(0) += 1;
        }
    }
    let no_label = labels_per_image.first().copied().unwrap_or(0);
    let ratio = |n: usize| {
        if images == 0 {
            0.0
        } else {
            n as f64 / images as f64
        }
    };
    SplitStats {
        images,
        labelled: images - no_label,
        no_label,
        no_label_rate: ratio(no_label),
        label_cardinality: ratio(total_labels),
        labels_per_image,
        class_counts,
    }
}

/// Computes the report of a loaded data set.
pub fn compute(ds: &Dataset) -> Stats {
    let splits = Split::ALL
        .iter()
        .map(|&s| (s.name(), split_stats(&ds.classes, ds.split(s))))
        .collect();
    let overall = split_stats(
        &ds.classes,
        Split::ALL.iter().flat_map(|&s| ds.split(s).iter()),
    );
    Stats {
        schema: SCHEMA,
        root: ds.root.display().to_string(),
        mode: ds.mode,
        classes: ds.classes.clone(),
        splits,
        overall,
    }
}

impl Stats {
    /// Pretty JSON following the schema in the module docs.
    pub fn to_json(&self) -> String {
        // Serialising plain maps, strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Human-readable table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let cols: Vec<(&str, &SplitStats)> = Split::ALL
            .iter()
            .filter_map(|sp| self.splits.get(sp.name()).map(|st| (sp.name(), st)))
            .chain(std::iter::once(("total", &self.overall)))
            .collect();
        let _ = writeln!(s, "data set: {}", self.root);
        let _ = writeln!(
            s,
            "mode: {}   classes: {}",
            self.mode.name(),
            self.classes.len()
        );
        let width = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
            .max(22);
        let _ = write!(s, "{:width$}", "");
        for (name, _) in &cols {
            let _ = write!(s, " {name:>9}");
        }
        s.push('\n');
        let mut row = |label: &str, f: &dyn Fn(&SplitStats) -> String| {
            let _ = write!(s, "{label:width$}");
            for (_, st) in &cols {
                let _ = write!(s, " {:>9}", f(st));
            }
            s.push('\n');
        };
        row("images", &|st| st.images.to_string());
        row("labelled", &|st| st.labelled.to_string());
        row("no label", &|st| st.no_label.to_string());
        row("no-label rate", &|st| format!("{:.4}", st.no_label_rate));
        row("label cardinality", &|st| {
            format!("{:.4}", st.label_cardinality)
        });
        let max_k = cols
            .iter()
            .map(|(_, st)| st.labels_per_image.len())
            .max()
            .unwrap_or(0);
        for k in 0..max_k {
            row(&format!("images with {k} labels"), &|st| {
                st.labels_per_image.get(k).copied().unwrap_or(0).to_string()
            });
        }
        for c in &self.classes {
            row(c, &|st| {
                st.class_counts.get(c).copied().unwrap_or(0).to_string()
            });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::list::parse_list;

    #[test]
    fn counts_by_hand() {
        let entries = parse_list("t", "a,x|y\nb,\nc\nd,y\ne,x|y|z\n").unwrap();
        let classes: Vec<String> = ["x", "y", "z", "w"].iter().map(|s| s.to_string()).collect();
        let st = split_stats(&classes, &entries);
        assert_eq!(st.images, 5);
        assert_eq!(st.labelled, 3);
        assert_eq!(st.no_label, 2);
        assert_eq!(st.no_label_rate, 2.0 / 5.0);
        // 2 + 0 + 0 + 1 + 3 = 6 labels over 5 images.
        assert_eq!(st.label_cardinality, 6.0 / 5.0);
        assert_eq!(st.labels_per_image, [2, 1, 1, 1]);
        assert_eq!(st.class_counts["x"], 2);
        assert_eq!(st.class_counts["y"], 3);
        assert_eq!(st.class_counts["z"], 1);
        assert_eq!(st.class_counts["w"], 0);
        let empty = split_stats(&classes, &[]);
        assert_eq!(
            (empty.images, empty.no_label_rate, empty.label_cardinality),
            (0, 0.0, 0.0)
        );
        assert_eq!(empty.labels_per_image, [0]);
    }
}
