//! The letterbox: the one image pre-processing function of kdedge.
//!
//! The trainer's data pipeline, the kdrun CLI, the C ABI and the firmware all call
//! [`letterbox`], so the pixels a model sees on a device are the pixels it was trained on, bit
//! for bit. Geometry and pixels are computed in integer arithmetic only (no floating point, no
//! heap, no `std`), so the result is identical on x86, aarch64 and an FPU-less Cortex-M.
//!
//! # Geometry
//!
//! A source image of `h x w` pixels goes into a target of `H x W` (usually square, `S x S`):
//!
//! * scale `s = min(H / h, W / w)` (for a square target, `s = S / max(h, w)`), kept as the exact
//!   fraction `scale_num / scale_den` (one of `H/h` or `W/w`);
//! * new size `nh = round(h * s)`, `nw = round(w * s)`, computed exactly from the fraction,
//!   rounding halves up, and at least 1 (the limiting side is exactly `H` or `W`; the other
//!   side never exceeds its target);
//! * the resized image is pasted on a black (all-zero) `H x W` canvas at
//!   `top = floor((H - nh) / 2)`, `left = floor((W - nw) / 2)` (an odd margin puts the extra
//!   row/column at the bottom/right). Nothing is ever cropped: the whole source extent maps onto
//!   the `nh x nw` rectangle.
//!
//! # Interpolation (bilinear, half-pixel centres, fixed point)
//!
//! The resize is bilinear with the pixel-centre convention of OpenCV `INTER_LINEAR` and PIL:
//! output pixel `(dy, dx)` of the `nh x nw` resized image samples the source at
//!
//! ```text
//! sy = (dy + 0.5) * h / nh - 0.5        sx = (dx + 0.5) * w / nw - 0.5
//! ```
//!
//! (per-axis ratios `h/nh` and `w/nw`, as `cv2.resize` does with an explicit output size),
//! clamped to `[0, h - 1]` and `[0, w - 1]` (edge pixels are replicated, as OpenCV's
//! `BORDER_REPLICATE`). With `y0 = floor(sy)`, `y1 = min(y0 + 1, h - 1)` and likewise for x, the
//! fractional parts are quantised to Q11 (units of 1/2048, as OpenCV's
//! `INTER_RESIZE_COEF_BITS = 11`), rounding to nearest with halves up:
//!
//! ```text
//! fy = round((sy - y0) * 2048)   fx = round((sx - x0) * 2048)     (each in 0..=2048)
//! ```
//!
//! The coordinate is the exact rational `((2d + 1) * src - new) / (2 * new)`, so `floor` and the
//! fraction are computed exactly with integer division; a rounding tie for `fy`/`fx` can only
//! occur when the resized side (`nh` or `nw`) is a multiple of 2048. Each output channel is then
//!
//! ```text
//! acc = (2048 - fy) * ((2048 - fx) * p[y0][x0] + fx * p[y0][x1])
//!     +         fy  * ((2048 - fx) * p[y1][x0] + fx * p[y1][x1])
//! out = (acc + 2^21) >> 22                 (round to nearest, halves up; acc < 2^30)
//! ```
//!
//! i.e. the exact value of the bilinear blend with Q11 weights, rounded once. This is not
//! bit-identical to OpenCV (which rounds its intermediate row sums differently). Against
//! unquantised real-valued bilinear interpolation the error is at most 0.625 (the Q11 weights
//! move the blend by at most `2 * 255 / 4096 < 0.125`, the final rounding by at most 0.5).
//!
//! Downscaling is plain bilinear without antialiasing (no area averaging), exactly like OpenCV
//! `INTER_LINEAR`: each output pixel reads only its 2x2 source neighbourhood, so at reductions
//! beyond 2x some source pixels fall between samples and fine texture can alias. The choice is
//! deliberate: it is cheap and bounded on a microcontroller (4 reads per output pixel whatever
//! the source size), and training sees exactly the same aliasing as the device.
//!
//! # Pixel formats
//!
//! Inputs are u8 `RGB`, `BGR`, `RGBA`, `BGRA` or `GRAY`, with any row stride (bytes per row,
//! at least `width * channels`; the last row need not be padded). Alpha is ignored (not
//! premultiplied). The output is the model's uint8 NHWC input for one image, `H * W * C` bytes:
//!
//! * [`OutputFormat::Rgb`] (`C = 3`, R,G,B order): colour inputs are reordered, a grey input is
//!   replicated into the three channels;
//! * [`OutputFormat::Gray`] (`C = 1`): a grey input is used as is; a colour input is first
//!   converted per source pixel to luma with the integer BT.601 formula
//!   `Y = (77 * R + 150 * G + 29 * B + 128) >> 8` (weights 0.299, 0.587, 0.114 in Q8, summing
//!   to 256, so white stays 255), and the luma plane is then interpolated as above.
//!
//! The border is 0 in every channel.

