//! Full validation of a data set: lists parse, every image exists and decodes, no image leaks
//! between splits (by name or by content), plus the [`stats`] report.
//!
//! Errors (the data set is unusable until they are fixed), each naming list file and line:
//! - any list error (see [`list`](super::list)), a missing or unreadable list file;
//! - an image that is missing, unreadable, or does not decode (JPEG, PNG, BMP, PPM/PGM);
//! - the same image name in two splits;
//! - two different image files with identical bytes (SHA-256) in two different splits.
//!
//! Warnings (reported, not fatal):
//! - identical bytes under two names within one split;
//! - a class with no training image.
//!
//! # JSON schema (`kdtrain data validate --json`)
//!
//! ```text
//! {
//!   "schema": "kdedge.data.validate/1",
//!   "valid": true,                      // no errors
//!   "images_checked": 12345,            // list entries whose image was read and decoded
//!   "errors": ["val.txt:3: ...", ...],  // each names file and line
//!   "warnings": ["..."],
//!   "image_sizes": {"28x28": 12345},    // decoded width x height -> images
//!   "stats": { ... }                    // the kdedge.data.stats/1 report (see data::stats)
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::stats::{self, Stats};
use super::{Dataset, ModeChoice, Split};

/// The schema identifier written in the JSON report.
pub const SCHEMA: &str = "kdedge.data.validate/1";

/// Outcome of [`validate`].
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// True when `errors` is empty.
    pub valid: bool,
    /// Entries whose image was read and decoded.
    pub images_checked: usize,
    /// Fatal problems, each naming list file and line.
    pub errors: Vec<String>,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
    /// Decoded `WxH` -> number of images.
    pub image_sizes: BTreeMap<String, usize>,
    /// The statistics report.
    pub stats: Stats,
}

/// What reading one image gave.
struct Checked {
    hash: [u8; 32],
    width: u32,
    height: u32,
}

/// Reads and decodes one image file, or says why not.
fn check_image(path: &Path) -> Result<Checked, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let img = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?
        .decode()
        .map_err(|e| format!("does not decode: {e}"))?;
    Ok(Checked {
        hash: Sha256::digest(&bytes).into(),
        width: img.width(),
        height: img.height(),
    })
}

/// Validates the data set under `root`. `Err` only for problems that stop validation early
/// (the lists themselves do not parse); everything else is collected in the report.
pub fn validate(root: &Path, mode: ModeChoice) -> Result<Report> {
    let ds = Dataset::load(root, mode)?;
    let images = ds.images_dir();
    let all: Vec<(Split, &super::Entry)> = Split::ALL
        .iter()
        .flat_map(|&s| ds.split(s).iter().map(move |e| (s, e)))
        .collect();
    let checked: Vec<Result<Checked, String>> = all
        .par_iter()
        .map(|(_, e)| check_image(&images.join(&e.image)))
        .collect();

    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut image_sizes: BTreeMap<String, usize> = BTreeMap::new();
    let mut images_checked = 0;
    let at = |s: Split, line: usize| format!("{}:{line}", s.file_name());

    // Same name in two splits (within one split the parser already refuses it).
    let mut by_name: HashMap<&str, (Split, usize)> = HashMap::new();
    // Content hash -> first (split, line, name) seen; checked per split and across splits.
    let mut by_hash: HashMap<[u8; 32], Vec<(Split, usize, &str)>> = HashMap::new();
    for ((split, e), res) in all.iter().zip(&checked) {
        let split = *split;
        match res {
            Err(why) => errors.push(format!(
                "{}: image {:?} {}",
                at(split, e.line),
                e.image,
                why.trim_end()
            )),
            Ok(c) => {
                images_checked += 1;
                *image_sizes
                    .entry(format!("{}x{}", c.width, c.height))
                    .or_insert(0) += 1;
                let same = by_hash.entry(c.hash).or_default();
                for &(s0, l0, n0) in same.iter() {
                    if n0 == e.image {
                        continue; // the same file listed twice: reported as a name duplicate
                    }
                    let msg = format!(
                        "{}: image {:?} has the same content (sha256 {}) as {:?} at {}",
                        at(split, e.line),
                        e.image,
                        hex8(&c.hash),
                        n0,
                        at(s0, l0)
                    );
                    if s0 == split {
                        warnings.push(msg);
                    } else {
                        errors.push(msg);
                    }
                }
                same.push((split, e.line, &e.image));
            }
        }
        if let Some(&(s0, l0)) = by_name.get(e.image.as_str()) {
            errors.push(format!(
                "{}: image {:?} is also listed in {}",
                at(split, e.line),
                e.image,
                at(s0, l0)
            ));
        } else {
            by_name.insert(&e.image, (split, e.line));
        }
    }

    let stats = stats::compute(&ds);
    if let Some(train) = stats.splits.get(Split::Train.name()) {
        for (class, n) in &train.class_counts {
            if *n == 0 {
                warnings.push(format!("class {class:?} has no training image"));
            }
        }
    }
    Ok(Report {
        schema: SCHEMA,
        valid: errors.is_empty(),
        images_checked,
        errors,
        warnings,
        image_sizes,
        stats,
    })
}

/// First 8 bytes of a hash in hex, enough to tell files apart in a message.
fn hex8(h: &[u8; 32]) -> String {
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Report {
    /// Pretty JSON following the schema in the module docs.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Human-readable report: errors, warnings, sizes, then the statistics table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for e in &self.errors {
            s.push_str(&format!("error: {e}\n"));
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        let sizes: Vec<String> = self
            .image_sizes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        s.push_str(&format!(
            "{}: {} image(s) decoded, {} error(s), {} warning(s); sizes {{{}}}\n",
            if self.valid { "VALID" } else { "INVALID" },
            self.images_checked,
            self.errors.len(),
            self.warnings.len(),
            sizes.join(", ")
        ));
        s.push_str(&self.stats.to_text());
        s
    }
}
