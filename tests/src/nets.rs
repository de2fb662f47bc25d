//! Whole full-integer networks built with the kdruntime writer: MobileNetV2 and
//! EfficientNet-Lite with random (seeded) weights and calibrated activation quantisation.
//!
//! They serve the runtime's whole-network parity tests, the benchmarks and the demo. The
//! topology is the real one (layer for layer what TFLite's converter emits for the Keras /
//! TF-slim models, minus the training-only parts); only the weights are random.
//!
//! # Quantisation, as TFLite's post-training full-integer converter does it
//!
//! * Model input: uint8 `[1,R,R,3]`, scale 1/128, zero point 128 (real value `(p - 128) / 128`,
//!   the usual MobileNet normalisation), then QUANTIZE to int8 with the same scale, zero point 0.
//! * Weights: per-channel symmetric int8 (`scale[c] = max|w[c]| / 127`, zero point 0,
//!   `quantized_dimension` 0 for CONV_2D / FULLY_CONNECTED, 3 for DEPTHWISE_CONV_2D's
//!   `[1,KH,KW,C]`). The float network's weights are *defined* as the dequantised int8 values
//!   (random weights are drawn He-normal, then rounded to that grid), so weight quantisation is
//!   lossless and the float-vs-int8 difference measures activation quantisation only.
//! * Biases: int32, scale `input_scale * weight_scale[c]`, zero point 0; their real values are
//!   random like folded batch-norm shifts (normal, std 0.1).
//! * Activations: per-tensor asymmetric int8 from the min/max calibrator (TFLite's default):
//!   the range of every activation tensor over the calibration images, widened to include 0,
//!   `scale = (max - min) / 255`, `zero_point = round(-128 - min / scale)`. Fused ReLU6 outputs
//!   are observed after the clamp, so their range lies inside [0, 6]; a residual ADD's output
//!   gets its own range; PAD keeps its input's parameters (TFLite requires it); SOFTMAX's output
//!   is the fixed 1/256, -128.
//!
//! # Calibration
//!
//! A float forward pass in plain Rust (NHWC, f32, same padding arithmetic as TFLite) runs the
//! network on two real photos from `data/raw/photos`, letterboxed to the model's resolution with
//! [`kdruntime::letterbox::letterbox`]: the network's own input photo ([`Options::photo`],
//! `chelsea.png` by default) and `coffee.png`. The same pass gives the float logits of the input
//! photo ([`Net::float_logits`]), the independent float reference the int8 outputs are compared
//! with. (The crate is built with `opt-level = 3` even in test builds, see the workspace
//! `Cargo.toml`, so MobileNetV2-1.0 at 224x224, 300 MMAC, calibrates in well under a second.)

use std::path::Path;

use kdruntime::letterbox::{letterbox, Image, OutputFormat, PixelFormat};
use kdruntime::tflite::writer::{
    Activation, DType, ModelBuilder, Op, Padding, Quant, TensorId, TensorSpec,
};

use crate::rng::Rng;

/// Scale of the uint8 input (and of the int8 tensor QUANTIZE makes of it).
pub const INPUT_SCALE: f32 = 1.0 / 128.0;
/// Zero point of the uint8 input.
pub const INPUT_ZERO_POINT: i32 = 128;
/// The photo every calibration uses besides the network's own input photo.
pub const SECOND_CALIBRATION_PHOTO: &str = "coffee.png";

/// A built network.
#[derive(Clone, Debug)]
pub struct Net {
    /// Name, e.g. `mobilenet_v2_0.35_96`, `mobilenet_v2_1.0_224`, `efficientnet_lite0_224`
    /// (with `_pad` / `_softmax` suffixes for the variants).
    pub name: String,
    /// The `.tflite` flatbuffer.
    pub model: Vec<u8>,
    /// The input: a real photo letterboxed to `[1,R,R,3]` uint8 RGB.
    pub input: Vec<u8>,
    /// The photo `input` was made from (a file name under `data/raw/photos`).
    pub photo: String,
    /// Input resolution R.
    pub resolution: usize,
    /// Number of classes.
    pub classes: usize,
    /// Multiply-accumulates of one inference (CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED;
    /// the element-wise ADD, MEAN and SOFTMAX are not counted, as in the papers' figures).
    pub macs: u64,
    /// Parameters: weights plus biases (batch norm folded).
    pub params: u64,
    /// Logits of the float network on `input` (the calibration forward pass).
    pub float_logits: Vec<f32>,
    /// Scale and zero point of the int8 logits tensor (FULLY_CONNECTED's output).
    pub logits_quant: (f32, i32),
    /// Whether the model ends with SOFTMAX (its output is then int8 probabilities, scale 1/256,
    /// zero point -128) or outputs the int8 logits.
    pub softmax: bool,
    /// Operators in the model.
    pub op_count: usize,
}

impl Net {
    /// Index of the largest float logit.
    pub fn float_top1(&self) -> usize {
        argmax(&self.float_logits)
    }