use core::fmt;

/// Number of fractional bits of the interpolation weights (Q11, as OpenCV's `INTER_RESIZE_COEF_BITS`).
pub const WEIGHT_BITS: u32 = 11;
/// `1 << WEIGHT_BITS`: the weight of a whole pixel.
const ONE: u32 = 1 << WEIGHT_BITS;
/// Largest accepted width or height (source and target); keeps all arithmetic well inside `u64`.
pub const MAX_DIM: usize = 1 << 20;
/// Columns whose source positions and weights are computed together (a small stack table).
const TILE: usize = 64;

/// Layout of the source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 3 bytes per pixel: red, green, blue.
    Rgb,
    /// 3 bytes per pixel: blue, green, red.
    Bgr,
    /// 4 bytes per pixel: red, green, blue, alpha (ignored).
    Rgba,
    /// 4 bytes per pixel: blue, green, red, alpha (ignored).
    Bgra,
    /// 1 byte per pixel: grey level.
    Gray,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub const fn channels(self) -> usize {
        match self {
            PixelFormat::Rgb | PixelFormat::Bgr => 3,
            PixelFormat::Rgba | PixelFormat::Bgra => 4,
            PixelFormat::Gray => 1,
        }
    }

    /// Byte offsets of red, green and blue inside one pixel (all 0 for grey).
    const fn rgb_offsets(self) -> [usize; 3] {
        match self {
            PixelFormat::Rgb | PixelFormat::Rgba => [0, 1, 2],
            PixelFormat::Bgr | PixelFormat::Bgra => [2, 1, 0],
            PixelFormat::Gray => [0, 0, 0],
        }
    }
}

/// Channel layout of the letterboxed output (the model's input tensor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// 3 channels, R,G,B order.
    Rgb,
    /// 1 channel (grey models); colour sources are converted with the integer BT.601 luma.
    Gray,
}

impl OutputFormat {
    /// Channels per output pixel (3 or 1).
    pub const fn channels(self) -> usize {
        match self {
            OutputFormat::Rgb => 3,
            OutputFormat::Gray => 1,
        }
    }
}

/// Why a letterbox could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LetterboxError {
    /// The source width or height is 0.
    ZeroSourceSize {
        /// Source height.
        height: usize,
        /// Source width.
        width: usize,
    },
    /// The target width or height is 0.
    ZeroTargetSize {
        /// Target height.
        height: usize,
        /// Target width.
        width: usize,
    },
    /// A width or height exceeds [`MAX_DIM`], or the output size overflows `usize`.
    TooLarge {
        /// The offending dimension.
        dim: usize,
    },
    /// The row stride is smaller than `width * channels`.
    StrideTooSmall {
        /// Given stride in bytes.
        stride: usize,
        /// Minimum stride in bytes.
        min: usize,
    },
    /// The source buffer is shorter than `(height - 1) * stride + width * channels`.
    SourceTooSmall {
        /// Given length in bytes.
        len: usize,
        /// Required length in bytes.
        needed: usize,
    },
    /// The output buffer is not exactly `H * W * C` bytes.
    OutputSizeMismatch {
        /// Given length in bytes.
        len: usize,
        /// Required length in bytes.
        expected: usize,
    },
}

