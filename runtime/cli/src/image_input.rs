//! Image file -> model input: decode, kdruntime's letterbox, and (for int8 inputs) quantise.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kdruntime::letterbox::{letterbox, quantize_pixels_to_int8, Image, OutputFormat, PixelFormat};
use kdruntime::{DType, Interpreter};

use crate::config::InferenceConfig;

/// Decodes `path`, letterboxes it into input 0 of `interp` and returns the geometry as JSON.
pub fn fill(
    interp: &mut Interpreter<'_, '_>,
    path: &Path,
    cfg: &InferenceConfig,
) -> Result<serde_json::Value> {
    let info = interp.input_info(0)?;
    let dims = info.shape.dims();
    let &[1, h, w, c] = dims else {
        bail!(
            "input tensor {} has shape {dims:?}; kdrun run needs [1, H, W, C]",
            info.index
        );
    };
    let out_format = match c {
        1 => OutputFormat::Gray,
        3 => OutputFormat::Rgb,
        _ => bail!(
            "input tensor {} has {c} channels; kdrun run handles 1 (grey) or 3 (RGB)",
            info.index
        ),
    };
    let decoded = image::open(path).with_context(|| format!("decoding {}", path.display()))?;
    let (pixels, format, iw, ih) = if decoded.color().has_color() {
        let rgb = decoded.to_rgb8();
        let (iw, ih) = rgb.dimensions();
        (rgb.into_raw(), PixelFormat::Rgb, iw, ih)
    } else {
        // Keep grey sources grey (one byte per pixel): the letterbox replicates them into RGB
        // exactly.
        let g = decoded.to_luma8();
        let (iw, ih) = g.dimensions();
        (g.into_raw(), PixelFormat::Gray, iw, ih)
    };
    let src = Image::packed(&pixels, ih as usize, iw as usize, format)
        .with_context(|| path.display().to_string())?;
    let (h, w) = (h as usize, w as usize);
    let mut boxed = vec![0u8; h * w * c as usize];
    let p = letterbox(&src, h, w, out_format, &mut boxed)
        .with_context(|| path.display().to_string())?;
    let input = interp.input_mut(0)?;
    match info.dtype {
        DType::UInt8 => input.copy_from_slice(&boxed),
        DType::Int8 => {
            let (scale, zp) = (info.scale(), info.zero_point() as f32);
            if scale.is_nan() || scale <= 0.0 {
                bail!("int8 input tensor {} has no positive scale", info.index);
            }
            let n = cfg.normalization;
            input.copy_from_slice(&boxed);
            quantize_pixels_to_int8(input, n.mean, n.std, scale, zp);
        }
        other => bail!(
            "input tensor {} is {}; kdrun run handles uint8 and int8",
            info.index,
            other.name()
        ),
    }
    Ok(serde_json::json!({
        "source_height": ih, "source_width": iw, "scale": p.scale(),
        "new_height": p.new_h, "new_width": p.new_w, "top": p.top, "left": p.left,
    }))
}
