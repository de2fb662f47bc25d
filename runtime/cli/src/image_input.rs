//! Image file -> model input: decode, kdruntime's letterbox, and (for int8 inputs) quantise.
//! Backend-agnostic: kdruntime and ONNX Runtime describe their input with an [`InputSpec`] and
//! get the same bytes.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kdruntime::letterbox::{letterbox, quantize_pixels_to_int8, Image, OutputFormat, PixelFormat};
use kdruntime::{DType, Interpreter};

use crate::config::InferenceConfig;

/// Element type of an image input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputType {
    /// Raw 0..255 pixels (the model carries the normalisation in its input quantisation).
    UInt8,
    /// Pixels normalised with the config's mean/std, then quantised with this scale and zero
    /// point.
    Int8 {
        /// Quantisation scale.
        scale: f32,
        /// Quantisation zero point.
        zero_point: i32,
    },
}

/// An image input tensor `[1, height, width, channels]` (NHWC, channels 1 or 3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputSpec {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Element type.
    pub dtype: InputType,
}

impl InputSpec {
    /// Checks an NHWC `shape` and element type; `what` names the tensor in errors.
    pub fn new(what: &str, shape: &[i64], dtype: InputType) -> Result<Self> {
        let &[1, h, w, c] = shape else {
            bail!("{what} has shape {shape:?}; an image input must be [1, H, W, C]");
        };
        if !(c == 1 || c == 3) {
            bail!("{what} has {c} channels; an image input has 1 (grey) or 3 (RGB)");
        }
        if h <= 0 || w <= 0 {
            bail!("{what} has shape {shape:?}; height and width must be positive");
        }
        if let InputType::Int8 { scale, .. } = dtype {
            if scale.is_nan() || scale <= 0.0 {
                bail!("{what} is int8 with scale {scale}; it needs a positive scale");
            }
        }
        Ok(Self {
            height: h as usize,
            width: w as usize,
            channels: c as usize,
            dtype,
        })
    }

    /// The spec of kdruntime input 0.
    pub fn of_interpreter(interp: &Interpreter<'_, '_>) -> Result<Self> {
        let info = interp.input_info(0)?;
        let what = format!("input tensor {}", info.index);
        let dtype = match info.dtype {
            DType::UInt8 => InputType::UInt8,
            DType::Int8 => InputType::Int8 {
                scale: info.scale(),
                zero_point: info.zero_point() as i32,
            },
            other => bail!(
                "{what} is {}; kdrun run handles uint8 and int8",
                other.name()
            ),
        };
        let dims: Vec<i64> = info.shape.dims().iter().map(|&d| i64::from(d)).collect();
        Self::new(&what, &dims, dtype)
    }
}

/// A letterboxed, quantised image and where the letterbox put it.
pub struct Prepared {
    /// The input tensor's bytes.
    pub bytes: Vec<u8>,
    /// Letterbox geometry as JSON (source size, scale, placement).
    pub geometry: serde_json::Value,
}

/// Decodes `path`, letterboxes it to `spec` and quantises it when the input is int8.
pub fn prepare(path: &Path, spec: &InputSpec, cfg: &InferenceConfig) -> Result<Prepared> {
    let out_format = if spec.channels == 1 {
        OutputFormat::Gray
    } else {
        OutputFormat::Rgb
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
    let mut bytes = vec![0u8; spec.height * spec.width * spec.channels];
    let p = letterbox(&src, spec.height, spec.width, out_format, &mut bytes)
        .with_context(|| path.display().to_string())?;
    if let InputType::Int8 { scale, zero_point } = spec.dtype {
        let n = cfg.normalization;
        if n.folded_into_model {
            bail!(
                "the model's input is int8, but the inference config says the normalisation \
                 is folded into the model (normalization.folded_into_model, for uint8 inputs)"
            );
        }
        quantize_pixels_to_int8(&mut bytes, n.mean, n.std, scale, zero_point as f32);
    }
    Ok(Prepared {
        bytes,
        geometry: serde_json::json!({
            "source_height": ih, "source_width": iw, "scale": p.scale(),
            "new_height": p.new_h, "new_width": p.new_w, "top": p.top, "left": p.left,
        }),
    })
}

/// Decodes `path`, letterboxes it into input 0 of `interp` and returns the geometry as JSON.
pub fn fill(
    interp: &mut Interpreter<'_, '_>,
    path: &Path,
    cfg: &InferenceConfig,
) -> Result<serde_json::Value> {
    let spec = InputSpec::of_interpreter(interp)?;
    let p = prepare(path, &spec, cfg)?;
    interp.input_mut(0)?.copy_from_slice(&p.bytes);
    Ok(p.geometry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_normalization_with_an_int8_input_is_an_error() {
        let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/raw/photos/coffee.png");
        let int8 = InputType::Int8 {
            scale: 1.0 / 128.0,
            zero_point: 0,
        };
        let spec = InputSpec::new("input 0", &[1, 8, 8, 3], int8).unwrap();
        let mut cfg = InferenceConfig::default();
        assert!(prepare(&photo, &spec, &cfg).is_ok());
        cfg.normalization.folded_into_model = true;
        let e = prepare(&photo, &spec, &cfg).err().unwrap().to_string();
        assert!(e.contains("normalization.folded_into_model"), "{e}");
        let uint8 = InputSpec::new("input 0", &[1, 8, 8, 3], InputType::UInt8).unwrap();
        assert!(prepare(&photo, &uint8, &cfg).is_ok());
    }
}
