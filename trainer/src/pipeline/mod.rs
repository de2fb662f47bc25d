//! The input pipeline: decode -> letterbox (kdruntime's, the one shared with every device) ->
//! augmentation (training only) -> normalisation -> batches.
//!
//! * [`decode`]: image files to pixels, and [`eval_input`], the exact non-augmented model input
//!   used by evaluation and export alike.
//! * [`augment`]: seeded geometric and colour augmentation of a letterboxed uint8 image.
//! * [`loader`]: parallel, prefetching, deterministic batches of one split.
//!
//! Pixels stay uint8 RGB (HWC, `S x S x 3`) until [`Normalization::apply`] turns them into the
//! float CHW tensor a network reads; the uint8 image is exactly what an int8 model receives on a
//! device, so the float input of a student is `(u8 - 127) / 128` of those bytes.

pub mod augment;
pub mod decode;
pub mod loader;

pub use augment::{augment, sample_seed};
pub use decode::{decode, decode_bytes, eval_input, letterbox_rgb, Decoded};
pub use loader::{Batch, Epoch, Loader, LoaderOptions};

/// Per-channel normalisation of uint8 RGB pixels: `x = (u8 - mean[c]) / std[c]`, with `mean` and
/// `std` in pixel units (0..255 scale).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// Subtracted from the channel's byte value (R, G, B).
    pub mean: [f32; 3],
    /// The difference is divided by this (R, G, B); must be > 0.
    pub std: [f32; 3],
}

impl Normalization {
    /// Students: `(x - 127) / 128`, mapping 0..255 onto about `[-0.99, 1.0]`. A uint8 input with
    /// zero point 127 and scale 1/128 represents this exactly, so the int8 export needs no
    /// rescaling of the device's letterboxed bytes.
    pub const STUDENT: Normalization = Normalization {
        mean: [127.0; 3],
        std: [128.0; 3],
    };

    /// ImageNet statistics (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225 of the 0..1 range),
    /// scaled to pixel units; the usual convention of PyTorch teachers.
    pub const IMAGENET: Normalization = Normalization {
        mean: [123.675, 116.28, 103.53],
        std: [58.395, 57.12, 57.375],
    };

    /// Normalises one HWC RGB uint8 image of `hw` pixels into CHW floats (`out.len() == 3 * hw`).
    ///
    /// Errors when the buffer sizes disagree or a `std` is not positive.
    pub fn apply(&self, hwc: &[u8], out: &mut [f32]) -> anyhow::Result<()> {
        if !hwc.len().is_multiple_of(3) || out.len() != hwc.len() {
            anyhow::bail!(
                "normalise: {} input bytes and {} output floats; need 3 * H * W of both",
                hwc.len(),
                out.len()
            );
        }
        if let Some(c) = (0..3).find(|&c| self.std[c].is_nan() || self.std[c] <= 0.0) {
            anyhow::bail!("normalise: std[{c}] = {} must be > 0", self.std[c]);
        }
        let hw = hwc.len() / 3;
        for (c, plane) in out.chunks_exact_mut(hw).enumerate() {
            let (m, s) = (self.mean[c], self.std[c]);
            for (o, px) in plane.iter_mut().zip(hwc.chunks_exact(3)) {
                *o = (f32::from(px[c]) - m) / s;
            }
        }
        Ok(())
    }
}
