//! A multi-label data set from real Fashion-MNIST pixels: 56x56 grey images made of a 2x2 grid of
//! 28x28 tiles. Each tile is a Fashion-MNIST image or empty; an image's labels are the set of
//! garment classes on its tiles (a class on two tiles counts once), and an image whose four tiles
//! are all empty has no label.
//!
//! Sources: train mosaics use only the training part of the Fashion-MNIST carve
//! ([`fashion_mnist::split_indices`] with the same seed and `val`), val mosaics only its val
//! part, test mosaics only the test file; each source image is used at most once, so no pixels
//! leak between splits. An empty tile is faint noise (values `0..=16`, drawn from the seed) rather
//! than pure black, so that two garment-free mosaics are never byte-identical duplicates.
//!
//! Beside the lists, the importer writes `sources.csv` (provenance, not part of the data set
//! format): `image,top_left,top_right,bottom_left,bottom_right`, each tile `train:N`, `test:N`
//! (index in that IDX file) or `-` for an empty tile.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::fashion_mnist::{self, Part, CLASSES, SIDE};
use super::{DatasetWriter, SplitMix64};
use crate::data::Split;

/// Side of a mosaic: two tiles.
pub const MOSAIC_SIDE: usize = 2 * SIDE;

/// Import options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// At most this many mosaics per split; `None` = as many as the sources allow (a quarter of
    /// the split's source images, so no source is ever reused).
    pub limit: Option<usize>,
    /// Seed of the carve, the tile choices and the noise.
    pub seed: u64,
    /// Training images carved for validation, as in the Fashion-MNIST importer.
    pub val: usize,
    /// Probability that a tile is empty.
    pub empty_tile: f64,
    /// Probability that a mosaic is forced garment-free (besides the `empty_tile^4` chance).
    pub blank: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limit: None,
            seed: 0,
            val: 6000,
            empty_tile: 0.3,
            blank: 0.05,
        }
    }
}

/// Writes the mosaic data set to `out`; returns images per split (train, val, test).
pub fn import(raw: &Path, out: &Path, opts: &Options) -> Result<[usize; 3]> {
    for (name, p) in [("empty_tile", opts.empty_tile), ("blank", opts.blank)] {
        if !(0.0..=1.0).contains(&p) {
            bail!("mosaic option {name} = {p} is not a probability in [0, 1]");
        }
    }
    let data = fashion_mnist::load(raw)?;
    let full = fashion_mnist::Options {
        limit: None,
        seed: opts.seed,
        val: opts.val,
    };
    let sources = fashion_mnist::split_indices(data.train.len(), data.test.len(), &full)?;
    let mut rng = SplitMix64::new(opts.seed ^ 0x6d05_a1c0_6d05_a1c0);
    let mut w = DatasetWriter::create(out)?;
    let mut manifest = String::from("image,top_left,top_right,bottom_left,bottom_right\n");
    for (split, src) in Split::ALL.iter().zip(sources) {
        let (part, prefix): (&Part, &str) = match split {
            Split::Test => (&data.test, "test"),
            _ => (&data.train, "train"),
        };
        let mut src = src;
        rng.shuffle(&mut src);
        let mut next = src.into_iter();
        let n = opts.limit.map_or(next.len() / 4, |l| l.min(next.len() / 4));
        for k in 0..n {
            let name = format!("mosaic_{}_{k:05}.png", split.name());
            let blank = rng.unit() < opts.blank;
            let mut pixels = vec![0u8; MOSAIC_SIDE * MOSAIC_SIDE];
            let mut present = [false; 10];
            let _ = write!(manifest, "{name}");
            for tile in 0..4 {
                let (ty, tx) = (tile / 2 * SIDE, tile % 2 * SIDE);
                let garment = if blank || rng.unit() < opts.empty_tile {
                    None
                } else {
                    // n <= sources / 4 and a mosaic takes at most 4 sources.
                    Some(next.next().context("mosaic sources exhausted")?)
                };
                let tile_px: Vec<u8> = match garment {
                    Some(i) => {
                        let label = part.label(i).context("source label out of range")?;
                        if let Some(p) = present.get_mut(usize::from(label)) {
                            *p = true;
                        }
                        let _ = write!(manifest, ",{prefix}:{i}");
                        part.image(i).to_vec()
                    }
                    None => {
                        let _ = write!(manifest, ",-");
                        (0..SIDE * SIDE).map(|_| rng.below(17) as u8).collect()
                    }
                };
                for (r, row) in tile_px.chunks_exact(SIDE).enumerate() {
                    let at = (ty + r) * MOSAIC_SIDE + tx;
                    if let Some(dst) = pixels.get_mut(at..at + SIDE) {
                        dst.copy_from_slice(row);
                    }
                }
            }
            manifest.push('\n');
            let mut labels: Vec<&str> = CLASSES
                .iter()
                .zip(present)
                .filter_map(|(c, p)| p.then_some(*c))
                .collect();
            labels.sort_unstable();
            w.add_gray(
                *split,
                &name,
                MOSAIC_SIDE as u32,
                MOSAIC_SIDE as u32,
                pixels,
                &labels,
            )?;
        }
    }
    let path = out.join("sources.csv");
    std::fs::write(&path, manifest).with_context(|| format!("{}: cannot write", path.display()))?;
    w.finish()
}
