//! The trainer's data layer: the on-disk data set format, its validation and statistics, and
//! importers that write real data sets in that format.
//!
//! # Format
//!
//! A data set is a folder holding `images/` and three split lists, `train.txt`, `val.txt` and
//! `test.txt` (all three required; a list may be empty). Each list names one image per line, with
//! its classes (see [`list`] for the exact grammar):
//!
//! ```text
//! shoe_001.png,Sneaker
//! outfit_17.png,Bag|Coat|Trouser
//! background_3.png,
//! ```
//!
//! The **class vocabulary** is the union of the class names in all three lists, sorted
//! alphabetically by Unicode code point (byte order, as `LC_ALL=C sort`). Its order is the order of
//! the model's output vector: class `vocabulary[i]` is output `i`.
//!
//! **Mode.** A data set is *multi-class* when every image in every split carries exactly one class
//! (softmax output, argmax decision), otherwise *multi-label* (sigmoid outputs, per-class
//! thresholds; an image with no class is a negative for every class). [`ModeChoice`] lets a user
//! force either; forcing multi-class on a set where some image has zero or several classes is an
//! error naming the first such line.
//!
//! **Attributes.** An image may carry a `domain` and a `region` ([`meta`]), from a third list
//! column or from an optional side file `<split>.meta.csv` (`train.meta.csv`, ...) next to the
//! list; [`Dataset::attributes`] looks them up by position in the split list.

pub mod import;
pub mod list;
pub mod meta;
pub mod stats;
pub mod validate;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use list::{Entry, LineError};
pub use meta::Attributes;

/// The three splits of a data set, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// `train.txt`
    Train,
    /// `val.txt`
    Val,
    /// `test.txt`
    Test,
}

impl Split {
    /// All splits in canonical order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split's short name (`train`, `val`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The split's list file name (`train.txt`, ...).
    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.txt",
            Split::Val => "val.txt",
            Split::Test => "test.txt",
        }
    }

    /// The split's optional attribute side file (`train.meta.csv`, ...; see [`meta`]).
    pub fn meta_file_name(self) -> &'static str {
        match self {
            Split::Train => "train.meta.csv",
            Split::Val => "val.meta.csv",
            Split::Test => "test.meta.csv",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether each image has exactly one class, or any number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Exactly one class per image: softmax + argmax.
    MultiClass,
    /// Zero or more classes per image: one sigmoid per class.
    MultiLabel,
}

impl Mode {
    /// `multi-class` or `multi-label`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::MultiClass => "multi-class",
            Mode::MultiLabel => "multi-label",
        }
    }
}

/// How the mode is chosen: detected from the labels, or forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeChoice {
    /// Multi-class when every image has exactly one class, else multi-label.
    #[default]
    Auto,
    /// Force multi-class; an error when some image has zero or several classes.
    MultiClass,
    /// Force multi-label (always possible).
    MultiLabel,
}

/// One parsed split list.
#[derive(Clone, Debug)]
pub struct SplitList {
    /// Which split.
    pub split: Split,
    /// Its entries in file order.
    pub entries: Vec<Entry>,
}

/// A data set's lists, parsed (images not yet read).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The data set's root folder.
    pub root: PathBuf,
    /// Train, val and test, in that order.
    pub splits: Vec<SplitList>,
    /// Sorted class vocabulary; index = output index.
    pub classes: Vec<String>,
    /// The resolved mode.
    pub mode: Mode,
}

