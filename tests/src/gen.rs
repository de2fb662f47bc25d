//! Random single-operator int8 models for parity tests, built with the kdruntime writer.
//!
//! Every model is one operator with random shapes, strides (1..=3), dilations (1..=2), SAME or
//! VALID padding, depth multipliers, fused activations, broadcast shapes, scales from 1e-5 to
//! 1e2 and zero points over the whole int8 range; constraints TFLite's kernels impose (e.g. the
//! fixed 1/256 output scale of int8 SOFTMAX/LOGISTIC, equal input/output quantisation for
//! CONCATENATION, PAD, pools and reshapes) are respected so that every model is valid. Output
//! shapes are computed here and written into the model, so a runtime that trusts the file sees
//! the same shapes as TFLite's own shape inference (the tests check they agree).
//!
//! A parity test is then:
//! ```text
//! let models = kdtests::gen::suite(300, 1);
//! let refs = kdtests::reference::run_batch(&kdtests::gen::cases(&models), Backend::TfliteRef)?;
//! for (m, r) in models.iter().zip(refs) { /* run m.model in kdruntime, compare with r */ }
//! ```

use kdruntime::tflite::writer::{
    Activation, DType, ModelBuilder, Op, Padding, Quant, TensorId, TensorSpec,
};

use crate::reference::Case;
use crate::rng::Rng;

/// The operators the generator covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// QUANTIZE (uint8->int8, int8->int8 requantise, float->int8).
    Quantize,
    /// DEQUANTIZE (int8/uint8 -> float).
    Dequantize,
    /// CONV_2D with per-channel weights.
    Conv2d,
    /// DEPTHWISE_CONV_2D with per-channel weights and a depth multiplier.
    DepthwiseConv2d,
    /// FULLY_CONNECTED (per-tensor or per-channel weights, optional bias, keep_num_dims).
    FullyConnected,
    /// ADD with broadcasting.
    Add,
    /// MUL with broadcasting.
    Mul,
    /// MEAN over random axes.
    Mean,
    /// AVERAGE_POOL_2D.
    AveragePool2d,
    /// MAX_POOL_2D.
    MaxPool2d,
    /// PAD.
    Pad,
    /// RESHAPE.
    Reshape,
    /// SQUEEZE.
    Squeeze,
    /// CONCATENATION.
    Concatenation,
    /// SOFTMAX.
    Softmax,
    /// LOGISTIC.
    Logistic,
    /// HARD_SWISH.
    HardSwish,
    /// RELU.
    Relu,
    /// RELU6.
    Relu6,
    /// RELU_N1_TO_1.
    ReluN1To1,
}

/// Every operator kind, in a fixed order.
pub const ALL_OPS: [OpKind; 20] = [
    OpKind::Quantize,
    OpKind::Dequantize,
    OpKind::Conv2d,
    OpKind::DepthwiseConv2d,
    OpKind::FullyConnected,
    OpKind::Add,
    OpKind::Mul,
    OpKind::Mean,
    OpKind::AveragePool2d,
    OpKind::MaxPool2d,
    OpKind::Pad,
    OpKind::Reshape,
    OpKind::Squeeze,
    OpKind::Concatenation,
    OpKind::Softmax,
    OpKind::Logistic,
    OpKind::HardSwish,
    OpKind::Relu,
    OpKind::Relu6,
    OpKind::ReluN1To1,
];

/// A generated model with one random input sample.
#[derive(Clone, Debug)]
pub struct GenModel {
    /// `<op>-<seed>`, unique within a suite.
    pub name: String,
    /// The operator.
    pub kind: OpKind,
    /// Seed that regenerates exactly this model via [`generate`].
    pub seed: u64,
    /// TFLite flatbuffer bytes.
    pub model: Vec<u8>,
    /// One buffer per model input.
    pub inputs: Vec<Vec<u8>>,
    /// Output shapes as written into the model.
    pub output_shapes: Vec<Vec<i32>>,
}

impl GenModel {
    /// The harness case for this model.
    pub fn case(&self) -> Case {
        Case {
            name: self.name.clone(),
            model: self.model.clone(),
            inputs: self.inputs.clone(),
        }
    }
}

