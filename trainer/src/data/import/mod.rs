//! Importers that turn real raw data into a data set in the kdedge format (see [`crate::data`]).
//!
//! - [`fashion_mnist`]: Fashion-MNIST from its gzip'd IDX files (multi-class, 10 garments).
//! - [`digits`]: scikit-learn's 8x8 digits from `digits.csv.gz` (multi-class, `0`..`9`).
//! - [`mosaic`]: 2x2 mosaics of real Fashion-MNIST images (multi-label, some with no garment).
//!
//! All importers are deterministic functions of their inputs and `seed`: the same call writes the
//! same bytes. Randomness comes from [`SplitMix64`], defined here so the output never changes
//! with a dependency's version.

pub mod digits;
pub mod fashion_mnist;
pub mod idx;
pub mod mosaic;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::Split;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for n < 2^32).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32).wrapping_mul(n as u64) >> 32) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Reads a whole gzip file, naming it in any error.
pub fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .with_context(|| format!("{}: not a readable gzip file", path.display()))?;
    Ok(out)
}

/// One image waiting to be written.
struct Pending {
    name: String,
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// Collects images and split lists, then writes a fresh data set folder (PNG encoding in
/// parallel).
pub struct DatasetWriter {
    root: PathBuf,
    lines: [Vec<String>; 3],
    images: Vec<Pending>,
}

impl DatasetWriter {
    /// Creates `root/images`. Refuses a `root` that already exists and is not empty, so an import
    /// never mixes with older files.
    pub fn create(root: &Path) -> Result<Self> {
        if root.exists() {
            let mut it = std::fs::read_dir(root)
                .with_context(|| format!("{}: cannot list", root.display()))?;
            if it.next().is_some() {
                bail!(
                    "{}: output folder exists and is not empty; choose a new --out",
                    root.display()
                );
            }
        }
        std::fs::create_dir_all(root.join("images"))
            .with_context(|| format!("{}: cannot create images/", root.display()))?;
        Ok(DatasetWriter {
            root: root.to_path_buf(),
            lines: [Vec::new(), Vec::new(), Vec::new()],
            images: Vec::new(),
        })
    }

    /// Queues a grey image `images/<name>` (PNG) listed in `split` with `labels`.
    pub fn add_gray(
        &mut self,
        split: Split,
        name: &str,
        width: u32,
        height: u32,
        pixels: Vec<u8>,
        labels: &[&str],
    ) -> Result<()> {
        if pixels.len() as u64 != u64::from(width) * u64::from(height) {
            bail!(
                "{name}: {} pixels do not make a {width}x{height} image",
                pixels.len()
            );
        }
        let line = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name},{}", labels.join("|"))
        };
        self.lines[split as usize].push(line);
        self.images.push(Pending {
            name: name.to_string(),
            width,
            height,
            pixels,
        });
        Ok(())
    }

    /// Writes the images and `train.txt`, `val.txt`, `test.txt`; returns images per split.
    pub fn finish(self) -> Result<[usize; 3]> {
        let dir = self.root.join("images");
        self.images
            .into_par_iter()
            .try_for_each(|p| -> Result<()> {
                let path = dir.join(&p.name);
                let img = image::GrayImage::from_raw(p.width, p.height, p.pixels)
                    .with_context(|| format!("{}: pixel buffer does not match its size", p.name))?;
                img.save_with_format(&path, image::ImageFormat::Png)
                    .with_context(|| format!("{}: cannot write", path.display()))
            })?;
        let mut counts = [0; 3];
        for s in Split::ALL {
            let lines = &self.lines[s as usize];
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            let path = self.root.join(s.file_name());
            std::fs::write(&path, text)
                .with_context(|| format!("{}: cannot write", path.display()))?;
            counts[s as usize] = lines.len();
        }
        Ok(counts)
    }
}

/// Splits `0..n` deterministically: a seeded shuffle, the first `n_val` indices are the
/// validation part, the rest the training part.
pub fn carve(n: usize, n_val: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut idx);
    let val = idx.iter().take(n_val).copied().collect();
    let train = idx.into_iter().skip(n_val).collect();
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_published_reference_sequence() {
        // Seed 1234567: the values published with the Rosetta Code task "Pseudo-random
        // numbers/Splitmix64" (computed there with the reference C code).
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        assert_eq!(r.next_u64(), 9817491932198370423);
    }

    #[test]
    fn carve_is_a_deterministic_partition() {
        let (t, v) = carve(100, 10, 7);
        assert_eq!((t.len(), v.len()), (90, 10));
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(carve(100, 10, 7), (t.clone(), v.clone()));
        assert_ne!(carve(100, 10, 8).1, v);
    }
}
