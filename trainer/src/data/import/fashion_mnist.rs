//! Fashion-MNIST (Xiao, Rasul, Vollgraf 2017; MIT licence) from its four gzip'd IDX files:
//! 60,000 training and 10,000 test images, 28x28 grey, 10 garment classes.
//!
//! The validation split is carved from the training file deterministically ([`super::carve`]
//! with the seed); the test split is the official test file. Image names record their source:
//! `train_NNNNN.png` / `test_NNNNN.png`, `NNNNN` being the index in that IDX file (so val images
//! are also named `train_*`). Lists are sorted by that index.

use std::path::Path;

use anyhow::{bail, Result};

use super::idx::Idx;
use super::{carve, read_gz, DatasetWriter, SplitMix64};
use crate::data::Split;

/// Class names by Fashion-MNIST label value, made safe for the list format. Note that the data
/// set's output order is the sorted vocabulary (`Ankle_boot`, `Bag`, `Coat`, ...), not this
/// label-value order.
pub const CLASSES: [&str; 10] = [
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
];

/// Side of a Fashion-MNIST image.
pub const SIDE: usize = 28;

/// One IDX file pair: images `[n, 28, 28]` and labels `[n]`, checked.
#[derive(Clone, Debug)]
pub struct Part {
    /// `n * 28 * 28` pixels, row-major.
    pub images: Vec<u8>,
    /// `n` labels, each below 10.
    pub labels: Vec<u8>,
}

impl Part {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i` (empty when out of range).
    pub fn image(&self, i: usize) -> &[u8] {
        self.images
            .get(i * SIDE * SIDE..(i + 1) * SIDE * SIDE)
            .unwrap_or_default()
    }

    /// The label of image `i`, if in range.
    pub fn label(&self, i: usize) -> Option<u8> {
        self.labels.get(i).copied()
    }
}

/// The raw data set: `train` (60k) and `test` (10k).
#[derive(Clone, Debug)]
pub struct Raw {
    /// `train-images-idx3-ubyte.gz` + `train-labels-idx1-ubyte.gz`.
    pub train: Part,
    /// `t10k-images-idx3-ubyte.gz` + `t10k-labels-idx1-ubyte.gz`.
    pub test: Part,
}

fn load_part(raw: &Path, prefix: &str) -> Result<Part> {
    let img_name = format!("{prefix}-images-idx3-ubyte.gz");
    let lab_name = format!("{prefix}-labels-idx1-ubyte.gz");
    let img_path = raw.join(&img_name);
    let lab_path = raw.join(&lab_name);
    let images = Idx::parse(&img_path.display().to_string(), &read_gz(&img_path)?)?;
    let labels = Idx::parse(&lab_path.display().to_string(), &read_gz(&lab_path)?)?;
    let [n, h, w] = images.dims[..] else {
        bail!("{img_name}: expected 3 dimensions, got {:?}", images.dims);
    };
    if (h, w) != (SIDE, SIDE) {
        bail!("{img_name}: expected {SIDE}x{SIDE} images, got {h}x{w}");
    }
    if labels.dims != [n] {
        bail!(
            "{lab_name}: expected {n} labels to match {img_name}, got dimensions {:?}",
            labels.dims
        );
    }
    if let Some(i) = labels
        .data
        .iter()
        .position(|&l| usize::from(l) >= CLASSES.len())
    {
        bail!(
            "{lab_name}: label {} of image {i} is not below 10",
            labels.data[i]
        );
    }
    Ok(Part {
        images: images.data,
        labels: labels.data,
    })
}

/// Reads and checks the four IDX files in `raw`.
pub fn load(raw: &Path) -> Result<Raw> {
    Ok(Raw {
        train: load_part(raw, "train")?,
        test: load_part(raw, "t10k")?,
    })
}

/// Import options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// At most this many images per split (a seeded random subset); `None` = all.
    pub limit: Option<usize>,
    /// Seed of the train/val carve and of the subsets.
    pub seed: u64,
    /// Images carved from the training file for validation (before `limit`).
    pub val: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limit: None,
            seed: 0,
            val: 6000,
        }
    }
}

/// Source indices of each split: `(train, val, test)`, each sorted. Train and val index the
/// training file, test the test file. Shared with the mosaic importer and the tests.
pub fn split_indices(n_train: usize, n_test: usize, opts: &Options) -> Result<[Vec<usize>; 3]> {
    if opts.val >= n_train {
        bail!(
            "--val {} leaves no training image (the training file has {n_train})",
            opts.val
        );
    }
    let (train, val) = carve(n_train, opts.val, opts.seed);
    let mut test: Vec<usize> = (0..n_test).collect();
    // A separate stream so the test subset does not depend on the carve.
    SplitMix64::new(opts.seed ^ 0x7e57_7e57_7e57_7e57).shuffle(&mut test);
    let mut out = [train, val, test];
    for v in &mut out {
        if let Some(n) = opts.limit {
            v.truncate(n);
        }
        v.sort_unstable();
    }
    Ok(out)
}

/// Writes the data set to `out`; returns images per split (train, val, test).
pub fn import(raw: &Path, out: &Path, opts: &Options) -> Result<[usize; 3]> {
    let data = load(raw)?;
    let [train, val, test] = split_indices(data.train.len(), data.test.len(), opts)?;
    let mut w = DatasetWriter::create(out)?;
    for (split, part, prefix, idx) in [
        (Split::Train, &data.train, "train", &train),
        (Split::Val, &data.train, "train", &val),
        (Split::Test, &data.test, "test", &test),
    ] {
        for &i in idx {
            let Some(class) = part.label(i).and_then(|l| CLASSES.get(usize::from(l))) else {
                bail!("{prefix} image {i}: label out of range");
            };
            w.add_gray(
                split,
                &format!("{prefix}_{i:05}.png"),
                SIDE as u32,
                SIDE as u32,
                part.image(i).to_vec(),
                &[class],
            )?;
        }
    }
    w.finish()
}