/// `count` models cycling through [`ALL_OPS`], seeds derived from `seed`.
pub fn suite(count: usize, seed: u64) -> Vec<GenModel> {
    (0..count)
        .map(|i| {
            let s = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            generate(ALL_OPS[i % ALL_OPS.len()], s)
        })
        .collect()
}

/// Harness cases for a slice of models.
pub fn cases(models: &[GenModel]) -> Vec<Case> {
    models.iter().map(GenModel::case).collect()
}

fn scale(r: &mut Rng) -> f32 {
    if r.chance(0.2) {
        r.log_uniform(1e-5, 1e2) as f32
    } else {
        r.log_uniform(1e-3, 1.0) as f32
    }
}

fn act_quant(r: &mut Rng) -> Quant {
    Quant::per_tensor(scale(r), r.range(-128, 127))
}

fn activation(r: &mut Rng) -> Activation {
    r.pick(&[
        Activation::None,
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::ReluN1To1,
    ])
}

fn padding(r: &mut Rng) -> Padding {
    r.pick(&[Padding::Same, Padding::Valid])
}

fn elems(shape: &[i32]) -> usize {
    shape.iter().map(|&d| d as usize).product()
}

/// Output size of a convolution/pool along one axis (TFLite's ComputeOutSize).
fn out_size(padding: Padding, input: i32, filter: i32, stride: i32, dilation: i32) -> i32 {
    let eff = (filter - 1) * dilation + 1;
    match padding {
        Padding::Same => (input + stride - 1) / stride,
        Padding::Valid => (input - eff + stride) / stride,
    }
}

/// A random spatial size that keeps a VALID window inside the input.
fn spatial(r: &mut Rng, padding: Padding, filter: i32, dilation: i32) -> i32 {
    let eff = (filter - 1) * dilation + 1;
    let lo = if padding == Padding::Valid { eff } else { 1 };
    r.range_i32(lo, lo.max(1) + 10)
}

/// Output scale for an accumulator of `terms` products of two int8 values with scale
/// `in_s * w_s`: near the accumulator's typical range times a random factor, or (sometimes)
/// an extreme scale as long as the effective multiplier stays representable.
fn acc_out_scale(r: &mut Rng, in_w_scale: f64, terms: usize) -> f32 {
    if r.chance(0.15) {
        let s = r.log_uniform(1e-5, 1e2);
        let m = in_w_scale / s;
        if (1e-9..1e4).contains(&m) {
            return s as f32;
        }
    }
    let typical = in_w_scale * (terms as f64).sqrt() * 64.0 * 64.0 / 64.0;
    (typical * r.log_uniform(0.05, 20.0)) as f32
}

fn weight_scales(r: &mut Rng, n: usize) -> Vec<f32> {
    let base = scale(r) as f64;
    (0..n)
        .map(|_| (base * r.log_uniform(0.25, 4.0)) as f32)
        .collect()
}

fn bias(b: &mut ModelBuilder, r: &mut Rng, in_s: f32, w_s: &[f32]) -> TensorId {
    let n = w_s.len();
    let values: Vec<i32> = (0..n).map(|_| r.range(-20_000, 20_000) as i32).collect();
    let scales: Vec<f32> = w_s.iter().map(|&w| in_s * w).collect();
    let quant = if n == 1 {
        Quant::per_tensor(scales[0], 0)
    } else {
        Quant::per_channel(scales, vec![0; n], 0)
    };
    b.add_tensor(TensorSpec::const_i32(
        "bias",
        &[n as i32],
        &values,
        Some(quant),
    ))
}

struct Built {
    b: ModelBuilder,
    inputs: Vec<TensorId>,
    output: TensorId,
}

impl Built {
    fn new() -> Self {
        Built {
            b: ModelBuilder::new(),
            inputs: Vec::new(),
            output: TensorId(0),
        }
    }

    fn input(&mut self, name: &str, shape: &[i32], dtype: DType, q: Quant) -> TensorId {
        let t = self
            .b
            .add_tensor(TensorSpec::activation(name, shape, dtype, q));
        self.inputs.push(t);
        t
    }

