//! Test support for the export tests: a small MobileNet-like [`IntGraph`] with seeded random
//! weights whose activation ranges are calibrated by a float64 forward pass on real images
//! (so activations use their int8 range instead of saturating), and real photos letterboxed
//! by kdruntime.
//!
//! The net (input `S x S`): conv 3x3 s2 pads (1,1,1,1) ReLU6 -> depthwise 3x3 s1 (1,1,1,1)
//! ReLU6 -> conv 1x1 -> residual add (ReLU, range calibrated before the ReLU so the clamp
//! matters) -> depthwise 3x3 s2 (1,1,1,1) ReLU6 -> conv 1x1 ReLU (pre-activation range) ->
//! conv 3x3 s2 pads (0,1,0,1) ReLU6 -> conv 1x1 -> global average pool -> fully connected.
//! For S = 50 the first conv needs a PAD (SAME would pad (0,1)), the strided depthwise conv is
//! exactly SAME (25 -> 13), the (0,1,0,1) conv needs a PAD again (SAME would give 7, not 6).
//!
//! [`per_op`] compares ONNX Runtime with TFLite's reference kernels operator by operator, each
//! fed the same int8 inputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kdruntime::letterbox::{letterbox, Image, OutputFormat};
use kdtests::reference::{self, TempDir};
use kdtrainer::data::import::SplitMix64;
use kdtrainer::export::{onnx, tflite};
use kdtrainer::pipeline::decode;
use kdtrainer::quant::graph::*;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Real photos (full frame and the four quadrant crops of each), letterboxed to `size` RGB by
/// kdruntime's letterbox: `(name, bytes)`.
pub fn photo_inputs(size: usize) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("data/raw/photos");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        let d = decode(&p).unwrap();
        let ch = d.format.channels();
        let stride = d.width * ch;
        let (hh, hw) = (d.height / 2, d.width / 2);
        let crops = [
            ("full", 0, 0, d.height, d.width),
            ("tl", 0, 0, hh, hw),
            ("tr", 0, hw, hh, d.width - hw),
            ("bl", hh, 0, d.height - hh, hw),
            ("br", hh, hw, d.height - hh, d.width - hw),
        ];
        for (tag, y, x, h, w) in crops {
            let start = y * stride + x * ch;
            let img = Image::new(&d.pixels[start..], h, w, stride, d.format).unwrap();
            let mut buf = vec![0u8; size * size * 3];
            letterbox(&img, size, size, OutputFormat::Rgb, &mut buf).unwrap();
            let name = p.file_name().unwrap().to_string_lossy();
            out.push((format!("{name}/{tag}"), buf));
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Act {
    None,
    Relu,
    Relu6,
}

enum Layer {
    Conv {
        src: usize,
        k: usize,
        stride: usize,
        pads: [usize; 4],
        cout: usize,
        dw: bool,
        act: Act,
        pre_act_range: bool,
    },
    Add {
        a: usize,
        b: usize,
        act: Act,
        pre_act_range: bool,
    },
    Pool {
        src: usize,
    },
    Fc {
        src: usize,
        cout: usize,
    },
}

/// NHWC float activations of one image: `(h, w, c, data)`.
#[derive(Clone)]
struct T {
    h: usize,
    w: usize,
    c: usize,
    v: Vec<f64>,
}

struct Params {
    w: Vec<f64>,      // dequantised int8 weights, TFLite layout
    q: Vec<i8>,       // int8 weights
    scales: Vec<f32>, // per output channel
    bias: Vec<f64>,
}

fn act_f(a: Act, x: f64) -> f64 {
    match a {
        Act::None => x,
        Act::Relu => x.max(0.0),
        Act::Relu6 => x.clamp(0.0, 6.0),
    }
}

fn fused(a: Act) -> FusedAct {
    match a {
        Act::None => FusedAct::None,
        Act::Relu => FusedAct::Relu,
        Act::Relu6 => FusedAct::Relu6,
    }
}

/// Per-channel symmetric int8 weights of `cout` channels (`per` values each, channel-major
/// along `stride`/`offset` as given by `index(c, j)`).
fn quantise(
    raw: &[f64],
    cout: usize,
    index: impl Fn(usize, usize) -> usize,
    per: usize,
) -> (Vec<i8>, Vec<f64>, Vec<f32>) {
    let mut q = vec![0i8; raw.len()];
    let mut w = vec![0f64; raw.len()];
    let mut scales = Vec::with_capacity(cout);
    for c in 0..cout {
        let m = (0..per)
            .map(|j| raw[index(c, j)].abs())
            .fold(1e-6, f64::max);
        let s = (m / 127.0) as f32;
        for j in 0..per {
            let i = index(c, j);
            let v = (raw[i] / f64::from(s)).round().clamp(-127.0, 127.0);
            q[i] = v as i8;
            w[i] = v * f64::from(s);
        }
        scales.push(s);
    }
    (q, w, scales)
}

/// The net described in the module docs for input side `size` with `classes` outputs, random
/// weights from `seed`, calibrated on `images` (each `size * size * 3` RGB bytes).
pub fn mobilenet_like(size: usize, classes: usize, seed: u64, images: &[Vec<u8>]) -> IntGraph {
    let p = |t, b, l, r| [t, b, l, r];
    use Layer::*;
    // Tensor 0 = uint8 input, 1 = int8 input, layer i writes tensor i + 2.
    let layers = vec![
        Conv {
            src: 1,
            k: 3,
            stride: 2,
            pads: p(1, 1, 1, 1),
            cout: 8,
            dw: false,
            act: Act::Relu6,
            pre_act_range: false,
        },
        Conv {
            src: 2,
            k: 3,
            stride: 1,
            pads: p(1, 1, 1, 1),
            cout: 8,
            dw: true,
            act: Act::Relu6,
            pre_act_range: false,
        },
        Conv {
            src: 3,
            k: 1,
            stride: 1,
            pads: p(0, 0, 0, 0),
            cout: 8,
            dw: false,
            act: Act::None,
            pre_act_range: false,
        },
        Add {
            a: 2,
            b: 4,
            act: Act::Relu,
            pre_act_range: true,
        },
        Conv {
            src: 5,
            k: 3,
            stride: 2,
            pads: p(1, 1, 1, 1),
            cout: 8,
            dw: true,
            act: Act::Relu6,
            pre_act_range: false,
        },
        Conv {
            src: 6,
            k: 1,
            stride: 1,
            pads: p(0, 0, 0, 0),
            cout: 16,
            dw: false,
            act: Act::Relu,
            pre_act_range: true,
        },
        Conv {
            src: 7,
            k: 3,
            stride: 2,
            pads: p(0, 1, 0, 1),
            cout: 16,
            dw: false,
            act: Act::Relu6,
            pre_act_range: false,
        },
        Conv {
            src: 8,
            k: 1,
            stride: 1,
            pads: p(0, 0, 0, 0),
            cout: 24,
            dw: false,
            act: Act::None,
            pre_act_range: false,
        },
        Pool { src: 9 },
        Fc {
            src: 10,
            cout: classes,
        },
    ];
    let mut rng = SplitMix64::new(seed);
    let mut uni = move || rng.unit() * 2.0 - 1.0;
    // Input: real = (u8 - 127) / 128 (the student normalisation), int8 zero point -1.
    let in_q = QParams {
        scale: 1.0 / 128.0,
        zero_point: 127,
    };
    // Shapes and parameters.
    let mut shapes: Vec<Vec<usize>> = vec![vec![1, size, size, 3], vec![1, size, size, 3]];
    let mut params: Vec<Option<Params>> = Vec::new();
    for l in &layers {
        match *l {
            Conv {
                src,
                k,
                stride,
                pads,
                cout,
                dw,
                ..
            } => {
                let s = &shapes[src];
                let (h, w, cin) = (s[1], s[2], s[3]);
                let oh = (h + pads[0] + pads[1] - k) / stride + 1;
                let ow = (w + pads[2] + pads[3] - k) / stride + 1;
                let fan_in = if dw { k * k } else { k * k * cin };
                let a = (6.0 / fan_in as f64).sqrt();
                let n = if dw { k * k * cout } else { cout * k * k * cin };
                let raw: Vec<f64> = (0..n).map(|_| uni() * a).collect();
                let (q, wv, scales) = if dw {
                    quantise(&raw, cout, |c, j| j * cout + c, k * k)
                } else {
                    let per = k * k * cin;
                    quantise(&raw, cout, |c, j| c * per + j, per)
                };
                let bias = (0..cout).map(|_| uni() * 0.1).collect();
                params.push(Some(Params {
                    w: wv,
                    q,
                    scales,
                    bias,
                }));
                shapes.push(vec![1, oh, ow, cout]);
            }
            Add { a, .. } => {
                params.push(None);
                shapes.push(shapes[a].clone());
            }
            Pool { src } => {
                params.push(None);
                shapes.push(vec![1, shapes[src][3]]);
            }
            Fc { src, cout } => {
                let cin = shapes[src][1];
                let a = (6.0 / cin as f64).sqrt();
                let raw: Vec<f64> = (0..cout * cin).map(|_| uni() * a).collect();
                let (q, wv, scales) = quantise(&raw, cout, |c, j| c * cin + j, cin);
                let bias = (0..cout).map(|_| uni() * 0.1).collect();
                params.push(Some(Params {
                    w: wv,
                    q,
                    scales,
                    bias,
                }));
                shapes.push(vec![1, cout]);
            }
        }
    }
    // Calibration: float forward on every image; ranges include 0.
    let nt = shapes.len();
    let mut lo = vec![0f64; nt];
    let mut hi = vec![0f64; nt];
    for img in images {
        let x: Vec<f64> = img
            .iter()
            .map(|&b| (f64::from(b) - 127.0) / 128.0)
            .collect();
        let mut ts: Vec<T> = vec![
            T {
                h: size,
                w: size,
                c: 3,
                v: x.clone(),
            },
            T {
                h: size,
                w: size,
                c: 3,
                v: x,
            },
        ];
        for (li, l) in layers.iter().enumerate() {
            let (pre, act) = forward(l, &ts, params[li].as_ref());
            let calib_pre = matches!(
                l,
                Conv {
                    pre_act_range: true,
                    ..
                } | Add {
                    pre_act_range: true,
                    ..
                }
            );
            let post = T {
                v: pre.v.iter().map(|&v| act_f(act, v)).collect(),
                ..pre.clone()
            };
            let r = if calib_pre { &pre } else { &post };
            let o = li + 2;
            for &v in &r.v {
                lo[o] = lo[o].min(v);
                hi[o] = hi[o].max(v);
            }
            ts.push(post);
        }
    }
    let qp = |o: usize| {
        let scale = ((hi[o] - lo[o]) / 255.0).max(1e-6);
        let zp = (-128.0 - lo[o] / scale).round().clamp(-128.0, 127.0) as i32;
        QParams {
            scale: scale as f32,
            zero_point: zp,
        }
    };
    let mut tensors = vec![
        IntTensor {
            name: "input".into(),
            shape: shapes[0].clone(),
            elem: ElemType::U8,
            q: in_q,
        },
        IntTensor {
            name: "input_int8".into(),
            shape: shapes[1].clone(),
            elem: ElemType::I8,
            q: QParams {
                scale: in_q.scale,
                zero_point: in_q.zero_point - 128,
            },
        },
    ];
    for (o, shape) in shapes.iter().enumerate().skip(2) {
        tensors.push(IntTensor {
            name: format!("t{o}"),
            shape: shape.clone(),
            elem: ElemType::I8,
            q: qp(o),
        });
    }
    let mut ops = vec![IntOp::Quantize {
        input: 0,
        output: 1,
    }];
    for (li, l) in layers.iter().enumerate() {
        let o = li + 2;
        let cw = |src: usize, shape: Vec<usize>| {
            let p = params[li].as_ref().unwrap();
            let in_scale = f64::from(tensors[src].q.scale);
            ChannelWeights {
                shape,
                values: p.q.clone(),
                scales: p.scales.clone(),
                bias: p
                    .bias
                    .iter()
                    .zip(&p.scales)
                    .map(|(b, s)| (b / (in_scale * f64::from(*s))).round() as i32)
                    .collect(),
            }
        };
        ops.push(match *l {
            Conv {
                src,
                k,
                stride,
                pads,
                cout,
                dw,
                act,
                ..
            } => {
                let shape = if dw {
                    vec![1, k, k, cout]
                } else {
                    vec![cout, k, k, shapes[src][3]]
                };
                IntOp::Conv {
                    input: src,
                    output: o,
                    weights: cw(src, shape),
                    depthwise: dw,
                    stride,
                    pads,
                    act: fused(act),
                }
            }
            Add { a, b, act, .. } => IntOp::Add {
                a,
                b,
                output: o,
                act: fused(act),
            },
            Pool { src } => IntOp::GlobalAvgPool {
                input: src,
                output: o,
            },
            Fc { src, cout } => IntOp::FullyConnected {
                input: src,
                output: o,
                weights: cw(src, vec![cout, shapes[src][1]]),
                act: FusedAct::None,
            },
        });
    }
    IntGraph {
        tensors,
        ops,
        input: 0,
        output: nt - 1,
    }
}

/// One layer in float64: the pre-activation output and the activation to apply.
fn forward(l: &Layer, ts: &[T], p: Option<&Params>) -> (T, Act) {
    match *l {
        Layer::Conv {
            src,
            k,
            stride,
            pads,
            cout,
            dw,
            act,
            ..
        } => {
            let x = &ts[src];
            let p = p.unwrap();
            let oh = (x.h + pads[0] + pads[1] - k) / stride + 1;
            let ow = (x.w + pads[2] + pads[3] - k) / stride + 1;
            let mut v = vec![0f64; oh * ow * cout];
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..cout {
                        let mut acc = p.bias[o];
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pads[0] as isize;
                                let ix = (ox * stride + kx) as isize - pads[2] as isize;
                                if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize {
                                    continue;
                                }
                                let base = (iy as usize * x.w + ix as usize) * x.c;
                                if dw {
                                    acc += p.w[(ky * k + kx) * cout + o] * x.v[base + o];
                                } else {
                                    for i in 0..x.c {
                                        acc +=
                                            p.w[((o * k + ky) * k + kx) * x.c + i] * x.v[base + i];
                                    }
                                }
                            }
                        }
                        v[(oy * ow + ox) * cout + o] = acc;
                    }
                }
            }
            (
                T {
                    h: oh,
                    w: ow,
                    c: cout,
                    v,
                },
                act,
            )
        }
        Layer::Add { a, b, act, .. } => {
            let (x, y) = (&ts[a], &ts[b]);
            (
                T {
                    v: x.v.iter().zip(&y.v).map(|(a, b)| a + b).collect(),
                    ..x.clone()
                },
                act,
            )
        }
        Layer::Pool { src } => {
            let x = &ts[src];
            let n = (x.h * x.w) as f64;
            let v = (0..x.c)
                .map(|c| x.v.iter().skip(c).step_by(x.c).sum::<f64>() / n)
                .collect();
            (
                T {
                    h: 1,
                    w: 1,
                    c: x.c,
                    v,
                },
                Act::None,
            )
        }
        Layer::Fc { src, cout } => {
            let x = &ts[src];
            let p = p.unwrap();
            let v = (0..cout)
                .map(|o| p.bias[o] + (0..x.c).map(|i| p.w[o * x.c + i] * x.v[i]).sum::<f64>())
                .collect();
            (
                T {
                    h: 1,
                    w: 1,
                    c: cout,
                    v,
                },
                Act::None,
            )
        }
    }
}