    /// The float network's softmax probabilities on `input`.
    pub fn float_probs(&self) -> Vec<f32> {
        softmax(&self.float_logits)
    }

    /// Dequantises the model's int8 output bytes (logits, or probabilities with
    /// [`Net::softmax`]).
    pub fn dequantize_output(&self, out: &[u8]) -> Vec<f32> {
        let (scale, zp) = if self.softmax {
            (1.0 / 256.0, -128)
        } else {
            self.logits_quant
        };
        out.iter()
            .map(|&b| scale * (i32::from(b as i8) - zp) as f32)
            .collect()
    }
}

/// Build options shared by both families.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// End with SOFTMAX (int8 probabilities) instead of outputting the logits.
    pub softmax: bool,
    /// Emit stride-2 convolutions as an explicit PAD followed by a VALID convolution (as
    /// TFLite's converter does for Keras models with `ZeroPadding2D`) instead of SAME padding.
    /// The padding amounts equal SAME's, so the outputs are identical.
    pub explicit_pad: bool,
    /// The input photo (file name under `data/raw/photos`).
    pub photo: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            softmax: false,
            explicit_pad: false,
            photo: "chelsea.png".to_string(),
        }
    }
}

/// MobileNetV2 with width multiplier `alpha` at `resolution`, default [`Options`] (logits out,
/// SAME padding, `chelsea.png`).
///
/// # Panics
/// When the photos cannot be read or the model cannot be written (see
/// [`mobilenet_v2_with`] for the fallible form).
pub fn mobilenet_v2(alpha: f32, resolution: usize, classes: usize, seed: u64) -> Net {
    mobilenet_v2_with(alpha, resolution, classes, seed, &Options::default())
        .unwrap_or_else(|e| panic!("building MobileNetV2-{alpha} at {resolution}: {e}"))
}

/// EfficientNet-Lite`variant` (0 or 1) at `resolution`, default [`Options`].
///
/// # Panics
/// When `variant` is not 0 or 1, the photos cannot be read or the model cannot be written (see
/// [`efficientnet_lite_with`] for the fallible form).
pub fn efficientnet_lite(variant: u32, resolution: usize, classes: usize, seed: u64) -> Net {
    efficientnet_lite_with(variant, resolution, classes, seed, &Options::default())
        .unwrap_or_else(|e| panic!("building EfficientNet-Lite{variant} at {resolution}: {e}"))
}

/// `_make_divisible` of the MobileNetV2 paper's code (TF-slim / Keras): `v` rounded to the
/// nearest multiple of `divisor` (at least `divisor`), bumped up once if that lost over 10%.
pub fn make_divisible(v: f32, divisor: usize) -> usize {
    let d = divisor as f32;
    let mut new_v = (((v + d / 2.0) / d).floor() * d).max(d);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}

/// MobileNetV2's inverted-residual settings `(expansion t, channels c, repeats n, stride s)`.
pub const MOBILENET_V2_BLOCKS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// MobileNetV2 with explicit [`Options`]: uint8 input -> QUANTIZE -> 3x3/2 conv
/// (`make_divisible(32 alpha, 8)`) ReLU6 -> 17 inverted residual blocks -> 1x1 conv to
/// `max(1280, make_divisible(1280 alpha, 8))` ReLU6 -> MEAN over H,W -> FULLY_CONNECTED ->
/// optional SOFTMAX.
pub fn mobilenet_v2_with(
    alpha: f32,
    resolution: usize,
    classes: usize,
    seed: u64,
    opts: &Options,
) -> Result<Net, String> {
    if !(alpha > 0.0 && alpha.is_finite()) {
        return Err(format!("width multiplier {alpha} must be positive"));
    }
    let mut g = Graph::new(resolution, seed, opts.explicit_pad)?;
    let stem_c = make_divisible(32.0 * alpha, 8);
    let mut x = g.conv("stem", g.input, stem_c, 3, 2, true);
    let mut c = stem_c;
    let mut block = 0;
    for &(t, ch, n, s) in &MOBILENET_V2_BLOCKS {
        let out_c = make_divisible(ch as f32 * alpha, 8);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            x = g.mbconv(&format!("block{block}"), x, c, out_c, t, 3, stride);
            c = out_c;
            block += 1;
        }
    }
    let head_c = if alpha > 1.0 {
        make_divisible(1280.0 * alpha, 8)
    } else {
        1280
    };
    x = g.conv("head", x, head_c, 1, 1, true);
    let name = format!("mobilenet_v2_{alpha:?}_{resolution}");
    g.finish(name, x, classes, opts)
}

/// The demo's network (`make demo`, and the benchmark's "demo model" row until the distilled
/// student is exported): MobileNetV2-0.35 at 96x96 with `classes` outputs and a SOFTMAX, seed 7,
/// random weights calibrated on real photos.
pub fn demo_model(classes: usize) -> Result<Net, String> {
    let opts = Options {
        softmax: true,
        ..Options::default()
    };
    mobilenet_v2_with(0.35, 96, classes, 7, &opts)
}