    fn output(&mut self, shape: &[i32], dtype: DType, q: Quant) -> TensorId {
        self.output = self
            .b
            .add_tensor(TensorSpec::activation("output", shape, dtype, q));
        self.output
    }
}

/// One random model of operator `kind` from `seed`.
pub fn generate(kind: OpKind, seed: u64) -> GenModel {
    let mut r = Rng::new(seed ^ 0x6b64_6564_6765);
    let mut g = Built::new();
    build(kind, &mut r, &mut g);
    g.b.set_inputs(&g.inputs.clone());
    g.b.set_outputs(&[g.output]);
    let model = match g.b.finish() {
        Ok(m) => m,
        // The generator's own invariants were violated: a bug here, not bad user input.
        Err(e) => panic!("generator built an invalid {kind:?} model (seed {seed}): {e}"),
    };
    let mut inputs = Vec::new();
    for &t in &g.inputs {
        let spec = g.b.tensor(t).expect("input tensor exists");
        let n = elems(&spec.shape);
        inputs.push(match spec.dtype {
            DType::F32 => {
                // Floats within a few times the output range, so QUANTIZE both saturates and not.
                let range =
                    g.b.tensor(g.output)
                        .and_then(|o| o.quant.as_ref())
                        .map_or(1.0, |q| q.scale[0] as f64 * 300.0);
                (0..n)
                    .flat_map(|_| (((r.unit() * 2.0 - 1.0) * range) as f32).to_le_bytes())
                    .collect()
            }
            dt => r.bytes(n * dt.size()),
        });
    }
    let output_shapes = vec![g.b.tensor(g.output).expect("output exists").shape.clone()];
    GenModel {
        name: format!("{kind:?}-{seed}"),
        kind,
        seed,
        model,
        inputs,
        output_shapes,
    }
}

fn nhwc(r: &mut Rng, h: i32, w: i32, c: i32) -> Vec<i32> {
    vec![r.range_i32(1, 2), h, w, c]
}

fn random_shape(r: &mut Rng, min_rank: usize, max_rank: usize, max_dim: i32) -> Vec<i32> {
    let rank = r.range(min_rank as i64, max_rank as i64) as usize;
    (0..rank).map(|_| r.range_i32(1, max_dim)).collect()
}