impl fmt::Display for LetterboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LetterboxError::ZeroSourceSize { height, width } => {
                write!(f, "letterbox: source image is {height}x{width} (height x width); both must be at least 1")
            }
            LetterboxError::ZeroTargetSize { height, width } => {
                write!(f, "letterbox: target size is {height}x{width} (height x width); both must be at least 1")
            }
            LetterboxError::TooLarge { dim } => {
                write!(f, "letterbox: dimension {dim} exceeds the maximum {MAX_DIM} (or the output size overflows usize)")
            }
            LetterboxError::StrideTooSmall { stride, min } => write!(
                f,
                "letterbox: row stride {stride} bytes is smaller than width * channels = {min} bytes"
            ),
            LetterboxError::SourceTooSmall { len, needed } => write!(
                f,
                "letterbox: source buffer has {len} bytes but (height - 1) * stride + width * channels = {needed} bytes are needed"
            ),
            LetterboxError::OutputSizeMismatch { len, expected } => write!(
                f,
                "letterbox: output buffer has {len} bytes but height * width * channels = {expected} bytes are required"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LetterboxError {}

/// A borrowed source image: u8 pixels with an explicit row stride.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    data: &'a [u8],
    height: usize,
    width: usize,
    stride: usize,
    format: PixelFormat,
}

impl<'a> Image<'a> {
    /// Wraps `data` as a `height x width` image of `format` whose rows start `stride` bytes apart.
    ///
    /// Errors when a size is 0 or above [`MAX_DIM`], when `stride < width * channels`, or when
    /// `data` is shorter than `(height - 1) * stride + width * channels`.
    pub fn new(
        data: &'a [u8],
        height: usize,
        width: usize,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Self, LetterboxError> {
        if height == 0 || width == 0 {
            return Err(LetterboxError::ZeroSourceSize { height, width });
        }
        check_dims(height, width)?;
        let row = width * format.channels(); // < 2^23: no overflow
        if stride < row {
            return Err(LetterboxError::StrideTooSmall { stride, min: row });
        }
        let needed = (height - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(row))
            .ok_or(LetterboxError::SourceTooSmall {
                len: data.len(),
                needed: usize::MAX,
            })?;
        if data.len() < needed {
            return Err(LetterboxError::SourceTooSmall {
                len: data.len(),
                needed,
            });
        }
        Ok(Image {
            data,
            height,
            width,
            stride,
            format,
        })
    }

    /// Wraps tightly packed rows (`stride = width * channels`).
    pub fn packed(
        data: &'a [u8],
        height: usize,
        width: usize,
        format: PixelFormat,
    ) -> Result<Self, LetterboxError> {
        Self::new(data, height, width, width * format.channels(), format)
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Bytes of row `y` (exactly `width * channels` of them), or `None` when `y` is out of range.
    fn row(&self, y: usize) -> Option<&'a [u8]> {
        let start = y.checked_mul(self.stride)?;
        self.data
            .get(start..start.checked_add(self.width * self.format.channels())?)
    }
}

fn check_dims(height: usize, width: usize) -> Result<(), LetterboxError> {
    for dim in [height, width] {
        if dim > MAX_DIM {
            return Err(LetterboxError::TooLarge { dim });
        }
    }
    Ok(())
}

/// Where the resized image lies inside the target, and how it was scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LetterboxParams {
    /// Numerator of the exact scale `s = scale_num / scale_den` (a target side).
    pub scale_num: usize,
    /// Denominator of the exact scale (the matching source side).
    pub scale_den: usize,
    /// Height of the resized image, `round(h * s)`, in `1..=H`.
    pub new_h: usize,
    /// Width of the resized image, `round(w * s)`, in `1..=W`.
    pub new_w: usize,
    /// Rows of black above the image, `floor((H - new_h) / 2)`.
    pub top: usize,
    /// Columns of black left of the image, `floor((W - new_w) / 2)`.
    pub left: usize,
    /// Target height `H`.
    pub dst_h: usize,
    /// Target width `W`.
    pub dst_w: usize,
}

impl LetterboxParams {
    /// The scale `s = min(H / h, W / w)` as a float (for configuration files and reports).
    pub fn scale(&self) -> f64 {
        self.scale_num as f64 / self.scale_den as f64
    }
}