/// EfficientNet-B0's block table `(repeats, kernel, stride, expansion, output channels)`
/// (input channels follow from the previous stage; the stem has 32).
pub const EFFICIENTNET_B0_BLOCKS: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// Repeats of each EfficientNet-Lite stage: `ceil(depth * repeats)` (the reference
/// `round_repeats`), except the first and last stage which Lite keeps fixed (`fix_head_stem`).
pub fn efficientnet_lite_repeats(variant: u32) -> Result<[usize; 7], String> {
    let depth = match variant {
        0 => 1.0f32,
        1 => 1.1,
        v => return Err(format!("EfficientNet-Lite{v} is not supported (0 or 1)")),
    };
    let mut r = [0; 7];
    for (i, (&(n, ..), out)) in EFFICIENTNET_B0_BLOCKS.iter().zip(&mut r).enumerate() {
        *out = if i == 0 || i == 6 {
            n
        } else {
            (depth * n as f32).ceil() as usize
        };
    }
    Ok(r)
}

/// EfficientNet-Lite with explicit [`Options`]: no squeeze-excite, ReLU6 everywhere, stem 32
/// and head 1280 fixed, MBConv blocks of the B0 table (width 1.0 for Lite0 and Lite1, depth 1.0
/// and 1.1).
pub fn efficientnet_lite_with(
    variant: u32,
    resolution: usize,
    classes: usize,
    seed: u64,
    opts: &Options,
) -> Result<Net, String> {
    let repeats = efficientnet_lite_repeats(variant)?;
    let mut g = Graph::new(resolution, seed, opts.explicit_pad)?;
    let mut x = g.conv("stem", g.input, 32, 3, 2, true);
    let mut c = 32;
    let mut block = 0;
    for (&(_, k, s, t, out_c), &n) in EFFICIENTNET_B0_BLOCKS.iter().zip(&repeats) {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            x = g.mbconv(&format!("block{block}"), x, c, out_c, t, k, stride);
            c = out_c;
            block += 1;
        }
    }
    x = g.conv("head", x, 1280, 1, 1, true);
    let name = format!("efficientnet_lite{variant}_{resolution}");
    g.finish(name, x, classes, opts)
}

// ---------------------------------------------------------------------------------------------
// The float graph: built layer by layer, run for calibration, then written as int8.

/// An activation tensor of the float graph (batch 1, NHWC; `flat` ones are `[1, c]`).
struct Tensor {
    name: String,
    h: usize,
    w: usize,
    c: usize,
    flat: bool,
}

/// Per-channel int8 weights with their float (dequantised) values in compute layout.
struct Weights {
    /// Values in TFLite's layout (`[O,KH,KW,I]`, `[1,KH,KW,C]` or `[O,I]`).
    q: Vec<i8>,
    /// Per-output-channel scales.
    scale: Vec<f32>,
    /// Real bias values.
    bias: Vec<f32>,
    /// Dequantised weights in the float pass's layout (`[KH,KW,I,O]`, `[KH,KW,C]`, `[I,O]`).
    f: Vec<f32>,
}

enum Node {
    /// Explicit zero padding (top, bottom, left, right).
    Pad {
        src: usize,
        dst: usize,
        pads: [usize; 4],
    },
    /// CONV_2D (`depthwise == false`) or DEPTHWISE_CONV_2D.
    Conv {
        src: usize,
        dst: usize,
        k: usize,
        stride: usize,
        /// Padding before the first row / column (SAME), 0 for VALID.
        pad_top: usize,
        pad_left: usize,
        same: bool,
        relu6: bool,
        depthwise: bool,
        w: Weights,
    },
    Add {
        a: usize,
        b: usize,
        dst: usize,
    },
    Mean {
        src: usize,
        dst: usize,
    },
    Fc {
        src: usize,
        dst: usize,
        w: Weights,
    },
}

struct Graph {
    tensors: Vec<Tensor>,
    nodes: Vec<Node>,
    rng: Rng,
    explicit_pad: bool,
    input: usize,
    resolution: usize,
    macs: u64,
    params: u64,
}

/// SAME padding: output size and the padding before the first element.
fn same_pad(input: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(input);
    (out, total / 2)
}

impl Graph {
    fn new(resolution: usize, seed: u64, explicit_pad: bool) -> Result<Self, String> {
        if !(8..=1024).contains(&resolution) {
            return Err(format!("resolution {resolution} is outside 8..=1024"));
        }
        let mut g = Graph {
            tensors: Vec::new(),
            nodes: Vec::new(),
            rng: Rng::new(seed),
            explicit_pad,
            input: 0,
            resolution,
            macs: 0,
            params: 0,
        };
        g.input = g.tensor("input_int8", resolution, resolution, 3);
        Ok(g)
    }

    fn tensor(&mut self, name: &str, h: usize, w: usize, c: usize) -> usize {
        self.tensors.push(Tensor {
            name: name.to_string(),
            h,
            w,
            c,
            flat: false,
        });
        self.tensors.len() - 1
    }