/// kdruntime's raw int8 outputs of `model` for each input.
pub fn kdruntime_outputs(model: &[u8], inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let m = kdruntime::Model::from_bytes(model).unwrap();
    let mut arena = vec![0u8; m.arena_size().unwrap()];
    inputs
        .iter()
        .map(|x| {
            let mut it = kdruntime::Interpreter::new(&m, &mut arena).unwrap();
            it.input_mut(0).unwrap().copy_from_slice(x);
            it.invoke().unwrap();
            it.output(0).unwrap().to_vec()
        })
        .collect()
}

/// Per operator, with identical inputs: BUILTIN_REF with every tensor preserved gives each
/// operator's int8 inputs and output; the ONNX operator's nodes (cut out of the exported model
/// with onnx.utils.extract_model) run in ORT on those inputs (NCHW) and are compared.
const PER_OP: &str = r#"
import json, sys, numpy as np, onnx, onnx.utils, onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter, OpResolverType
tfl, onx, inp, edges_json, work = sys.argv[1:6]
edges = json.loads(edges_json)
it = Interpreter(model_path=tfl, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                 experimental_preserve_all_tensors=True)
it.allocate_tensors()
idx = {d["name"]: d["index"] for d in it.get_tensor_details()}
shape = it.get_input_details()[0]["shape"]
x = np.fromfile(inp, dtype=np.uint8).reshape(-1, *shape)
m = onnx.load(onx)
for e in edges:  # value_info lets extract_model cut at every activation (int8, shape free)
    for n in e[0] + [e[1]]:
        m.graph.value_info.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.INT8, None))
