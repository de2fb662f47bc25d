//! Letterbox tests: the fixed-point implementation against an independent f64 reference written
//! here, on the real photos of data/raw/photos (and images derived from them) in every pixel
//! format, with packed and padded rows, for square and non-square targets.

use kdruntime::letterbox::{
    letterbox, letterbox_params, Image, LetterboxError, LetterboxParams, OutputFormat, PixelFormat,
    MAX_DIM,
};
use std::path::PathBuf;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Test images

/// A source image in canonical form: row-major RGB triples (a grey image has r = g = b).
#[derive(Clone)]
struct Src {
    name: String,
    h: usize,
    w: usize,
    px: Vec<[u8; 3]>,
    grey: bool,
}

impl Src {
    fn at(&self, y: usize, x: usize) -> [u8; 3] {
        self.px[y * self.w + x]
    }

    /// Sub-image of rows y0..y0+h and columns x0..x0+w.
    fn crop(&self, name: &str, y0: usize, x0: usize, h: usize, w: usize) -> Src {
        let mut px = Vec::with_capacity(h * w);
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                px.push(self.at(y, x));
            }
        }
        Src {
            name: name.to_string(),
            h,
            w,
            px,
            grey: self.grey,
        }
    }

    /// Rotated 90 degrees clockwise (a landscape photo becomes portrait).
    fn rotate90(&self, name: &str) -> Src {
        let (h, w) = (self.w, self.h);
        let mut px = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                px.push(self.at(self.h - 1 - x, y));
            }
        }
        Src {
            name: name.to_string(),
            h,
            w,
            px,
            grey: self.grey,
        }
    }

    /// Grey version with the documented integer luma, (77 R + 150 G + 29 B + 128) / 256 floored.
    fn to_grey(&self) -> Src {
        let px = self
            .px
            .iter()
            .map(|&[r, g, b]| {
                let y = ((77 * r as u32 + 150 * g as u32 + 29 * b as u32) as f64 / 256.0 + 0.5)
                    .floor() as u8;
                [y, y, y]
            })
            .collect();
        Src {
            name: format!("{} (grey)", self.name),
            h: self.h,
            w: self.w,
            px,
            grey: true,
        }
    }

    /// Every channel raised to at least 1, so that no content pixel can be mistaken for border.
    fn no_black(&self) -> Src {
        let mut s = self.clone();
        for p in &mut s.px {
            for c in p.iter_mut() {
                *c = (*c).max(1);
            }
        }
        s
    }

    /// The bytes of this image in `format`, rows `pad` bytes longer than needed (padding and
    /// alpha are filled with junk the letterbox must ignore), the last row unpadded.
    fn encode(&self, format: PixelFormat, pad: usize) -> (Vec<u8>, usize) {
        let ch = format.channels();
        let stride = self.w * ch + pad;
        let mut buf = Vec::with_capacity(self.h * stride);
        for y in 0..self.h {
            for x in 0..self.w {
                let [r, g, b] = self.at(y, x);
                let junk = (x * 31 + y * 17) as u8;
                match format {
                    PixelFormat::Rgb => buf.extend_from_slice(&[r, g, b]),
                    PixelFormat::Bgr => buf.extend_from_slice(&[b, g, r]),
                    PixelFormat::Rgba => buf.extend_from_slice(&[r, g, b, junk]),
                    PixelFormat::Bgra => buf.extend_from_slice(&[b, g, r, junk]),
                    PixelFormat::Gray => {
                        assert!(self.grey, "encode a grey image as GRAY");
                        buf.push(r);
                    }
                }
            }
            if y + 1 < self.h {
                buf.extend((0..pad).map(|i| 0xA5 ^ i as u8));
            }
        }
        (buf, stride)
    }
}

fn photos_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/raw/photos")
}

