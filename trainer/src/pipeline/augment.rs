//! Seeded augmentation of a letterboxed `S x S` RGB uint8 image (HWC), training split only.
//!
//! Operations, always in this order, with their random draws always taken in this order from one
//! [`SplitMix64`] (six draws per image, even for disabled operations, so turning one operation
//! off does not change the others' draws):
//!
//! 1. **horizontal flip** with probability 0.5 (`hflip`): an exact column mirror;
//! 2. **rotation and zoom**, one affine warp about the image centre: angle uniform in
//!    `[-rotation_turns, rotation_turns]` turns, scale uniform in `[1 - zoom, 1 + zoom]` (> 1
//!    enlarges the content). Output pixel centre `p` samples the source at
//!    `c + R(-angle) (p - c) / scale` (`c` = the image centre), bilinearly, with black (0)
//!    outside the image, like the letterbox border; the result is rounded to nearest. With angle
//!    0 and scale 1 every sample falls on a pixel centre and the warp is the identity;
//! 3. **colour jitter** (factors uniform in `[1 - v, 1 + v]`), computed in `f32`, each step
//!    clamped to `[0, 255]`, rounded once at the end:
//!    brightness `x * b`; contrast `(x - m) * c + m` with `m` the mean BT.601 luma of the whole
//!    image; saturation `(x - y) * s + y` with `y` the pixel's BT.601 luma
//!    (0.299 R + 0.587 G + 0.114 B). Factors of exactly 1 leave the image unchanged.
//!
//! The generator is seeded per sample by [`sample_seed`]`(seed, epoch, index)`, so a sample's
//! augmentation depends only on those three numbers, never on batching or thread scheduling.

use anyhow::{bail, Result};

use crate::config::Augmentation;
use crate::data::import::SplitMix64;

/// The seed of sample `index` (its position in the split list) in `epoch`: a chained SplitMix64
/// hash of the three numbers.
pub fn sample_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    let a = SplitMix64::new(seed).next_u64();
    let b = SplitMix64::new(a ^ epoch as u64).next_u64();
    SplitMix64::new(b ^ index as u64).next_u64()
}

/// The random choices for one image, drawn by [`Draws::sample`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draws {
    /// Mirror left-right.
    pub flip: bool,
    /// Rotation angle in turns.
    pub turns: f64,
    /// Zoom factor.
    pub scale: f64,
    /// Brightness factor.
    pub brightness: f32,
    /// Contrast factor.
    pub contrast: f32,
    /// Saturation factor.
    pub saturation: f32,
}

impl Draws {
    /// Draws the six choices (see the module docs) for `params` from `rng`.
    pub fn sample(params: &Augmentation, rng: &mut SplitMix64) -> Draws {
        // Uniform in [-1, 1).
        let mut sym = || 2.0 * rng.unit() - 1.0;
        let flip = sym() < 0.0;
        let turns = sym() * params.rotation_turns;
        let scale = 1.0 + sym() * params.zoom;
        let brightness = (1.0 + sym() * params.brightness) as f32;
        let contrast = (1.0 + sym() * params.contrast) as f32;
        let saturation = (1.0 + sym() * params.saturation) as f32;
        Draws {
            flip: flip && params.hflip,
            turns,
            scale,
            brightness,
            contrast,
            saturation,
        }
    }
}

/// Augments `img` (`size x size` RGB, HWC) in place with the draws of `seed` (see the module docs).
pub fn augment(img: &mut [u8], size: usize, params: &Augmentation, seed: u64) -> Result<()> {
    let d = Draws::sample(params, &mut SplitMix64::new(seed));
    apply(img, size, &d)
}

/// Applies explicit draws (exposed so tests can pin each operation).
pub fn apply(img: &mut [u8], size: usize, d: &Draws) -> Result<()> {
    if img.len() != size * size * 3 {
        bail!(
            "augment: {} bytes is not a {size}x{size} RGB image ({} bytes)",
            img.len(),
            size * size * 3
        );
    }
    if !(d.scale > 0.0 && d.scale.is_finite() && d.turns.is_finite()) {
        bail!(
            "augment: zoom {} / rotation {} turns out of range",
            d.scale,
            d.turns
        );
    }
    if d.flip {
        hflip(img, size);
    }
    let warped = warp(img, size, d.turns, d.scale);
    img.copy_from_slice(&warped);
    jitter(img, d.brightness, d.contrast, d.saturation);
    Ok(())
}

/// Mirrors an `size x size` RGB image left-right.
pub fn hflip(img: &mut [u8], size: usize) {
    for row in img.chunks_exact_mut(size * 3) {
        for x in 0..size / 2 {
            let (a, b) = (x * 3, (size - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}

/// Rotation by `turns` and zoom by `scale` about the centre, bilinear, black outside.
pub fn warp(img: &[u8], size: usize, turns: f64, scale: f64) -> Vec<u8> {
    let angle = turns * std::f64::consts::TAU;
    let (sin, cos) = angle.sin_cos();
    let c = size as f64 / 2.0;
    let px = |x: isize, y: isize, ch: usize| -> f64 {
        if x < 0 || y < 0 || x >= size as isize || y >= size as isize {
            0.0
        } else {
            f64::from(img[(y as usize * size + x as usize) * 3 + ch])
        }
    };
    let mut out = vec![0u8; img.len()];
    for y in 0..size {
        for x in 0..size {
            // Output pixel centre relative to the image centre, mapped back into the source.
            let (dx, dy) = (x as f64 + 0.5 - c, y as f64 + 0.5 - c);
            let sx = (cos * dx + sin * dy) / scale + c - 0.5;
            let sy = (-sin * dx + cos * dy) / scale + c - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for ch in 0..3 {
                let top = px(x0, y0, ch) * (1.0 - fx) + px(x0 + 1, y0, ch) * fx;
                let bot = px(x0, y0 + 1, ch) * (1.0 - fx) + px(x0 + 1, y0 + 1, ch) * fx;
                let v = top * (1.0 - fy) + bot * fy;
                out[(y * size + x) * 3 + ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

fn luma(p: &[f32]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Brightness, contrast and saturation factors (1 = unchanged), in that order.
pub fn jitter(img: &mut [u8], brightness: f32, contrast: f32, saturation: f32) {
    let clamp = |v: f32| v.clamp(0.0, 255.0);
    let mut f: Vec<f32> = img
        .iter()
        .map(|&b| clamp(f32::from(b) * brightness))
        .collect();
    let n = (f.len() / 3).max(1) as f32;
    let mean = f.chunks_exact(3).map(luma).sum::<f32>() / n;
    for v in f.iter_mut() {
        *v = clamp((*v - mean) * contrast + mean);
    }
    for p in f.chunks_exact_mut(3) {
        let y = luma(p);
        for v in p.iter_mut() {
            *v = clamp((*v - y) * saturation + y);
        }
    }
    for (b, v) in img.iter_mut().zip(f) {
        *b = v.round() as u8;
    }
}