impl Dataset {
    /// Reads and parses the three lists under `root` (with their `<split>.meta.csv` side files
    /// where present) and resolves the mode.
    ///
    /// Every list error found is reported (one per line of the error message), each naming its
    /// file and line.
    pub fn load(root: &Path, choice: ModeChoice) -> Result<Dataset> {
        let mut splits = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for split in Split::ALL {
            let path = root.join(split.file_name());
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(format!("{}: cannot read: {e}", path.display()));
                    continue;
                }
            };
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                    let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
                    errors.push(format!("{}:{line}: not valid UTF-8", split.file_name()));
                    continue;
                }
            };
            match list::parse_list(split.file_name(), &text) {
                Ok(mut entries) => {
                    errors.extend(load_side_file(root, split, &mut entries));
                    splits.push(SplitList { split, entries });
                }
                Err(errs) => errors.extend(errs.iter().map(ToString::to_string)),
            }
        }
        if !errors.is_empty() {
            bail!(
                "{} error(s) in the lists of {}:\n{}",
                errors.len(),
                root.display(),
                errors.join("\n")
            );
        }
        let classes = vocabulary(&splits);
        let mode = resolve_mode(&splits, choice)?;
        Ok(Dataset {
            root: root.to_path_buf(),
            splits,
            classes,
            mode,
        })
    }

    /// The folder holding the images.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The parsed list of one split.
    pub fn split(&self, split: Split) -> &[Entry] {
        self.splits
            .iter()
            .find(|s| s.split == split)
            .map(|s| s.entries.as_slice())
            .unwrap_or(&[])
    }

    /// The attributes of the `index`-th image of `split` (a position in the split list, as in
    /// `Batch::indices`); `None` past the end of the list.
    pub fn attributes(&self, split: Split, index: usize) -> Option<&Attributes> {
        self.split(split).get(index).map(|e| &e.attrs)
    }

    /// The output index of a class name, if it is in the vocabulary.
    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.binary_search_by(|c| c.as_str().cmp(name)).ok()
    }
}

/// Merges `<split>.meta.csv` into `entries` when the file exists; returns the errors found.
fn load_side_file(root: &Path, split: Split, entries: &mut [Entry]) -> Vec<String> {
    let path = root.join(split.meta_file_name());
    let text = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![format!("{}: cannot read: {e}", path.display())],
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
                return vec![format!(
                    "{}:{line}: not valid UTF-8",
                    split.meta_file_name()
                )];
            }
        },
    };
    let errors = match meta::parse_side_file(split.meta_file_name(), &text) {
        Ok(rows) => meta::merge_side_file(split.file_name(), entries, split.meta_file_name(), rows),
        Err(errs) => errs,
    };
    errors.iter().map(ToString::to_string).collect()
}

