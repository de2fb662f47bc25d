//! Decoding image files and the exact evaluation/export input.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use image::DynamicImage;
use kdruntime::letterbox::{letterbox, Image, OutputFormat, PixelFormat};

/// A decoded image: tightly packed rows of grey (1 byte per pixel) or RGB (3 bytes) pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// `height * width * format.channels()` bytes.
    pub pixels: Vec<u8>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// [`PixelFormat::Gray`] or [`PixelFormat::Rgb`].
    pub format: PixelFormat,
}

/// Decodes JPEG, PNG, BMP or PPM/PGM bytes (format sniffed from the content; `name` labels errors).
///
/// Grey images (with or without alpha, 8 or 16 bits) stay one channel, so the letterbox
/// replicates the grey level into R, G and B exactly; everything else becomes 8-bit RGB (alpha
/// dropped, as the letterbox ignores alpha; 16-bit samples scaled to 8 bits by the `image` crate).
pub fn decode_bytes(bytes: &[u8], name: &str) -> Result<Decoded> {
    let img = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("{name}: cannot read"))?
        .decode()
        .with_context(|| format!("{name}: does not decode"))?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let grey = matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    let (pixels, format) = if grey {
        (img.into_luma8().into_raw(), PixelFormat::Gray)
    } else {
        (img.into_rgb8().into_raw(), PixelFormat::Rgb)
    };
    Ok(Decoded {
        pixels,
        height,
        width,
        format,
    })
}

/// Reads and decodes an image file (see [`decode_bytes`]); errors name the path.
pub fn decode(path: &Path) -> Result<Decoded> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    decode_bytes(&bytes, &path.display().to_string())
}

/// Letterboxes a decoded image into `size x size` RGB (HWC, `size * size * 3` bytes) with
/// kdruntime's [`letterbox`], the function devices run.
pub fn letterbox_rgb(d: &Decoded, size: usize) -> Result<Vec<u8>> {
    let src = Image::packed(&d.pixels, d.height, d.width, d.format)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = vec![0u8; size * size * 3];
    letterbox(&src, size, size, OutputFormat::Rgb, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(out)
}

/// The exact model input of an image file for evaluation and export: decode, then letterbox to
/// `size x size` RGB uint8 (HWC), no augmentation. Training without augmentation, evaluation,
/// calibration and export all go through this one function.
pub fn eval_input(path: &Path, size: usize) -> Result<Vec<u8>> {
    letterbox_rgb(&decode(path)?, size).with_context(|| path.display().to_string())
}