/// Decodes data/raw/photos/`file`; a missing photo fails the test (never skips it).
fn load_photo(file: &str) -> Src {
    let path = photos_dir().join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `make setup` to fetch the test photos",
        path.display()
    );
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let px = img.pixels().map(|p| p.0).collect();
    Src {
        name: file.to_string(),
        h,
        w,
        px,
        grey: false,
    }
}

/// The colour test images: real photos and shapes derived from them.
fn cases() -> &'static [Src] {
    static CASES: OnceLock<Vec<Src>> = OnceLock::new();
    CASES.get_or_init(|| {
        let china = load_photo("china.jpg");
        let flower = load_photo("flower.jpg");
        let chelsea = load_photo("chelsea.png");
        assert_eq!(
            (china.h, china.w),
            (427, 640),
            "china.jpg is 640x427 landscape"
        );
        assert_eq!(
            (flower.h, flower.w),
            (427, 640),
            "flower.jpg is 640x427 landscape"
        );
        vec![
            china.rotate90("china.jpg rotated to portrait 640x427 (h x w)"),
            flower.crop("flower.jpg cropped square 427x427", 0, 106, 427, 427),
            flower.crop("flower.jpg 3x2", 200, 300, 3, 2),
            chelsea.crop("chelsea.png 2x3", 100, 200, 2, 3),
            china.crop("china.jpg 1x640 (one row)", 213, 0, 1, 640),
            china.crop("china.jpg 427x1 (one column)", 0, 320, 427, 1),
            chelsea.crop("chelsea.png 1x1", 150, 150, 1, 1),
            chelsea.crop(
                "chelsea.png 50x70 (smaller than most targets)",
                80,
                150,
                50,
                70,
            ),
            chelsea.crop("chelsea.png 96x96 (same as a target)", 50, 120, 96, 96),
            china,
            flower,
            chelsea,
        ]
    })
}

const TARGETS: [(usize, usize); 5] = [(28, 28), (96, 96), (224, 224), (96, 160), (160, 96)];
const FORMATS: [PixelFormat; 5] = [
    PixelFormat::Rgb,
    PixelFormat::Bgr,
    PixelFormat::Rgba,
    PixelFormat::Bgra,
    PixelFormat::Gray,
];

// ---------------------------------------------------------------------------------------------
// The independent reference, in plain f64: loops over the whole canvas, maps each canvas pixel
// back into the source, and evaluates the documented convention with real numbers.

struct RefGeometry {
    nh: usize,
    nw: usize,
    top: usize,
    left: usize,
}

fn ref_geometry(h: usize, w: usize, dh: usize, dw: usize) -> RefGeometry {
    let s = f64::min(dh as f64 / h as f64, dw as f64 / w as f64);
    // round(side * s), halves up. The product of integers divided once is correctly rounded, so
    // an exact half (e.g. 4.5) stays exact and f64::round (halves away from zero) rounds it up.
    let side = |a: usize| -> usize {
        let v = if s == dh as f64 / h as f64 {
            (a * dh) as f64 / h as f64
        } else {
            (a * dw) as f64 / w as f64
        };
        (v.round() as usize).max(1)
    };
    let (nh, nw) = (side(h), side(w));
    RefGeometry {
        nh,
        nw,
        top: ((dh - nh) as f64 / 2.0).floor() as usize,
        left: ((dw - nw) as f64 / 2.0).floor() as usize,
    }
}

/// Source taps of one resized coordinate: (i0, i1, weight of i1). With `quantise`, the weight
/// is rounded to a multiple of 1/2048 as the convention says.
fn ref_taps(d: usize, src: usize, new: usize, quantise: bool) -> (usize, usize, f64) {
    let c = ((d as f64 + 0.5) * (src as f64 / new as f64) - 0.5).clamp(0.0, (src - 1) as f64);
    let i0 = c.floor() as usize;
    let i1 = (i0 + 1).min(src - 1);
    let f = c - i0 as f64;
    let f = if quantise {
        (f * 2048.0 + 0.5).floor() / 2048.0
    } else {
        f
    };
    (i0, i1, f)
}