fn build(kind: OpKind, r: &mut Rng, g: &mut Built) {
    match kind {
        OpKind::Quantize => {
            let shape = random_shape(r, 1, 4, 6);
            let out_q = act_quant(r);
            let x = match r.below(3) {
                0 => g.input(
                    "input",
                    &shape,
                    DType::U8,
                    Quant::per_tensor(scale(r), r.range(0, 255)),
                ),
                1 => g.input("input", &shape, DType::I8, act_quant(r)),
                _ => {
                    let t = g.b.add_tensor(TensorSpec {
                        name: "input".into(),
                        shape: shape.clone(),
                        dtype: DType::F32,
                        quant: None,
                        data: None,
                    });
                    g.inputs.push(t);
                    t
                }
            };
            let y = g.output(&shape, DType::I8, out_q);
            g.b.add_op(Op::Quantize, &[x], &[y]);
        }
        OpKind::Dequantize => {
            let shape = random_shape(r, 1, 4, 6);
            let x = if r.chance(0.5) {
                g.input("input", &shape, DType::I8, act_quant(r))
            } else {
                g.input(
                    "input",
                    &shape,
                    DType::U8,
                    Quant::per_tensor(scale(r), r.range(0, 255)),
                )
            };
            let y = g.b.add_tensor(TensorSpec {
                name: "output".into(),
                shape: shape.clone(),
                dtype: DType::F32,
                quant: None,
                data: None,
            });
            g.output = y;
            g.b.add_op(Op::Dequantize, &[x], &[y]);
        }
        OpKind::Conv2d | OpKind::DepthwiseConv2d => {
            let depthwise = kind == OpKind::DepthwiseConv2d;
            let pad = padding(r);
            let (kh, kw) = (r.range_i32(1, 4), r.range_i32(1, 4));
            let (sh, sw) = (r.range_i32(1, 3), r.range_i32(1, 3));
            let (dh, dw) = (r.range_i32(1, 2), r.range_i32(1, 2));
            let (h, w) = (spatial(r, pad, kh, dh), spatial(r, pad, kw, dw));
            let cin = r.range_i32(1, 8);
            let mult = if depthwise { r.range_i32(1, 3) } else { 1 };
            let cout = if depthwise {
                cin * mult
            } else {
                r.range_i32(1, 8)
            };
            let in_shape = nhwc(r, h, w, cin);
            let in_q = act_quant(r);
            let in_s = in_q.scale[0];
            let x = g.input("input", &in_shape, DType::I8, in_q);
            let w_s = weight_scales(r, cout as usize);
            let (w_shape, axis) = if depthwise {
                (vec![1, kh, kw, cout], 3)
            } else {
                (vec![cout, kh, kw, cin], 0)
            };
            let wv = r.i8s(elems(&w_shape), -127, 127);
            let wt = g.b.add_tensor(TensorSpec::const_i8(
                "filter",
                &w_shape,
                &wv,
                Quant::per_channel(w_s.clone(), vec![0; cout as usize], axis),
            ));
            let bt = bias(&mut g.b, r, in_s, &w_s);
            let terms = (kh * kw * if depthwise { 1 } else { cin }) as usize;
            let out_q = Quant::per_tensor(
                acc_out_scale(r, in_s as f64 * w_s[0] as f64, terms),
                r.range(-128, 127),
            );
            let out_shape = vec![
                in_shape[0],
                out_size(pad, h, kh, sh, dh),
                out_size(pad, w, kw, sw, dw),
                cout,
            ];
            let y = g.output(&out_shape, DType::I8, out_q);
            let act = activation(r);
            let op = if depthwise {
                Op::DepthwiseConv2d {
                    padding: pad,
                    stride_w: sw,
                    stride_h: sh,
                    dilation_w: dw,
                    dilation_h: dh,
                    depth_multiplier: mult,
                    activation: act,
                }
            } else {
                Op::Conv2d {
                    padding: pad,
                    stride_w: sw,
                    stride_h: sh,
                    dilation_w: dw,
                    dilation_h: dh,
                    activation: act,
                }
            };
            g.b.add_op(op, &[x, wt, bt], &[y]);
        }
        OpKind::FullyConnected => {
            let k = r.range_i32(1, 32);
            let o = r.range_i32(1, 16);
            let keep = r.chance(0.3);
            let in_shape = if keep || r.chance(0.3) {
                vec![r.range_i32(1, 3), r.range_i32(1, 3), k]
            } else {
                vec![r.range_i32(1, 4), k]
            };
            let in_q = act_quant(r);
            let in_s = in_q.scale[0];
            let x = g.input("input", &in_shape, DType::I8, in_q);
            let per_channel = r.chance(0.5);
            let w_s = if per_channel {
                weight_scales(r, o as usize)
            } else {
                vec![scale(r)]
            };
            let wq = if per_channel {
                Quant::per_channel(w_s.clone(), vec![0; o as usize], 0)
            } else {
                Quant::per_tensor(w_s[0], 0)
            };
            let wv = r.i8s((o * k) as usize, -127, 127);
            let wt =
                g.b.add_tensor(TensorSpec::const_i8("weights", &[o, k], &wv, wq));
            let mut ins = vec![x, wt];
            if r.chance(0.7) {
                let b_s = if per_channel {
                    w_s.clone()
                } else {
                    vec![w_s[0]; o as usize]
                };
                let bt = if per_channel {
                    bias(&mut g.b, r, in_s, &b_s)
                } else {
                    let values: Vec<i32> =
                        (0..o).map(|_| r.range(-20_000, 20_000) as i32).collect();
                    g.b.add_tensor(TensorSpec::const_i32(
                        "bias",
                        &[o],
                        &values,
                        Some(Quant::per_tensor(in_s * w_s[0], 0)),
                    ))
                };
                ins.push(bt);
            }
            let out_q = Quant::per_tensor(
                acc_out_scale(r, in_s as f64 * w_s[0] as f64, k as usize),
                r.range(-128, 127),
            );
            let out_shape = if keep {
                let mut s = in_shape.clone();
                *s.last_mut().expect("rank >= 2") = o;
                s
            } else {
                vec![elems(&in_shape) as i32 / k, o]
            };
            let y = g.output(&out_shape, DType::I8, out_q);
            g.b.add_op(
                Op::FullyConnected {
                    activation: activation(r),
                    keep_num_dims: keep,
                },
                &ins,
                &[y],
            );
        }
        OpKind::Add | OpKind::Mul => {
            let out_shape = random_shape(r, 1, 4, 5);
            let mut a = out_shape.clone();
            let mut b = out_shape.clone();
            for d in 0..out_shape.len() {
                match r.below(4) {
                    0 => a[d] = 1,
                    1 => b[d] = 1,
                    _ => {}
                }
            }
            // Sometimes a lower-rank operand (numpy-style leading broadcast).
            if b.len() > 1 && r.chance(0.3) {
                let drop = r.range(1, b.len() as i64 - 1) as usize;
                b.drain(..drop);
            }
            let (a, b) = if r.chance(0.5) { (a, b) } else { (b, a) };
            let out_shape = broadcast(&a, &b);
            let (qa, qb, mut qy) = (act_quant(r), act_quant(r), act_quant(r));
            if kind == OpKind::Add {
                // TFLite's ADD prepare aborts (TFLITE_CHECK, the whole process) unless
                // 2 max(input scales) / (2^20 output scale) < 1.
                let floor = 2.0 * qa.scale[0].max(qb.scale[0]) as f64 / (1u64 << 20) as f64;
                if qy.scale[0] as f64 <= floor * 1.01 {
                    qy.scale[0] = (floor * 2.0) as f32;
                }
            }
            let x1 = g.input("input1", &a, DType::I8, qa);
            let x2 = g.input("input2", &b, DType::I8, qb);
            let y = g.output(&out_shape, DType::I8, qy);
            let act = activation(r);
            let op = if kind == OpKind::Add {
                Op::Add { activation: act }
            } else {
                Op::Mul { activation: act }
            };
            g.b.add_op(op, &[x1, x2], &[y]);
        }
        OpKind::Mean => {
            let shape = random_shape(r, 2, 4, 6);
            let rank = shape.len();
            let mut axes: Vec<i32> = (0..rank as i32).filter(|_| r.chance(0.5)).collect();
            if axes.is_empty() {
                axes.push(r.range_i32(0, rank as i32 - 1));
            }
            if rank == 4 && r.chance(0.3) {
                axes = vec![1, 2]; // the global-average-pool pattern TFLite special-cases
            }
            let keep = r.chance(0.5);
            let out_shape: Vec<i32> = shape
                .iter()
                .enumerate()
                .filter_map(|(d, &n)| {
                    if axes.contains(&(d as i32)) {
                        keep.then_some(1)
                    } else {
                        Some(n)
                    }
                })
                .collect();
            let written: Vec<i32> = axes
                .iter()
                .map(|&a| if r.chance(0.3) { a - rank as i32 } else { a })
                .collect();
            let x = g.input("input", &shape, DType::I8, act_quant(r));
            let at = g.b.add_tensor(TensorSpec::const_i32(
                "axes",
                &[written.len() as i32],
                &written,
                None,
            ));
            let q = if r.chance(0.3) {
                g.b.tensor(x).and_then(|t| t.quant.clone()).expect("quant")
            } else {
                act_quant(r)
            };
            let y = g.output(&out_shape, DType::I8, q);
            g.b.add_op(Op::Mean { keep_dims: keep }, &[x, at], &[y]);
        }
        OpKind::AveragePool2d | OpKind::MaxPool2d => {
            let pad = padding(r);
            let (fh, fw) = (r.range_i32(1, 4), r.range_i32(1, 4));
            let (sh, sw) = (r.range_i32(1, 3), r.range_i32(1, 3));
            let (h, w) = (spatial(r, pad, fh, 1), spatial(r, pad, fw, 1));
            let c = r.range_i32(1, 8);
            let in_shape = nhwc(r, h, w, c);
            let q = act_quant(r);
            let x = g.input("input", &in_shape, DType::I8, q.clone());
            let out_shape = vec![
                in_shape[0],
                out_size(pad, h, fh, sh, 1),
                out_size(pad, w, fw, sw, 1),
                in_shape[3],
            ];
            let y = g.output(&out_shape, DType::I8, q);
            let act = activation(r);
            let op = if kind == OpKind::AveragePool2d {
                Op::AveragePool2d {
                    padding: pad,
                    stride_w: sw,
                    stride_h: sh,
                    filter_w: fw,
                    filter_h: fh,
                    activation: act,
                }
            } else {
                Op::MaxPool2d {
                    padding: pad,
                    stride_w: sw,
                    stride_h: sh,
                    filter_w: fw,
                    filter_h: fh,
                    activation: act,
                }
            };
            g.b.add_op(op, &[x], &[y]);
        }
        OpKind::Pad => {
            let shape = random_shape(r, 1, 4, 5);
            let pads: Vec<i32> = (0..shape.len() * 2).map(|_| r.range_i32(0, 3)).collect();
            let out_shape: Vec<i32> = shape
                .iter()
                .enumerate()
                .map(|(d, &n)| n + pads[2 * d] + pads[2 * d + 1])
                .collect();
            let q = act_quant(r);
            let x = g.input("input", &shape, DType::I8, q.clone());
            let pt = g.b.add_tensor(TensorSpec::const_i32(
                "paddings",
                &[shape.len() as i32, 2],
                &pads,
                None,
            ));
            let y = g.output(&out_shape, DType::I8, q);
            g.b.add_op(Op::Pad, &[x, pt], &[y]);
        }
        OpKind::Reshape => {
            let shape = random_shape(r, 1, 4, 6);
            let total = elems(&shape) as i32;
            let divisors: Vec<i32> = (1..=total).filter(|d| total % d == 0).collect();
            let a = r.pick(&divisors);
            let mut out_shape = match r.below(3) {
                0 => vec![total],
                1 => vec![a, total / a],
                _ => vec![1, a, total / a],
            };
            if r.chance(0.2) {
                out_shape.insert(0, 1);
            }
            let q = act_quant(r);
            let x = g.input("input", &shape, DType::I8, q.clone());
            let st = g.b.add_tensor(TensorSpec::const_i32(
                "shape",
                &[out_shape.len() as i32],
                &out_shape,
                None,
            ));
            let y = g.output(&out_shape, DType::I8, q);
            let new_shape = r.chance(0.5).then(|| out_shape.clone());
            g.b.add_op(Op::Reshape { new_shape }, &[x, st], &[y]);
        }
        OpKind::Squeeze => {
            let mut shape = random_shape(r, 1, 3, 5);
            let ones = r.range(1, 2) as usize;
            for _ in 0..ones {
                let at = r.below(shape.len() as u64 + 1) as usize;
                shape.insert(at, 1);
            }
            let unit: Vec<i32> = (0..shape.len() as i32)
                .filter(|&d| shape[d as usize] == 1)
                .collect();
            let squeeze: Vec<i32> = if r.chance(0.3) {
                Vec::new()
            } else {
                unit.iter().copied().filter(|_| r.chance(0.6)).collect()
            };
            let squeeze = if squeeze.is_empty() && !unit.is_empty() && r.chance(0.5) {
                vec![unit[0]]
            } else {
                squeeze
            };
            let out_shape: Vec<i32> = shape
                .iter()
                .enumerate()
                .filter(|(d, &n)| {
                    !(n == 1 && (squeeze.is_empty() || squeeze.contains(&(*d as i32))))
                })
                .map(|(_, &n)| n)
                .collect();
            let q = act_quant(r);
            let x = g.input("input", &shape, DType::I8, q.clone());
            let y = g.output(&out_shape, DType::I8, q);
            g.b.add_op(
                Op::Squeeze {
                    squeeze_dims: squeeze,
                },
                &[x],
                &[y],
            );
        }
        OpKind::Concatenation => {
            let base = random_shape(r, 1, 4, 5);
            let rank = base.len();
            let axis = r.range_i32(0, rank as i32 - 1);
            let n = r.range(1, 3) as usize;
            let q = act_quant(r);
            let mut ins = Vec::new();
            let mut total = 0;
            for i in 0..n {
                let mut s = base.clone();
                s[axis as usize] = r.range_i32(1, 4);
                total += s[axis as usize];
                ins.push(g.input(&format!("input{i}"), &s, DType::I8, q.clone()));
            }
            let mut out_shape = base.clone();
            out_shape[axis as usize] = total;
            let y = g.output(&out_shape, DType::I8, q);
            let written_axis = if r.chance(0.3) {
                axis - rank as i32
            } else {
                axis
            };
            g.b.add_op(
                Op::Concatenation {
                    axis: written_axis,
                    activation: Activation::None,
                },
                &ins,
                &[y],
            );
        }
        OpKind::Softmax
        | OpKind::Logistic
        | OpKind::HardSwish
        | OpKind::Relu
        | OpKind::Relu6
        | OpKind::ReluN1To1 => {
            let shape = random_shape(r, 1, 4, 6);
            let x = g.input("input", &shape, DType::I8, act_quant(r));
            // int8 SOFTMAX and LOGISTIC require the output scale 1/256 and zero point -128.
            let fixed = matches!(kind, OpKind::Softmax | OpKind::Logistic);
            let mut q = if fixed {
                Quant::per_tensor(1.0 / 256.0, -128)
            } else {
                act_quant(r)
            };
            if kind == OpKind::HardSwish {
                // TFLite's HARD_SWISH prepare requires (input_scale / 128) / output_scale < 1.
                let in_s =
                    g.b.tensor(x)
                        .and_then(|t| t.quant.as_ref())
                        .map_or(1.0, |q| q.scale[0]);
                let floor = in_s / 128.0 * 1.01;
                if q.scale[0] <= floor {
                    q.scale[0] = (floor as f64 * r.log_uniform(1.0, 1000.0)) as f32;
                }
            }
            let y = g.output(&shape, DType::I8, q);
            let op = match kind {
                OpKind::Softmax => Op::Softmax {
                    beta: if r.chance(0.5) {
                        1.0
                    } else {
                        r.log_uniform(0.1, 4.0) as f32
                    },
                },
                OpKind::Logistic => Op::Logistic,
                OpKind::HardSwish => Op::HardSwish,
                OpKind::Relu => Op::Relu,
                OpKind::ReluN1To1 => Op::ReluN1To1,
                _ => Op::Relu6,
            };
            g.b.add_op(op, &[x], &[y]);
        }
    }
}

/// Numpy broadcast of two shapes (right-aligned; each pair equal or one of them 1).
fn broadcast(a: &[i32], b: &[i32]) -> Vec<i32> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            da.max(db)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_size_matches_hand_values() {
        // SAME: ceil(7/2) = 4; VALID with a dilated 3-tap filter (span 5): (7-5)/2+1 = 2.
        assert_eq!(out_size(Padding::Same, 7, 3, 2, 2), 4);
        assert_eq!(out_size(Padding::Valid, 7, 3, 2, 2), 2);
        assert_eq!(out_size(Padding::Valid, 5, 5, 3, 1), 1);
    }

    #[test]
    fn broadcast_matches_numpy_rules() {
        assert_eq!(broadcast(&[2, 1, 3], &[4, 1]), vec![2, 4, 3]);
        assert_eq!(broadcast(&[5], &[1, 1, 5]), vec![1, 1, 5]);
    }

    #[test]
    fn generation_is_deterministic_and_covers_every_op() {
        let a = suite(ALL_OPS.len(), 3);
        let b = suite(ALL_OPS.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.model, y.model);
            assert_eq!(x.inputs, y.inputs);
        }
        for k in ALL_OPS {
            assert!(a.iter().any(|m| m.kind == k));
        }
    }
}