/// Computes the letterbox geometry of a `src_h x src_w` image in a `dst_h x dst_w` target.
///
/// See the module documentation for the exact definitions. Errors on zero sizes and on sizes
/// above [`MAX_DIM`].
pub fn letterbox_params(
    src_h: usize,
    src_w: usize,
    dst_h: usize,
    dst_w: usize,
) -> Result<LetterboxParams, LetterboxError> {
    if src_h == 0 || src_w == 0 {
        return Err(LetterboxError::ZeroSourceSize {
            height: src_h,
            width: src_w,
        });
    }
    if dst_h == 0 || dst_w == 0 {
        return Err(LetterboxError::ZeroTargetSize {
            height: dst_h,
            width: dst_w,
        });
    }
    check_dims(src_h, src_w)?;
    check_dims(dst_h, dst_w)?;
    let (h, w, dh, dw) = (src_h as u64, src_w as u64, dst_h as u64, dst_w as u64);
    // round(a * num / den) with halves up, at least 1, exactly.
    let scaled = |a: u64, num: u64, den: u64| ((2 * a * num + den) / (2 * den)).max(1) as usize;
    // H/h <= W/w  <=>  H*w <= W*h: the height limits the scale.
    let (scale_num, scale_den, new_h, new_w) = if dh * w <= dw * h {
        (dst_h, src_h, dst_h, scaled(w, dh, h))
    } else {
        (dst_w, src_w, scaled(h, dw, w), dst_w)
    };
    Ok(LetterboxParams {
        scale_num,
        scale_den,
        new_h,
        new_w,
        top: (dst_h - new_h) / 2,
        left: (dst_w - new_w) / 2,
        dst_h,
        dst_w,
    })
}

/// One output coordinate's source taps: `i0`, `i1 = min(i0 + 1, src - 1)` and the Q11 weight of `i1`.
#[derive(Clone, Copy, Default)]
struct Tap {
    i0: usize,
    i1: usize,
    frac: u32,
}

/// Source taps of resized coordinate `d` (`0 <= d < new`) for a `src -> new` resize.
fn tap(d: usize, src: usize, new: usize) -> Tap {
    let (d, src64, new64) = (d as u64, src as u64, new as u64);
    // Source coordinate = num / den exactly, with num = (2d + 1) * src - new, den = 2 * new.
    let den = 2 * new64;
    let num = (2 * d + 1) * src64;
    if num <= new64 {
        // Coordinate <= 0: clamp to the first pixel.
        return Tap {
            i0: 0,
            i1: 0,
            frac: 0,
        };
    }
    let num = num - new64;
    let i0 = (num / den) as usize;
    if i0 >= src - 1 {
        // Coordinate >= src - 1: clamp to the last pixel.
        return Tap {
            i0: src - 1,
            i1: src - 1,
            frac: 0,
        };
    }
    let rem = num % den;
    // round(rem / den * 2048), halves up: (2 * rem * 2048 + den) / (2 * den).
    let frac = ((2 * rem * ONE as u64 + den) / (2 * den)) as u32;
    Tap {
        i0,
        i1: i0 + 1,
        frac,
    }
}