    fn normal(&mut self) -> f32 {
        // Box-Muller; 1 - unit() is in (0, 1], so the log is finite.
        let u1 = 1.0 - self.rng.unit();
        let u2 = self.rng.unit();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Random per-channel int8 weights: `out_c` channels of `per_channel` values drawn
    /// normal with standard deviation `std`, rounded to the symmetric per-channel grid.
    /// Returns (q in channel-major order, scales, dequantised values in channel-major order).
    fn random_weights(
        &mut self,
        out_c: usize,
        per_channel: usize,
        std: f32,
    ) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
        let mut q = Vec::with_capacity(out_c * per_channel);
        let mut scales = Vec::with_capacity(out_c);
        let mut deq = Vec::with_capacity(out_c * per_channel);
        for _ in 0..out_c {
            let w: Vec<f32> = (0..per_channel).map(|_| std * self.normal()).collect();
            let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
            let scale = max / 127.0;
            for v in w {
                let qv = (v / scale).round().clamp(-127.0, 127.0) as i8;
                q.push(qv);
                deq.push(f32::from(qv) * scale);
            }
            scales.push(scale);
        }
        (q, scales, deq)
    }

    fn random_bias(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| 0.1 * self.normal()).collect()
    }

    /// CONV_2D `k x k`, stride `stride`, SAME (or PAD + VALID), optional ReLU6.
    fn conv(
        &mut self,
        name: &str,
        src: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        relu6: bool,
    ) -> usize {
        let in_c = self.tensors[src].c;
        let fan_in = k * k * in_c;
        let gain = if relu6 { 2.0 } else { 1.0 };
        let std = (gain / fan_in as f32).sqrt();
        let (q, scale, deq) = self.random_weights(out_c, fan_in, std);
        // [O,KH,KW,I] -> [KH,KW,I,O]
        let mut f = vec![0.0; deq.len()];
        for o in 0..out_c {
            for j in 0..fan_in {
                f[j * out_c + o] = deq[o * fan_in + j];
            }
        }
        let bias = self.random_bias(out_c);
        let w = Weights { q, scale, bias, f };
        self.spatial(name, src, out_c, k, stride, relu6, false, w)
    }

    /// DEPTHWISE_CONV_2D `k x k` (multiplier 1), stride `stride`, optional ReLU6.
    fn depthwise(&mut self, name: &str, src: usize, k: usize, stride: usize, relu6: bool) -> usize {
        let c = self.tensors[src].c;
        let std = (2.0 / (k * k) as f32).sqrt();
        let (q_cm, scale, deq) = self.random_weights(c, k * k, std);
        // Channel-major [C,KH,KW] -> TFLite's [1,KH,KW,C] (same layout the float pass uses).
        let mut q = vec![0i8; q_cm.len()];
        let mut f = vec![0.0; deq.len()];
        for ch in 0..c {
            for j in 0..k * k {
                q[j * c + ch] = q_cm[ch * k * k + j];
                f[j * c + ch] = deq[ch * k * k + j];
            }
        }
        let bias = self.random_bias(c);
        let w = Weights { q, scale, bias, f };
        self.spatial(name, src, c, k, stride, relu6, true, w)
    }

    #[allow(clippy::too_many_arguments)]
    fn spatial(
        &mut self,
        name: &str,
        src: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        relu6: bool,
        depthwise: bool,
        w: Weights,
    ) -> usize {
        let (h, wd, in_c) = (
            self.tensors[src].h,
            self.tensors[src].w,
            self.tensors[src].c,
        );
        let (oh, pt) = same_pad(h, k, stride);
        let (ow, pl) = same_pad(wd, k, stride);
        let per_out = if depthwise { k * k } else { k * k * in_c };
        self.macs += (oh * ow * out_c * per_out) as u64;
        self.params += (w.q.len() + w.bias.len()) as u64;
        let mut src = src;
        let (mut pad_top, mut pad_left, mut same) = (pt, pl, true);
        if self.explicit_pad && stride > 1 {
            let pb = (oh - 1) * stride + k - h - pt;
            let pr = (ow - 1) * stride + k - wd - pl;
            let padded = self.tensor(&format!("{name}/pad"), h + pt + pb, wd + pl + pr, in_c);
            self.nodes.push(Node::Pad {
                src,
                dst: padded,
                pads: [pt, pb, pl, pr],
            });
            src = padded;
            (pad_top, pad_left, same) = (0, 0, false);
        }
        let dst = self.tensor(name, oh, ow, out_c);
        self.nodes.push(Node::Conv {
            src,
            dst,
            k,
            stride,
            pad_top,
            pad_left,
            same,
            relu6,
            depthwise,
            w,
        });
        dst
    }

    /// Inverted residual / MBConv block: optional 1x1 expand (ReLU6), `k x k` depthwise
    /// (ReLU6), 1x1 linear projection, residual ADD when the shape is kept.
    #[allow(clippy::too_many_arguments)]
    fn mbconv(
        &mut self,
        name: &str,
        src: usize,
        in_c: usize,
        out_c: usize,
        expansion: usize,
        k: usize,
        stride: usize,
    ) -> usize {
        let mut x = src;
        if expansion != 1 {
            x = self.conv(&format!("{name}/expand"), x, in_c * expansion, 1, 1, true);
        }
        x = self.depthwise(&format!("{name}/depthwise"), x, k, stride, true);
        x = self.conv(&format!("{name}/project"), x, out_c, 1, 1, false);
        if stride == 1 && in_c == out_c {
            let (h, w) = (self.tensors[x].h, self.tensors[x].w);
            let dst = self.tensor(&format!("{name}/add"), h, w, out_c);
            self.nodes.push(Node::Add { a: src, b: x, dst });
            x = dst;
        }
        x
    }

    /// Appends MEAN and FULLY_CONNECTED, calibrates, and writes the model.
    fn finish(
        mut self,
        name: String,
        x: usize,
        classes: usize,
        opts: &Options,
    ) -> Result<Net, String> {
        if classes == 0 {
            return Err("a classifier needs at least one class".into());
        }
        let c = self.tensors[x].c;
        let pooled = self.tensor("pool", 1, 1, c);
        self.tensors[pooled].flat = true;
        self.nodes.push(Node::Mean {
            src: x,
            dst: pooled,
        });
        let std = (1.0 / c as f32).sqrt();
        let (q, scale, deq) = self.random_weights(classes, c, std);
        let mut f = vec![0.0; deq.len()];
        for o in 0..classes {
            for i in 0..c {
                f[i * classes + o] = deq[o * c + i];
            }
        }
        let bias = self.random_bias(classes);
        self.macs += (c * classes) as u64;
        self.params += (q.len() + bias.len()) as u64;
        let logits = self.tensor("logits", 1, 1, classes);
        self.tensors[logits].flat = true;
        self.nodes.push(Node::Fc {
            src: pooled,
            dst: logits,
            w: Weights { q, scale, bias, f },
        });

        // Calibration on the input photo and a second one.
        let r = self.resolution;
        let input = load_photo(&opts.photo, r)?;
        let second = load_photo(SECOND_CALIBRATION_PHOTO, r)?;
        let mut ranges = vec![(0.0f32, 0.0f32); self.tensors.len()];
        let values = self.forward(&input, &mut ranges);
        let float_logits = values[logits].clone();
        drop(values);
        if opts.photo != SECOND_CALIBRATION_PHOTO {
            self.forward(&second, &mut ranges);
        }
        if float_logits.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "{name}: the float forward pass produced non-finite logits"
            ));
        }

        let name = format!(
            "{name}{}{}",
            if opts.explicit_pad { "_pad" } else { "" },
            if opts.softmax { "_softmax" } else { "" }
        );
        let (model, logits_quant) = self.write(&name, &ranges, logits, opts.softmax)?;
        let op_count = self.nodes.len() + 1 + usize::from(opts.softmax);
        Ok(Net {
            name,
            model,
            input,
            photo: opts.photo.clone(),
            resolution: r,
            classes,
            macs: self.macs,
            params: self.params,
            float_logits,
            logits_quant,
            softmax: opts.softmax,
            op_count,
        })
    }

    /// Runs the float network on a uint8 image; widens `ranges` with every tensor's min/max and
    /// returns all tensor values.
    fn forward(&self, image: &[u8], ranges: &mut [(f32, f32)]) -> Vec<Vec<f32>> {
        let mut v: Vec<Vec<f32>> = vec![Vec::new(); self.tensors.len()];
        v[self.input] = image
            .iter()
            .map(|&p| (i32::from(p) - INPUT_ZERO_POINT) as f32 * INPUT_SCALE)
            .collect();
        for node in &self.nodes {
            match node {
                Node::Pad { src, dst, pads } => {
                    let s = &self.tensors[*src];
                    let d = &self.tensors[*dst];
                    let mut out = vec![0.0; d.h * d.w * d.c];
                    for y in 0..s.h {
                        let from = &v[*src][y * s.w * s.c..(y + 1) * s.w * s.c];
                        let at = ((y + pads[0]) * d.w + pads[2]) * d.c;
                        out[at..at + from.len()].copy_from_slice(from);
                    }
                    v[*dst] = out;
                }
                Node::Conv {
                    src,
                    dst,
                    k,
                    stride,
                    pad_top,
                    pad_left,
                    relu6,
                    depthwise,
                    w,
                    ..
                } => {
                    let s = &self.tensors[*src];
                    let d = &self.tensors[*dst];
                    let geo = ConvGeometry {
                        h: s.h,
                        w: s.w,
                        in_c: s.c,
                        oh: d.h,
                        ow: d.w,
                        out_c: d.c,
                        k: *k,
                        stride: *stride,
                        pad_top: *pad_top,
                        pad_left: *pad_left,
                    };
                    let mut out = if *depthwise {
                        depthwise_f32(&v[*src], &geo, &w.f, &w.bias)
                    } else {
                        conv_f32(&v[*src], &geo, &w.f, &w.bias)
                    };
                    if *relu6 {
                        out.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0));
                    }
                    v[*dst] = out;
                }
                Node::Add { a, b, dst } => {
                    v[*dst] = v[*a].iter().zip(&v[*b]).map(|(x, y)| x + y).collect();
                }
                Node::Mean { src, dst } => {
                    let s = &self.tensors[*src];
                    let mut sum = vec![0.0f64; s.c];
                    for px in v[*src].chunks_exact(s.c) {
                        for (acc, &x) in sum.iter_mut().zip(px) {
                            *acc += f64::from(x);
                        }
                    }
                    let n = (s.h * s.w) as f64;
                    v[*dst] = sum.iter().map(|&x| (x / n) as f32).collect();
                }
                Node::Fc { src, dst, w } => {
                    let classes = self.tensors[*dst].c;
                    let mut out = w.bias.clone();
                    for (i, &x) in v[*src].iter().enumerate() {
                        let row = &w.f[i * classes..(i + 1) * classes];
                        for (o, &wv) in out.iter_mut().zip(row) {
                            *o += x * wv;
                        }
                    }
                    v[*dst] = out;
                }
            }
        }
        for (r, vals) in ranges.iter_mut().zip(&v) {
            for &x in vals {
                r.0 = r.0.min(x);
                r.1 = r.1.max(x);
            }
        }
        v
    }

    /// Writes the int8 model; returns it and the logits' (scale, zero point).
    fn write(
        &self,
        name: &str,
        ranges: &[(f32, f32)],
        logits: usize,
        softmax: bool,
    ) -> Result<(Vec<u8>, (f32, i32)), String> {
        let mut b = ModelBuilder::new();
        b.set_description(&format!(
            "kdtests::nets {name} (random weights, calibrated)"
        ));
        let r = self.resolution as i32;
        let input_u8 = b.add_tensor(TensorSpec::activation(
            "input",
            &[1, r, r, 3],
            DType::U8,
            Quant::per_tensor(INPUT_SCALE, INPUT_ZERO_POINT.into()),
        ));
        // Activation parameters; PAD outputs inherit their input's.
        let mut qp: Vec<(f32, i64)> = ranges.iter().map(|&(lo, hi)| qparams(lo, hi)).collect();
        qp[self.input] = (INPUT_SCALE, 0);
        for node in &self.nodes {
            if let Node::Pad { src, dst, .. } = node {
                qp[*dst] = qp[*src];
            }
        }
        let ids: Vec<TensorId> = self
            .tensors
            .iter()
            .zip(&qp)
            .map(|(t, &(s, zp))| {
                let shape: Vec<i32> = if t.flat {
                    vec![1, t.c as i32]
                } else {
                    vec![1, t.h as i32, t.w as i32, t.c as i32]
                };
                b.add_tensor(TensorSpec::activation(
                    &t.name,
                    &shape,
                    DType::I8,
                    Quant::per_tensor(s, zp),
                ))
            })
            .collect();
        b.add_op(Op::Quantize, &[input_u8], &[ids[self.input]]);
        for node in &self.nodes {
            match node {
                Node::Pad { src, dst, pads } => {
                    let p = pads.map(|p| p as i32);
                    let paddings = b.add_tensor(TensorSpec::const_i32(
                        &format!("{}/paddings", self.tensors[*dst].name),
                        &[4, 2],
                        &[0, 0, p[0], p[1], p[2], p[3], 0, 0],
                        None,
                    ));
                    b.add_op(Op::Pad, &[ids[*src], paddings], &[ids[*dst]]);
                }
                Node::Conv {
                    src,
                    dst,
                    k,
                    stride,
                    same,
                    relu6,
                    depthwise,
                    w,
                    ..
                } => {
                    let (k, s) = (*k as i32, *stride as i32);
                    let t = &self.tensors[*dst];
                    let in_c = self.tensors[*src].c as i32;
                    let (shape, axis) = if *depthwise {
                        (vec![1, k, k, t.c as i32], 3)
                    } else {
                        (vec![t.c as i32, k, k, in_c], 0)
                    };
                    let (filter, bias) =
                        write_weights(&mut b, &t.name, &shape, axis, w, qp[*src].0)?;
                    let padding = if *same { Padding::Same } else { Padding::Valid };
                    let activation = if *relu6 {
                        Activation::Relu6
                    } else {
                        Activation::None
                    };
                    let op = Op::conv(*depthwise, padding, s, activation);
                    b.add_op(op, &[ids[*src], filter, bias], &[ids[*dst]]);
                }
                Node::Add { a, b: rhs, dst } => {
                    b.add_op(
                        Op::Add {
                            activation: Activation::None,
                        },
                        &[ids[*a], ids[*rhs]],
                        &[ids[*dst]],
                    );
                }
                Node::Mean { src, dst } => {
                    let axes =
                        b.add_tensor(TensorSpec::const_i32("pool/axes", &[2], &[1, 2], None));
                    b.add_op(
                        Op::Mean { keep_dims: false },
                        &[ids[*src], axes],
                        &[ids[*dst]],
                    );
                }
                Node::Fc { src, dst, w } => {
                    let t = &self.tensors[*dst];
                    let in_c = self.tensors[*src].c as i32;
                    let (weights, bias) =
                        write_weights(&mut b, &t.name, &[t.c as i32, in_c], 0, w, qp[*src].0)?;
                    b.add_op(
                        Op::FullyConnected {
                            activation: Activation::None,
                            keep_num_dims: false,
                        },
                        &[ids[*src], weights, bias],
                        &[ids[*dst]],
                    );
                }
            }
        }
        let out = if softmax {
            let probs = b.add_tensor(TensorSpec::activation(
                "probs",
                &[1, self.tensors[logits].c as i32],
                DType::I8,
                Quant::per_tensor(1.0 / 256.0, -128),
            ));
            b.add_op(Op::Softmax { beta: 1.0 }, &[ids[logits]], &[probs]);
            probs
        } else {
            ids[logits]
        };
        b.set_inputs(&[input_u8]);
        b.set_outputs(&[out]);
        let bytes = b.finish().map_err(|e| format!("{name}: {e}"))?;
        let (s, zp) = qp[logits];
        Ok((bytes, (s, zp as i32)))
    }
}