/// Channel `c` of the output for source pixel `p` (before interpolation).
fn ref_channel(p: [u8; 3], c: usize, out_channels: usize) -> f64 {
    if out_channels == 1 {
        ((0.30078125 * p[0] as f64 + 0.5859375 * p[1] as f64 + 0.11328125 * p[2] as f64) + 0.5)
            .floor()
    } else {
        p[c] as f64
    }
}

/// The letterboxed canvas as real numbers (no final rounding), border included.
fn reference_real(
    src: &Src,
    dh: usize,
    dw: usize,
    out_channels: usize,
    quantise: bool,
) -> Vec<f64> {
    let g = ref_geometry(src.h, src.w, dh, dw);
    let mut out = vec![0.0; dh * dw * out_channels];
    for y in 0..dh {
        for x in 0..dw {
            let inside = y >= g.top && y < g.top + g.nh && x >= g.left && x < g.left + g.nw;
            if !inside {
                continue;
            }
            let (y0, y1, fy) = ref_taps(y - g.top, src.h, g.nh, quantise);
            let (x0, x1, fx) = ref_taps(x - g.left, src.w, g.nw, quantise);
            for c in 0..out_channels {
                let v = |yy, xx| ref_channel(src.at(yy, xx), c, out_channels);
                out[(y * dw + x) * out_channels + c] = (1.0 - fy) * (1.0 - fx) * v(y0, x0)
                    + (1.0 - fy) * fx * v(y0, x1)
                    + fy * (1.0 - fx) * v(y1, x0)
                    + fy * fx * v(y1, x1);
            }
        }
    }
    out
}

/// The reference output: the Q11-weight blend rounded to nearest, halves up. With 11-bit weights
/// every term is a dyadic rational with at most 22 fractional bits, so f64 holds it exactly.
fn reference(src: &Src, dh: usize, dw: usize, out_channels: usize) -> Vec<u8> {
    reference_real(src, dh, dw, out_channels, true)
        .into_iter()
        .map(|v| (v + 0.5).floor() as u8)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn run(
    src: &Src,
    format: PixelFormat,
    pad: usize,
    dh: usize,
    dw: usize,
    out: OutputFormat,
) -> Vec<u8> {
    let (buf, stride) = src.encode(format, pad);
    let img = Image::new(&buf, src.h, src.w, stride, format)
        .unwrap_or_else(|e| panic!("{}: {e}", src.name));
    let mut dst = vec![0xEE; dh * dw * out.channels()];
    let p = letterbox(&img, dh, dw, out, &mut dst).unwrap_or_else(|e| panic!("{}: {e}", src.name));
    assert_eq!(p, letterbox_params(src.h, src.w, dh, dw).unwrap());
    dst
}

fn assert_same(got: &[u8], want: &[u8], what: &str, dw: usize, ch: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let differing = got.iter().zip(want).filter(|(a, b)| a != b).count();
        panic!(
            "{what}: {differing} bytes differ; first at (y {}, x {}, c {}): got {}, reference {}",
            i / ch / dw,
            i / ch % dw,
            i % ch,
            got[i],
            want[i]
        );
    }
}