/// Letterboxes `src` into the `dst_h x dst_w` NHWC buffer `out` (`dst_h * dst_w * C` bytes,
/// `C = out_format.channels()`), and returns the geometry used.
///
/// This is the single pre-processing function of kdedge; the module documentation defines its
/// result exactly. Errors (never panics) when a target size is 0 or above [`MAX_DIM`] or `out`
/// has the wrong length; the source was validated by [`Image::new`].
pub fn letterbox(
    src: &Image<'_>,
    dst_h: usize,
    dst_w: usize,
    out_format: OutputFormat,
    out: &mut [u8],
) -> Result<LetterboxParams, LetterboxError> {
    let p = letterbox_params(src.height, src.width, dst_h, dst_w)?;
    let oc = out_format.channels();
    let expected = dst_h
        .checked_mul(dst_w)
        .and_then(|n| n.checked_mul(oc))
        .ok_or(LetterboxError::TooLarge {
            dim: dst_h.max(dst_w),
        })?;
    if out.len() != expected {
        return Err(LetterboxError::OutputSizeMismatch {
            len: out.len(),
            expected,
        });
    }
    out.fill(0);

    let sc = src.format.channels();
    let rgb = src.format.rgb_offsets();
    let grey_src = src.format == PixelFormat::Gray;
    let out_row_bytes = dst_w * oc;
    let mut taps = [Tap::default(); TILE];

    let mut x_start = 0;
    while x_start < p.new_w {
        let x_end = (x_start + TILE).min(p.new_w);
        for (t, dx) in taps.iter_mut().zip(x_start..x_end) {
            *t = tap(dx, src.width, p.new_w);
        }
        let taps = &taps[..x_end - x_start];
        for dy in 0..p.new_h {
            let ty = tap(dy, src.height, p.new_h);
            let (Some(r0), Some(r1)) = (src.row(ty.i0), src.row(ty.i1)) else {
                // Unreachable: Image::new checked that every row lies inside the buffer.
                return Err(LetterboxError::SourceTooSmall {
                    len: src.data.len(),
                    needed: (ty.i1 + 1) * src.stride,
                });
            };
            let out_start = (p.top + dy) * out_row_bytes + (p.left + x_start) * oc;
            let Some(out_px) = out.get_mut(out_start..out_start + taps.len() * oc) else {
                // Unreachable: top + new_h <= H and left + new_w <= W.
                return Err(LetterboxError::OutputSizeMismatch {
                    len: expected,
                    expected: out_start + taps.len() * oc,
                });
            };
            let wy1 = ty.frac;
            let wy0 = ONE - wy1;
            for (t, o) in taps.iter().zip(out_px.chunks_exact_mut(oc)) {
                let wx1 = t.frac;
                let wx0 = ONE - wx1;
                // Byte offsets of the four taps' pixels inside rows r0 / r1 (x < width, so in range).
                let (a, b) = (t.i0 * sc, t.i1 * sc);
                let blend = |value: fn(&[u8], usize, [usize; 3]) -> u32| -> u8 {
                    bilinear(r0, r1, a, b, wx0, wy0, wx1, wy1, rgb, value)
                };
                match out_format {
                    OutputFormat::Rgb if grey_src => o.fill(blend(channel::<0>)),
                    OutputFormat::Rgb => {
                        if let [r, g, b] = o {
                            *r = blend(channel::<0>);
                            *g = blend(channel::<1>);
                            *b = blend(channel::<2>);
                        }
                    }
                    OutputFormat::Gray if grey_src => o.fill(blend(channel::<0>)),
                    OutputFormat::Gray => o.fill(blend(luma_at)),
                }
            }
        }
        x_start = x_end;
    }
    Ok(p)
}

/// Value of colour channel `C` (0 = red, 1 = green, 2 = blue) of the pixel at byte `i` of `row`.
#[inline(always)]
fn channel<const C: usize>(row: &[u8], i: usize, rgb: [usize; 3]) -> u32 {
    // i is x * channels with x < width and the row holds width * channels bytes: in range.
    u32::from(row[i + rgb[C]])
}

/// Luma of the pixel at byte `i` of `row`.
#[inline(always)]
fn luma_at(row: &[u8], i: usize, rgb: [usize; 3]) -> u32 {
    luma(row[i + rgb[0]], row[i + rgb[1]], row[i + rgb[2]])
}

/// The Q11 bilinear blend of one channel, rounded once (halves up); see the module docs.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bilinear(
    r0: &[u8],
    r1: &[u8],
    a: usize,
    b: usize,
    wx0: u32,
    wy0: u32,
    wx1: u32,
    wy1: u32,
    rgb: [usize; 3],
    value: fn(&[u8], usize, [usize; 3]) -> u32,
) -> u8 {
    let top = wx0 * value(r0, a, rgb) + wx1 * value(r0, b, rgb);
    let bot = wx0 * value(r1, a, rgb) + wx1 * value(r1, b, rgb);
    // acc <= 255 * 2^22 < 2^30.
    ((wy0 * top + wy1 * bot + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS)) as u8
}

/// Integer BT.601 luma: `(77 R + 150 G + 29 B + 128) >> 8`, in `0..=255`.
pub const fn luma(r: u8, g: u8, b: u8) -> u32 {
    (77 * r as u32 + 150 * g as u32 + 29 * b as u32 + 128) >> 8
}

/// Turns letterboxed 0..255 pixels into an int8 input tensor, in place, for models whose input
/// is int8 rather than uint8 (a uint8 input carries its normalisation in its own quantisation):
/// `q = clamp(round(((p - mean) / std) / scale) + zero_point, -128, 127)` in float32, rounding
/// half away from zero, stored as the int8 bit pattern. kdrun and the C ABI both call this, so
/// the two cannot drift apart.
pub fn quantize_pixels_to_int8(buf: &mut [u8], mean: f32, std: f32, scale: f32, zero_point: f32) {
    for q in buf.iter_mut() {
        let real = (f32::from(*q) - mean) / std;
        let v = crate::kernels::float_math::roundf(real / scale) + zero_point;
        *q = v.clamp(-128.0, 127.0) as i8 as u8;
    }
}