/// Adds a per-channel int8 filter and its int32 bias (scale `input_scale * weight_scale[c]`).
fn write_weights(
    b: &mut ModelBuilder,
    name: &str,
    shape: &[i32],
    axis: i32,
    w: &Weights,
    input_scale: f32,
) -> Result<(TensorId, TensorId), String> {
    let n = w.scale.len();
    let filter = b.add_tensor(TensorSpec::const_i8(
        &format!("{name}/weights"),
        shape,
        &w.q,
        Quant::per_channel(w.scale.clone(), vec![0; n], axis),
    ));
    let bias_scale: Vec<f32> = w.scale.iter().map(|s| input_scale * s).collect();
    let mut q = Vec::with_capacity(n);
    for (&real, &s) in w.bias.iter().zip(&bias_scale) {
        let v = (f64::from(real) / f64::from(s)).round();
        if !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&v) {
            return Err(format!(
                "{name}: bias {real} does not fit int32 at scale {s}"
            ));
        }
        q.push(v as i32);
    }
    let bias = b.add_tensor(TensorSpec::const_i32(
        &format!("{name}/bias"),
        &[n as i32],
        &q,
        Some(Quant::per_channel(bias_scale, vec![0; n], 0)),
    ));
    Ok((filter, bias))
}

/// Asymmetric int8 parameters for the real range `[lo, hi]` (widened to include 0).
pub fn qparams(lo: f32, hi: f32) -> (f32, i64) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    // A tensor that is 0 everywhere still needs a positive scale.
    let scale = ((hi - lo) / 255.0).max(1e-6);
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i64;
    (scale, zp)
}