/// Runs every pixel format and both strides of one colour image against the reference.
fn check_all_formats(src: &Src) {
    let grey = src.to_grey();
    for &(dh, dw) in &TARGETS {
        for out in [OutputFormat::Rgb, OutputFormat::Gray] {
            let oc = out.channels();
            let want_colour = reference(src, dh, dw, oc);
            let want_grey = reference(&grey, dh, dw, oc);
            for format in FORMATS {
                let (image, want) = if format == PixelFormat::Gray {
                    (&grey, &want_grey)
                } else {
                    (src, &want_colour)
                };
                for pad in [0, 5] {
                    let got = run(image, format, pad, dh, dw, out);
                    let what = format!(
                        "{} as {format:?} (row padding {pad}) -> {dh}x{dw} {out:?}",
                        image.name
                    );
                    assert_same(&got, want, &what, dw, oc);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Equality with the reference

#[test]
fn landscape_photos_match_reference() {
    for src in cases()
        .iter()
        .filter(|s| s.name == "china.jpg" || s.name == "flower.jpg")
    {
        check_all_formats(src);
    }
}

#[test]
fn portrait_square_and_other_photos_match_reference() {
    for src in cases().iter().filter(|s| {
        s.name.starts_with("china.jpg rotated")
            || s.name.starts_with("flower.jpg cropped square")
            || s.name == "chelsea.png"
            || s.name.contains("same as a target")
    }) {
        check_all_formats(src);
    }
}

#[test]
fn tiny_thin_and_small_images_match_reference() {
    let small = |s: &&Src| {
        s.name.contains("3x2")
            || s.name.contains("2x3")
            || s.name.contains("1x1")
            || s.name.contains("one row")
            || s.name.contains("one column")
            || s.name.contains("smaller than")
    };
    let picked: Vec<&Src> = cases().iter().filter(small).collect();
    assert_eq!(picked.len(), 6);
    for src in picked {
        check_all_formats(src);
    }
}

#[test]
fn the_other_photos_decode_and_match_reference_in_rgb() {
    for file in ["astronaut.png", "coffee.png", "rocket.jpg", "retina.jpg"] {
        let src = load_photo(file);
        for &(dh, dw) in &[(224, 224), (96, 160)] {
            let got = run(&src, PixelFormat::Rgb, 0, dh, dw, OutputFormat::Rgb);
            assert_same(&got, &reference(&src, dh, dw, 3), file, dw, 3);
        }
    }
}

#[test]
fn within_0_625_of_unquantised_bilinear() {
    // The Q11 weights move each weight by at most 1/4096, so the blend by at most
    // 255 * 2 / 4096 < 0.125; the final rounding adds at most 0.5.
    for src in cases() {
        for &(dh, dw) in &TARGETS {
            for out in [OutputFormat::Rgb, OutputFormat::Gray] {
                let got = run(src, PixelFormat::Rgb, 0, dh, dw, out);
                let real = reference_real(src, dh, dw, out.channels(), false);
                let worst = got
                    .iter()
                    .zip(&real)
                    .map(|(&g, &r)| (g as f64 - r).abs())
                    .fold(0.0, f64::max);
                assert!(
                    worst <= 0.625,
                    "{} -> {dh}x{dw} {out:?}: off by {worst}",
                    src.name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Geometry: black border, centring, nothing cropped

#[test]
fn border_is_black_image_is_centred_and_nothing_is_cropped() {
    for src in cases() {
        let src = src.no_black();
        for &(dh, dw) in &TARGETS {
            let p = letterbox_params(src.h, src.w, dh, dw).unwrap();
            let got = run(&src, PixelFormat::Bgr, 3, dh, dw, OutputFormat::Rgb);
            // Bounding box of non-black pixels.
            let (mut y_min, mut y_max, mut x_min, mut x_max) = (usize::MAX, 0, usize::MAX, 0);
            for y in 0..dh {
                for x in 0..dw {
                    if got[(y * dw + x) * 3..][..3].iter().any(|&c| c != 0) {
                        y_min = y_min.min(y);
                        y_max = y_max.max(y);
                        x_min = x_min.min(x);
                        x_max = x_max.max(x);
                    }
                }
            }
            let what = format!("{} -> {dh}x{dw}", src.name);
            // Every pixel inside the placed rectangle is content (no channel was 0 in the
            // source), every pixel outside is black: the bounding box is exactly the rectangle.
            assert_eq!(
                (y_min, y_max + 1, x_min, x_max + 1),
                (p.top, p.top + p.new_h, p.left, p.left + p.new_w),
                "{what}: content bounding box"
            );
            // Centred: the two margins of each axis differ by at most one (the extra one below/right).
            let (bottom, right) = (dh - p.top - p.new_h, dw - p.left - p.new_w);
            assert!(
                bottom == p.top || bottom == p.top + 1,
                "{what}: vertical centring"
            );
            assert!(
                right == p.left || right == p.left + 1,
                "{what}: horizontal centring"
            );
            // Not cropped: one side fills the target, neither exceeds it, and the aspect ratio is
            // kept to within the rounding of one pixel (|new - side * s| <= 1/2 on each side).
            assert!(
                p.new_h == dh || p.new_w == dw,
                "{what}: no side fills the target"
            );
            let s = f64::min(dh as f64 / src.h as f64, dw as f64 / src.w as f64);
            assert!(
                (p.new_h as f64 - src.h as f64 * s).abs() <= 0.5 || p.new_h == 1,
                "{what}"
            );
            assert!(
                (p.new_w as f64 - src.w as f64 * s).abs() <= 0.5 || p.new_w == 1,
                "{what}"
            );
        }
    }
}

#[test]
fn corners_of_the_output_come_from_the_corners_of_the_source() {
    // Four flat quadrants: the four corners of the placed image must show the four colours,
    // so nothing was cut from any side and nothing was mirrored or transposed.
    let (h, w) = (40, 64);
    let colours = [[200, 10, 10], [10, 200, 10], [10, 10, 200], [200, 200, 200]];
    let px = (0..h * w)
        .map(|i| colours[(i / w >= h / 2) as usize * 2 + (i % w >= w / 2) as usize])
        .collect();
    let src = Src {
        name: "quadrants".into(),
        h,
        w,
        px,
        grey: false,
    };
    for &(dh, dw) in &TARGETS {
        let p = letterbox_params(h, w, dh, dw).unwrap();
        let got = run(&src, PixelFormat::Rgba, 0, dh, dw, OutputFormat::Rgb);
        let at =
            |y: usize, x: usize| -> [u8; 3] { got[(y * dw + x) * 3..][..3].try_into().unwrap() };
        let (t, l, b, r) = (p.top, p.left, p.top + p.new_h - 1, p.left + p.new_w - 1);
        assert_eq!(
            [at(t, l), at(t, r), at(b, l), at(b, r)],
            colours,
            "{dh}x{dw}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-computed values

#[test]
fn params_hand_computed() {
    let p = |h, w, dh, dw| letterbox_params(h, w, dh, dw).unwrap();
    // 640x427 landscape into 224: s = 224/640 = 0.35, 427 * 0.35 = 149.45 -> 149, top 37.
    assert_eq!(
        p(427, 640, 224, 224),
        LetterboxParams {
            scale_num: 224,
            scale_den: 640,
            new_h: 149,
            new_w: 224,
            top: 37,
            left: 0,
            dst_h: 224,
            dst_w: 224
        }
    );
    assert_eq!(p(427, 640, 224, 224).scale(), 0.35);
    // Portrait: 427 * 96/640 = 64.05 -> 64 wide, left (96 - 64) / 2 = 16.
    let q = p(640, 427, 96, 96);
    assert_eq!((q.new_h, q.new_w, q.top, q.left), (96, 64, 0, 16));
    // 640x427 into 28: 427 * 28/640 = 18.68 -> 19, top floor(9 / 2) = 4.
    let q = p(427, 640, 28, 28);
    assert_eq!((q.new_h, q.new_w, q.top, q.left), (19, 28, 4, 0));
    // Exact half rounds up: 1x2 into 3: 1 * 1.5 = 1.5 -> 2, top floor(1 / 2) = 0.
    let q = p(1, 2, 3, 3);
    assert_eq!(
        (q.new_h, q.new_w, q.top, q.left, q.scale_num, q.scale_den),
        (2, 3, 0, 0, 3, 2)
    );
    // 3x7 (h x w) into 7: scale 7/7 = 1, unchanged, top floor(4 / 2) = 2.
    let q = p(3, 7, 7, 7);
    assert_eq!((q.new_h, q.new_w, q.top, q.left), (3, 7, 2, 0));
    // Very thin: 1x1000 into 28 -> 0.028 rounds to 0, kept at 1; top floor(27 / 2) = 13.
    let q = p(1, 1000, 28, 28);
    assert_eq!((q.new_h, q.new_w, q.top, q.left), (1, 28, 13, 0));
    // Non-square target 96 x 160 for 427x640: 96/427 < 160/640, so s = 96/427;
    // 640 * 96 / 427 = 143.89 -> 144, left (160 - 144) / 2 = 8.
    let q = p(427, 640, 96, 160);
    assert_eq!(
        (q.scale_num, q.scale_den, q.new_h, q.new_w, q.top, q.left),
        (96, 427, 96, 144, 0, 8)
    );
    // And 160 x 96: s = 96/640 = 0.15, 427 * 0.15 = 64.05 -> 64, top (160 - 64) / 2 = 48.
    let q = p(427, 640, 160, 96);
    assert_eq!(
        (q.scale_num, q.scale_den, q.new_h, q.new_w, q.top, q.left),
        (96, 640, 64, 96, 48, 0)
    );
}

#[test]
fn pixels_hand_computed() {
    // A 1x2 grey image [0, 255] into 2x4 (s = 2, 2x4 resized, no border). Source x of output
    // column dx is (dx + 0.5) * 2/4 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped 0, 0.25, 0.75, 1:
    // 0, 255 * 0.25 = 63.75 -> 64, 255 * 0.75 = 191.25 -> 191, 255. Both rows sample row 0.
    let img = Image::packed(&[0, 255], 1, 2, PixelFormat::Gray).unwrap();
    let mut out = [0u8; 8];
    letterbox(&img, 2, 4, OutputFormat::Gray, &mut out).unwrap();
    assert_eq!(out, [0, 64, 191, 255, 0, 64, 191, 255]);

    // The same row in RGB output replicates the grey level.
    let mut out = [0u8; 24];
    letterbox(&img, 2, 4, OutputFormat::Rgb, &mut out).unwrap();
    assert_eq!(
        &out[..12],
        &[0, 0, 0, 64, 64, 64, 191, 191, 191, 255, 255, 255]
    );

    // Downscale 2x2 -> 1x1: the sample point is the centre (0.5, 0.5), weights 1/4 each:
    // (10 + 20 + 30 + 41) / 4 = 25.25 -> 25; (10 + 20 + 30 + 42) / 4 = 25.5 -> 26 (halves up).
    for (last, want) in [(41, 25), (42, 26)] {
        let px = [10, 20, 30, last];
        let img = Image::packed(&px, 2, 2, PixelFormat::Gray).unwrap();
        let mut out = [0u8; 1];
        letterbox(&img, 1, 1, OutputFormat::Gray, &mut out).unwrap();
        assert_eq!(out, [want]);
    }

    // Luma of pure colours: (77 * 255 + 128) >> 8 = 77, (150 * 255 + 128) >> 8 = 149,
    // (29 * 255 + 128) >> 8 = 29, and white stays 255. BGR input, 1x4 -> 1x4 (identity).
    let bgr = [0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255];
    let img = Image::packed(&bgr, 1, 4, PixelFormat::Bgr).unwrap();
    let mut out = [0u8; 4];
    letterbox(&img, 1, 4, OutputFormat::Gray, &mut out).unwrap();
    assert_eq!(out, [77, 149, 29, 255]);
    let mut out = [0u8; 12];
    letterbox(&img, 1, 4, OutputFormat::Rgb, &mut out).unwrap();
    assert_eq!(out, [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);

    // 1x1 into 3x5: s = min(3, 5) = 3, the pixel becomes a 3x3 block at left 1.
    let img = Image::packed(&[9, 8, 7, 6], 1, 1, PixelFormat::Rgba).unwrap();
    let mut out = [0u8; 15];
    letterbox(&img, 3, 5, OutputFormat::Gray, &mut out).unwrap();
    let y = ((77 * 9 + 150 * 8 + 29 * 7 + 128) >> 8) as u8; // 8
    assert_eq!(y, 8);
    assert_eq!(out, [0, y, y, y, 0, 0, y, y, y, 0, 0, y, y, y, 0]);
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn invalid_arguments_are_errors_not_panics() {
    let buf = [0u8; 64];
    assert_eq!(
        Image::new(&buf, 0, 4, 12, PixelFormat::Rgb).unwrap_err(),
        LetterboxError::ZeroSourceSize {
            height: 0,
            width: 4
        }
    );
    assert_eq!(
        Image::new(&buf, 4, 0, 12, PixelFormat::Rgb).unwrap_err(),
        LetterboxError::ZeroSourceSize {
            height: 4,
            width: 0
        }
    );
    assert_eq!(
        Image::new(&buf, 2, 4, 11, PixelFormat::Rgb).unwrap_err(),
        LetterboxError::StrideTooSmall {
            stride: 11,
            min: 12
        }
    );
    // 3 rows of stride 20, last unpadded: 2 * 20 + 16 = 56 bytes needed for RGBA width 4.
    assert!(Image::new(&buf[..56], 3, 4, 20, PixelFormat::Rgba).is_ok());
    assert_eq!(
        Image::new(&buf[..55], 3, 4, 20, PixelFormat::Rgba).unwrap_err(),
        LetterboxError::SourceTooSmall {
            len: 55,
            needed: 56
        }
    );
    assert_eq!(
        Image::new(&buf, 1, MAX_DIM + 1, usize::MAX, PixelFormat::Gray).unwrap_err(),
        LetterboxError::TooLarge { dim: MAX_DIM + 1 }
    );
    assert_eq!(
        Image::new(&buf, usize::MAX, 1, usize::MAX, PixelFormat::Gray).unwrap_err(),
        LetterboxError::TooLarge { dim: usize::MAX }
    );

    let img = Image::packed(&buf[..12], 2, 2, PixelFormat::Rgb).unwrap();
    let mut out = [0u8; 27];
    assert_eq!(
        letterbox(&img, 0, 3, OutputFormat::Rgb, &mut out).unwrap_err(),
        LetterboxError::ZeroTargetSize {
            height: 0,
            width: 3
        }
    );
    assert_eq!(
        letterbox(&img, 3, 3, OutputFormat::Rgb, &mut out[..26]).unwrap_err(),
        LetterboxError::OutputSizeMismatch {
            len: 26,
            expected: 27
        }
    );
    assert_eq!(
        letterbox(&img, 3, 3, OutputFormat::Gray, &mut out).unwrap_err(),
        LetterboxError::OutputSizeMismatch {
            len: 27,
            expected: 9
        }
    );
    assert!(letterbox(&img, 3, 3, OutputFormat::Rgb, &mut out).is_ok());
    assert_eq!(
        letterbox_params(0, 1, 2, 2).unwrap_err(),
        LetterboxError::ZeroSourceSize {
            height: 0,
            width: 1
        }
    );
    assert_eq!(
        letterbox_params(1, 1, 2, MAX_DIM + 1).unwrap_err(),
        LetterboxError::TooLarge { dim: MAX_DIM + 1 }
    );

    // Messages name the problem and the numbers.
    let msg = LetterboxError::StrideTooSmall {
        stride: 11,
        min: 12,
    }
    .to_string();
    assert!(msg.contains("stride 11") && msg.contains("12"), "{msg}");
    let msg = LetterboxError::OutputSizeMismatch {
        len: 26,
        expected: 27,
    }
    .to_string();
    assert!(msg.contains("26") && msg.contains("27"), "{msg}");
    let msg = LetterboxError::ZeroTargetSize {
        height: 0,
        width: 3,
    }
    .to_string();
    assert!(msg.contains("target size is 0x3"), "{msg}");
}