onnx.save(m, work + "/vi.onnx")
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
sess = []
for i, (ins, out) in enumerate(edges):
    onnx.utils.extract_model(work + "/vi.onnx", f"{work}/{i}.onnx", ins, [out], check_model=False)
    sess.append(ort.InferenceSession(f"{work}/{i}.onnx", so, providers=["CPUExecutionProvider"]))
res = [[0, 0, 0] for _ in edges]
for xi in x:
    it.set_tensor(it.get_input_details()[0]["index"], xi)
    it.invoke()
    for (ins, out), s, r in zip(edges, sess, res):
        feed = {}
        for n in ins:
            t = it.get_tensor(idx[n])
            feed[n] = t.transpose(0, 3, 1, 2).copy() if t.ndim == 4 and t.dtype == np.int8 else t
        v = s.run([out], feed)[0]
        if v.ndim == 4:
            v = v.transpose(0, 2, 3, 1)
        d = np.abs(v.astype(np.int32) - it.get_tensor(idx[out]).astype(np.int32))
        r[0] += int((d != 0).sum()); r[1] += int(d.size); r[2] = max(r[2], int(d.max()))
print(json.dumps(res))
"#;

/// For each operator of `g` on `inputs`: its output tensor's name and `[values that differ,
/// values, largest difference in LSB]`.
pub fn per_op(g: &IntGraph, inputs: &[Vec<u8>]) -> Vec<(String, [usize; 3])> {
    let name = |i: usize| g.tensors[i].name.clone();
    let edges: Vec<(Vec<String>, String)> = g
        .ops
        .iter()
        .map(|op| match op {
            IntOp::Quantize { input, output }
            | IntOp::Conv { input, output, .. }
            | IntOp::GlobalAvgPool { input, output }
            | IntOp::FullyConnected { input, output, .. } => (vec![name(*input)], name(*output)),
            IntOp::Add { a, b, output, .. } => (vec![name(*a), name(*b)], name(*output)),
        })
        .collect();
    let dir = TempDir::new("per-op").unwrap();
    let tfl = dir
        .write("m.tflite", &tflite::write(g, "t").unwrap())
        .unwrap();
    let onx = dir.write("m.onnx", &onnx::write(g).unwrap()).unwrap();
    let inp = dir.write("in.bin", &inputs.concat()).unwrap();
    let (python, _) = reference::harness_paths().unwrap();
    let out = std::process::Command::new(python)
        .args(["-c", PER_OP])
        .args([&tfl, &onx, &inp])
        .arg(serde_json::to_string(&edges).unwrap())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "per-op script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: Vec<[usize; 3]> =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    edges.into_iter().map(|e| e.1).zip(res).collect()
}