struct ConvGeometry {
    h: usize,
    w: usize,
    in_c: usize,
    oh: usize,
    ow: usize,
    out_c: usize,
    k: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
}

impl ConvGeometry {
    /// Input coordinate of output `o`, tap `t`, or `None` in the padding.
    fn src(o: usize, t: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
        (o * stride + t).checked_sub(pad).filter(|&i| i < size)
    }
}

/// Float CONV_2D, NHWC, weights `[KH,KW,I,O]` (the inner loop runs over output channels so it
/// vectorises).
fn conv_f32(x: &[f32], g: &ConvGeometry, w: &[f32], bias: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; g.oh * g.ow * g.out_c];
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let acc = &mut out[(oy * g.ow + ox) * g.out_c..][..g.out_c];
            acc.copy_from_slice(bias);
            for ky in 0..g.k {
                let Some(iy) = ConvGeometry::src(oy, ky, g.stride, g.pad_top, g.h) else {
                    continue;
                };
                for kx in 0..g.k {
                    let Some(ix) = ConvGeometry::src(ox, kx, g.stride, g.pad_left, g.w) else {
                        continue;
                    };
                    let px = &x[(iy * g.w + ix) * g.in_c..][..g.in_c];
                    let taps = &w[(ky * g.k + kx) * g.in_c * g.out_c..][..g.in_c * g.out_c];
                    for (&xv, row) in px.iter().zip(taps.chunks_exact(g.out_c)) {
                        if xv == 0.0 {
                            continue;
                        }
                        for (a, &wv) in acc.iter_mut().zip(row) {
                            *a += xv * wv;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Float DEPTHWISE_CONV_2D (multiplier 1), NHWC, weights `[KH,KW,C]`.
fn depthwise_f32(x: &[f32], g: &ConvGeometry, w: &[f32], bias: &[f32]) -> Vec<f32> {
    let c = g.out_c;
    let mut out = vec![0.0f32; g.oh * g.ow * c];
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let acc = &mut out[(oy * g.ow + ox) * c..][..c];
            acc.copy_from_slice(bias);
            for ky in 0..g.k {
                let Some(iy) = ConvGeometry::src(oy, ky, g.stride, g.pad_top, g.h) else {
                    continue;
                };
                for kx in 0..g.k {
                    let Some(ix) = ConvGeometry::src(ox, kx, g.stride, g.pad_left, g.w) else {
                        continue;
                    };
                    let px = &x[(iy * g.w + ix) * c..][..c];
                    let taps = &w[(ky * g.k + kx) * c..][..c];
                    for ((a, &xv), &wv) in acc.iter_mut().zip(px).zip(taps) {
                        *a += xv * wv;
                    }
                }
            }
        }
    }
    out
}

/// Loads `data/raw/photos/<file>` and letterboxes it to `resolution x resolution` RGB.
pub fn load_photo(file: &str, resolution: usize) -> Result<Vec<u8>, String> {
    let path = crate::workspace_root()
        .join("data")
        .join("raw")
        .join("photos")
        .join(Path::new(file));
    let decoded = image::open(&path).map_err(|e| format!("decoding {}: {e}", path.display()))?;
    let rgb = decoded.to_rgb8();
    let (w, h) = rgb.dimensions();
    let src = Image::packed(rgb.as_raw(), h as usize, w as usize, PixelFormat::Rgb)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = vec![0u8; resolution * resolution * 3];
    letterbox(&src, resolution, resolution, OutputFormat::Rgb, &mut out)
        .map_err(|e| format!("letterboxing {}: {e}", path.display()))?;
    Ok(out)
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Softmax of `v` (float).
pub fn softmax(v: &[f32]) -> Vec<f32> {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let e: Vec<f64> = v.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|&x| (x / sum) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_the_papers_code() {
        // Values of TF-slim's _make_divisible computed by hand: 32*0.35 = 11.2 -> 8 is below
        // 0.9*11.2, so 16; 16*0.35 = 5.6 -> 8; 64*0.35 = 22.4 -> 24; 96*0.35 = 33.6 -> 32.
        assert_eq!(make_divisible(11.2, 8), 16);
        assert_eq!(make_divisible(5.6, 8), 8);
        assert_eq!(make_divisible(22.4, 8), 24);
        assert_eq!(make_divisible(33.6, 8), 32);
        assert_eq!(make_divisible(1792.0, 8), 1792);
    }

    #[test]
    fn same_padding_matches_tflite() {
        // TFLite: out = ceil(in / s), total = max((out-1)*s + k - in, 0), before = total / 2.
        assert_eq!(same_pad(224, 3, 2), (112, 0)); // total 1: all after
        assert_eq!(same_pad(7, 3, 2), (4, 1)); // total 2
        assert_eq!(same_pad(14, 5, 2), (7, 1)); // total 3: 1 before, 2 after
        assert_eq!(same_pad(14, 5, 1), (14, 2));
        assert_eq!(same_pad(1, 1, 1), (1, 0));
    }

    #[test]
    fn qparams_cover_the_range_and_zero() {
        let (s, zp) = qparams(0.0, 6.0);
        assert!((s - 6.0 / 255.0).abs() < 1e-9);
        assert_eq!(zp, -128);
        let (s, zp) = qparams(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-9);
        // -128 - (-1)/(4/255) = -128 + 63.75 -> -64
        assert_eq!(zp, -64);
        let (s, zp) = qparams(0.5, 2.0); // widened to [0, 2]
        assert!((s - 2.0 / 255.0).abs() < 1e-9);
        assert_eq!(zp, -128);
    }

    #[test]
    fn efficientnet_lite_repeats_follow_round_repeats() {
        assert_eq!(efficientnet_lite_repeats(0).unwrap(), [1, 2, 2, 3, 3, 4, 1]);
        // ceil(1.1 * n) for the middle stages: 2 -> 3, 3 -> 4, 4 -> 5.
        assert_eq!(efficientnet_lite_repeats(1).unwrap(), [1, 3, 3, 4, 4, 5, 1]);
        assert!(efficientnet_lite_repeats(2).is_err());
    }

    #[test]
    fn float_conv_matches_a_hand_calculation() {
        // 3x3 input of 1..9 (one channel), 3x3 all-ones kernel, SAME, stride 2: outputs at
        // (0,0) and (0,2)... with out = 2, pad_top = 1: output (0,0) sums rows 0..1, cols 0..1
        // = 1+2+4+5 = 12; (0,1) sums rows 0..1, cols 1..2 = 2+3+5+6 = 16; (1,0) = 4+5+7+8 = 24;
        // (1,1) = 5+6+8+9 = 28; plus bias 0.5.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let (o, p) = same_pad(3, 3, 2);
        let g = ConvGeometry {
            h: 3,
            w: 3,
            in_c: 1,
            oh: o,
            ow: o,
            out_c: 1,
            k: 3,
            stride: 2,
            pad_top: p,
            pad_left: p,
        };
        assert_eq!(
            conv_f32(&x, &g, &[1.0; 9], &[0.5]),
            vec![12.5, 16.5, 24.5, 28.5]
        );
        assert_eq!(
            depthwise_f32(&x, &g, &[1.0; 9], &[0.5]),
            vec![12.5, 16.5, 24.5, 28.5]
        );
    }
}