/// The union of all class names, sorted by code point.
pub fn vocabulary(splits: &[SplitList]) -> Vec<String> {
    let set: BTreeSet<&str> = splits
        .iter()
        .flat_map(|s| s.entries.iter())
        .flat_map(|e| e.labels.iter().map(String::as_str))
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// Detects or checks the mode (see the module docs).
pub fn resolve_mode(splits: &[SplitList], choice: ModeChoice) -> Result<Mode> {
    let first_not_single = splits.iter().find_map(|s| {
        s.entries
            .iter()
            .find(|e| e.labels.len() != 1)
            .map(|e| (s.split, e))
    });
    Ok(match (choice, first_not_single) {
        (ModeChoice::MultiLabel, _) => Mode::MultiLabel,
        (ModeChoice::Auto, None) | (ModeChoice::MultiClass, None) => Mode::MultiClass,
        (ModeChoice::Auto, Some(_)) => Mode::MultiLabel,
        (ModeChoice::MultiClass, Some((split, e))) => bail!(
            "{}:{}: multi-class mode needs exactly one class per image, {:?} has {}",
            split.file_name(),
            e.line,
            e.image,
            e.labels.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, train: &str, val: &str, test: &str) {
        std::fs::write(dir.join("train.txt"), train).unwrap();
        std::fs::write(dir.join("val.txt"), val).unwrap();
        std::fs::write(dir.join("test.txt"), test).unwrap();
    }

    #[test]
    fn vocabulary_is_sorted_by_code_point_across_splits() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "a.png,zebra\nb.png,Bag\n",
            "c.png,apple\n",
            "d.png,Zoo\n",
        );
        let ds = Dataset::load(d.path(), ModeChoice::Auto).unwrap();
        assert_eq!(ds.classes, ["Bag", "Zoo", "apple", "zebra"]);
        assert_eq!(ds.class_index("apple"), Some(2));
        assert_eq!(ds.class_index("nope"), None);
        assert_eq!(ds.mode, Mode::MultiClass);
        assert_eq!(ds.split(Split::Val)[0].image, "c.png");
    }

    #[test]
    fn mode_detection_and_override() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.png,x\n", "b.png,x|y\n", "c.png,y\n");
        assert_eq!(
            Dataset::load(d.path(), ModeChoice::Auto).unwrap().mode,
            Mode::MultiLabel
        );
        let e = Dataset::load(d.path(), ModeChoice::MultiClass).unwrap_err();
        assert_eq!(
            e.to_string(),
            "val.txt:1: multi-class mode needs exactly one class per image, \"b.png\" has 2"
        );
        write(d.path(), "a.png,x\n", "b.png,y\n", "c.png\n");
        assert_eq!(
            Dataset::load(d.path(), ModeChoice::Auto).unwrap().mode,
            Mode::MultiLabel
        );
        assert!(Dataset::load(d.path(), ModeChoice::MultiClass)
            .unwrap_err()
            .to_string()
            .starts_with("test.txt:1: multi-class"));
        write(d.path(), "a.png,x\n", "b.png,y\n", "c.png,x\n");
        assert_eq!(
            Dataset::load(d.path(), ModeChoice::Auto).unwrap().mode,
            Mode::MultiClass
        );
        assert_eq!(
            Dataset::load(d.path(), ModeChoice::MultiLabel)
                .unwrap()
                .mode,
            Mode::MultiLabel
        );
    }

    #[test]
    fn side_files_give_attributes_by_split_position() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "a.png,x,domain=indoor\nb.png,y\nc.png,x\n",
            "v.png,x\n",
            "t.png,y\n",
        );
        std::fs::write(
            d.path().join("train.meta.csv"),
            "image,domain,region\nc.png,outdoor,eu\na.png,,us\n",
        )
        .unwrap();
        let ds = Dataset::load(d.path(), ModeChoice::Auto).unwrap();
        let a = |i| ds.attributes(Split::Train, i).unwrap();
        assert_eq!(
            (a(0).domain.as_deref(), a(0).region.as_deref()),
            (Some("indoor"), Some("us"))
        );
        assert!(a(1).is_empty());
        assert_eq!(
            (a(2).domain.as_deref(), a(2).region.as_deref()),
            (Some("outdoor"), Some("eu"))
        );
        assert!(ds.attributes(Split::Train, 3).is_none());
        assert!(ds.attributes(Split::Val, 0).unwrap().is_empty());

        std::fs::write(
            d.path().join("val.meta.csv"),
            "image,region\nnot_in_val.png,eu\n",
        )
        .unwrap();
        std::fs::write(d.path().join("test.meta.csv"), "image,domain\nt.png,a,b\n").unwrap();
        let msg = format!(
            "{:#}",
            Dataset::load(d.path(), ModeChoice::Auto).unwrap_err()
        );
        assert!(msg.starts_with("2 error(s)"), "{msg}");
        assert!(
            msg.contains("val.meta.csv:2: image \"not_in_val.png\" is not in val.txt"),
            "{msg}"
        );
        assert!(
            msg.contains("test.meta.csv:2: 3 field(s), the header has 2"),
            "{msg}"
        );
    }

    #[test]
    fn missing_list_and_errors_in_several_files_are_all_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("train.txt"), "a.png,|\n").unwrap();
        std::fs::write(d.path().join("val.txt"), b"ok.png\n\xff.png\n").unwrap();
        let msg = format!(
            "{:#}",
            Dataset::load(d.path(), ModeChoice::Auto).unwrap_err()
        );
        assert!(msg.contains("train.txt:1: empty class name"), "{msg}");
        assert!(msg.contains("val.txt:2: not valid UTF-8"), "{msg}");
        assert!(msg.contains("test.txt: cannot read"), "{msg}");
        assert!(msg.starts_with("3 error(s)"), "{msg}");
    }
}
