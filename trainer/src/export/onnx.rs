//! [`IntGraph`] -> ONNX in QOperator form (opset 13 plus `com.microsoft` version 1).
//!
//! The model takes the same bytes as the TFLite model: a uint8 NHWC tensor `[1, S, S, 3]` named
//! like the graph input, and returns the int8 `[1, classes]` output. Inside, activations are
//! NCHW, the layout of ONNX convolutions:
//!
//! | graph | ONNX |
//! |---|---|
//! | `Quantize` | Transpose (NHWC -> NCHW) -> DequantizeLinear (uint8) -> QuantizeLinear (int8), as TFLite's QUANTIZE |
//! | `Conv` | QLinearConv: int8 weights `[O, I/group, KH, KW]` (regular: TFLite `[O,KH,KW,I]` transposed; depthwise: `[1,KH,KW,C]` -> `[C,1,KH,KW]`, `group = C`), per-channel `w_scale`/`w_zero_point` vectors, int32 bias, explicit `pads = [top, left, bottom, right]` |
//! | `Add` | com.microsoft QLinearAdd |
//! | `GlobalAvgPool` | com.microsoft QLinearGlobalAveragePool (`channels_last = 0`) -> Reshape `[1, C]` |
//! | `FullyConnected` | com.microsoft QGemm (`transB = 1`, per-channel `b_scale`, int32 bias `C`) |
//! | fused ReLU / ReLU6 | Clip on the int8 output with TFLite's quantised bounds (only when narrower than int8) |
//!
//! ONNX Runtime requantises with a float multiplier and rounds half to even where TFLite uses a
//! fixed-point multiplier: each operator's output can differ by 1 LSB on a fraction of a
//! percent of its values, and through a trained network those differences grow, so the final
//! int8 outputs are not bit-exact with TFLite's (trainer/tests/qat_proofs.rs measures both).
//!
//! Every constant is an initializer named after its tensor (`<t>/scale`, `<t>/zero_point`,
//! `<op output>/weights`, ...).
//!
//! ONNX tensors carry no quantisation, so the model's `metadata_props` repeat what a runtime
//! needs to read the bytes, in the format `kdrun run --backend ort` reads:
//! `kdedge.input_scale` / `kdedge.input_zero_point` (the uint8 input), `kdedge.output_scale` /
//! `kdedge.output_zero_point` (the int8 output) and `kdedge.output_softmax` (always `false`).

use std::collections::HashSet;

use anyhow::{anyhow, Result};
use prost::Message;

use super::check_graph;
use super::onnx_proto::*;
use crate::quant::graph::{ChannelWeights, ElemType, FusedAct, IntGraph, IntOp, IntTensor};

/// ONNX IR version written (ONNX 1.10+, accepted by onnx.checker and ONNX Runtime 1.32).
pub const IR_VERSION: i64 = 8;
/// Default-domain opset.
pub const OPSET: i64 = 13;
/// `com.microsoft` opset.
pub const MS_OPSET: i64 = 1;
/// Domain of QLinearAdd, QLinearGlobalAveragePool and QGemm.
pub const MS_DOMAIN: &str = "com.microsoft";

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(attribute_type::INT),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(attribute_type::FLOAT),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: i32, shape: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: Some(d as i64),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// Collects nodes and initializers; constants are added once per name.
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    names: HashSet<String>,
}

impl Builder {
    fn constant(&mut self, name: &str, dtype: i32, dims: &[usize], raw: Vec<u8>) -> String {
        if self.names.insert(name.to_string()) {
            self.inits.push(TensorProto {
                dims: dims.iter().map(|&d| d as i64).collect(),
                data_type: Some(dtype),
                name: Some(name.to_string()),
                raw_data: Some(raw),
            });
        }
        name.to_string()
    }

    /// `<t>/scale` (float scalar) and `<t>/zero_point` (scalar of the tensor's type).
    fn qparams(&mut self, t: &IntTensor) -> [String; 2] {
        let scale = self.constant(
            &format!("{}/scale", t.name),
            data_type::FLOAT,
            &[],
            t.q.scale.to_le_bytes().to_vec(),
        );
        let (dtype, byte) = match t.elem {
            ElemType::U8 => (data_type::UINT8, t.q.zero_point as u8),
            ElemType::I8 => (data_type::INT8, t.q.zero_point as i8 as u8),
        };
        let zp = self.constant(&format!("{}/zero_point", t.name), dtype, &[], vec![byte]);
        [scale, zp]
    }

    /// Weights (already in ONNX layout), per-channel scales and zero points, int32 bias.
    fn weights(
        &mut self,
        name: &str,
        w: &ChannelWeights,
        values: Vec<i8>,
        dims: &[usize],
    ) -> [String; 4] {
        let n = w.scales.len();
        let weights = self.constant(
            &format!("{name}/weights"),
            data_type::INT8,
            dims,
            values.iter().map(|&v| v as u8).collect(),
        );
        let scales = self.constant(
            &format!("{name}/weight_scales"),
            data_type::FLOAT,
            &[n],
            w.scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        );
        let zps = self.constant(
            &format!("{name}/weight_zero_points"),
            data_type::INT8,
            &[n],
            vec![0; n],
        );
        let bias = self.constant(
            &format!("{name}/bias"),
            data_type::INT32,
            &[n],
            w.bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
        );
        [weights, scales, zps, bias]
    }

    fn node(
        &mut self,
        op_type: &str,
        domain: &str,
        inputs: Vec<String>,
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.to_string()],
            name: Some(format!("{output}/{op_type}")),
            op_type: Some(op_type.to_string()),
            attribute,
            domain: Some(domain.to_string()),
        });
    }

    /// Output name of an operator with fused activation `act` writing `out`: `out` itself when
    /// no clamp is needed, else `<out>/preact`, clamped into `out` by a Clip node.
    fn fused_output(
        &mut self,
        out: &IntTensor,
        act: FusedAct,
    ) -> Result<(String, Option<(i8, i8)>)> {
        use kdruntime::tflite::schema::activation as a;
        let code = match act {
            FusedAct::None => a::NONE,
            FusedAct::Relu => a::RELU,
            FusedAct::Relu6 => a::RELU6,
        };
        let (lo, hi) = kdruntime::quant::activation_range_quantized(
            code,
            out.q.scale,
            out.q.zero_point,
            -128,
            127,
        )
        .ok_or_else(|| anyhow!("'{}': no quantised range for {act:?}", out.name))?;
        if (lo, hi) == (-128, 127) {
            return Ok((out.name.clone(), None));
        }
        if lo > hi {
            return Err(anyhow!(
                "'{}': {act:?} leaves an empty range {lo}..={hi} at scale {} zero point {}",
                out.name,
                out.q.scale,
                out.q.zero_point
            ));
        }
        Ok((format!("{}/preact", out.name), Some((lo as i8, hi as i8))))
    }

    fn clip(&mut self, out: &IntTensor, pre: String, range: Option<(i8, i8)>) {
        if let Some((lo, hi)) = range {
            let min = self.constant(
                &format!("{}/clip_min", out.name),
                data_type::INT8,
                &[],
                vec![lo as u8],
            );
            let max = self.constant(
                &format!("{}/clip_max", out.name),
                data_type::INT8,
                &[],
                vec![hi as u8],
            );
            self.node("Clip", "", vec![pre, min, max], &out.name, vec![]);
        }
    }
}

/// The `metadata_props` written into every model, in order: the graph input's and output's
/// quantisation and whether the output already went through a softmax (`graph` has passed
/// [`check_graph`]).
///
/// Scales are written as the decimal of their exact float64 value, so a reader parsing them as
/// float64 (kdrun) and narrowing to float32 gets the graph's scale bit for bit. The integer
/// graph ends in its fully connected logits, never in a softmax, so `kdedge.output_softmax` is
/// always `"false"`: a reader applies softmax (multi-class) or sigmoid (multi-label) itself, as
/// `inference_config.json`'s task says; `"true"` would tell it the int8 values are already
/// probabilities.
fn metadata(graph: &IntGraph) -> Vec<(&'static str, String)> {
    let (input, output) = (&graph.tensors[graph.input], &graph.tensors[graph.output]);
    let scale = |s: f32| f64::from(s).to_string();
    vec![
        ("kdedge.input_scale", scale(input.q.scale)),
        ("kdedge.input_zero_point", input.q.zero_point.to_string()),
        ("kdedge.output_scale", scale(output.q.scale)),
        ("kdedge.output_zero_point", output.q.zero_point.to_string()),
        ("kdedge.output_softmax", "false".to_string()),
    ]
}

/// TFLite filter layout -> ONNX `[O, I/group, KH, KW]`.
fn onnx_filter(w: &ChannelWeights, depthwise: bool) -> (Vec<i8>, [usize; 4]) {
    let [a, kh, kw, d] = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
    if depthwise {
        // [1, KH, KW, C] -> [C, 1, KH, KW]
        let mut v = Vec::with_capacity(w.values.len());
        for c in 0..d {
            for y in 0..kh {
                for x in 0..kw {
                    v.push(w.values[(y * kw + x) * d + c]);
                }
            }
        }
        (v, [d, 1, kh, kw])
    } else {
        // [O, KH, KW, I] -> [O, I, KH, KW]
        let mut v = Vec::with_capacity(w.values.len());
        for o in 0..a {
            for i in 0..d {
                for y in 0..kh {
                    for x in 0..kw {
                        v.push(w.values[((o * kh + y) * kw + x) * d + i]);
                    }
                }
            }
        }
        (v, [a, d, kh, kw])
    }
}

/// Writes `graph` as an ONNX model (protobuf bytes) with its quantisation metadata; see the
/// module docs for the mapping and the metadata.
///
/// Errors when the graph fails [`check_graph`] or a fused activation has no representable
/// range at its output's quantisation.
pub fn write(graph: &IntGraph) -> Result<Vec<u8>> {
    check_graph(graph)?;
    let mut b = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        names: HashSet::new(),
    };
    let t = |ix: usize| &graph.tensors[ix];
    for op in &graph.ops {
        match op {
            IntOp::Quantize { input, output } => {
                let (x, y) = (t(*input), t(*output));
                let nchw = format!("{}/nchw", x.name);
                b.node(
                    "Transpose",
                    "",
                    vec![x.name.clone()],
                    &nchw,
                    vec![attr_ints("perm", &[0, 3, 1, 2])],
                );
                let [xs, xz] = b.qparams(x);
                let real = format!("{}/real", x.name);
                b.node("DequantizeLinear", "", vec![nchw, xs, xz], &real, vec![]);
                let [ys, yz] = b.qparams(y);
                b.node("QuantizeLinear", "", vec![real, ys, yz], &y.name, vec![]);
            }
            IntOp::Conv {
                input,
                output,
                weights,
                depthwise,
                stride,
                pads,
                act,
            } => {
                let (x, y) = (t(*input), t(*output));
                let (values, dims) = onnx_filter(weights, *depthwise);
                let [w, ws, wz, bias] = b.weights(&y.name, weights, values, &dims);
                let [xs, xz] = b.qparams(x);
                let [ys, yz] = b.qparams(y);
                let (pre, range) = b.fused_output(y, *act)?;
                let s = *stride as i64;
                let [pt, pb, pl, pr] = pads.map(|p| p as i64);
                let group = if *depthwise { x.shape[3] as i64 } else { 1 };
                b.node(
                    "QLinearConv",
                    "",
                    vec![x.name.clone(), xs, xz, w, ws, wz, ys, yz, bias],
                    &pre,
                    vec![
                        attr_ints("dilations", &[1, 1]),
                        attr_int("group", group),
                        attr_ints("kernel_shape", &[dims[2] as i64, dims[3] as i64]),
                        attr_ints("pads", &[pt, pl, pb, pr]),
                        attr_ints("strides", &[s, s]),
                    ],
                );
                b.clip(y, pre, range);
            }
            IntOp::Add {
                a,
                b: rhs,
                output,
                act,
            } => {
                let (x0, x1, y) = (t(*a), t(*rhs), t(*output));
                let [s0, z0] = b.qparams(x0);
                let [s1, z1] = b.qparams(x1);
                let [ys, yz] = b.qparams(y);
                let (pre, range) = b.fused_output(y, *act)?;
                b.node(
                    "QLinearAdd",
                    MS_DOMAIN,
                    vec![x0.name.clone(), s0, z0, x1.name.clone(), s1, z1, ys, yz],
                    &pre,
                    vec![],
                );
                b.clip(y, pre, range);
            }
            IntOp::GlobalAvgPool { input, output } => {
                let (x, y) = (t(*input), t(*output));
                let [xs, xz] = b.qparams(x);
                let [ys, yz] = b.qparams(y);
                let pooled = format!("{}/nc11", y.name);
                b.node(
                    "QLinearGlobalAveragePool",
                    MS_DOMAIN,
                    vec![x.name.clone(), xs, xz, ys, yz],
                    &pooled,
                    vec![attr_int("channels_last", 0)],
                );
                let shape = b.constant(
                    &format!("{}/shape", y.name),
                    data_type::INT64,
                    &[2],
                    [1i64, y.shape[1] as i64]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                );
                b.node("Reshape", "", vec![pooled, shape], &y.name, vec![]);
            }
            IntOp::FullyConnected {
                input,
                output,
                weights,
                act,
            } => {
                let (x, y) = (t(*input), t(*output));
                let [w, ws, wz, bias] =
                    b.weights(&y.name, weights, weights.values.clone(), &weights.shape);
                let [xs, xz] = b.qparams(x);
                let [ys, yz] = b.qparams(y);
                let (pre, range) = b.fused_output(y, *act)?;
                b.node(
                    "QGemm",
                    MS_DOMAIN,
                    vec![x.name.clone(), xs, xz, w, ws, wz, bias, ys, yz],
                    &pre,
                    vec![attr_float("alpha", 1.0), attr_int("transB", 1)],
                );
                b.clip(y, pre, range);
            }
        }
    }
    let (input, output) = (t(graph.input), t(graph.output));
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("kdedge".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(
            "full-integer classifier: uint8 NHWC letterboxed RGB in, int8 logits out".into(),
        ),
        graph: Some(GraphProto {
            node: b.nodes,
            name: Some("kdedge".into()),
            initializer: b.inits,
            input: vec![value_info(&input.name, data_type::UINT8, &input.shape)],
            output: vec![value_info(&output.name, data_type::INT8, &output.shape)],
        }),
        opset_import: vec![
            OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET),
            },
            OperatorSetIdProto {
                domain: Some(MS_DOMAIN.into()),
                version: Some(MS_OPSET),
            },
        ],
        metadata_props: metadata(graph)
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v),
            })
            .collect(),
    };
    Ok(model.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_transposed_to_oihw() {
        // Regular: [O=2, KH=1, KW=2, I=3], value = o*100 + x*10 + i.
        let mut values = Vec::new();
        for o in 0..2 {
            for x in 0..2 {
                for i in 0..3 {
                    values.push((o * 100 + x * 10 + i) as i8);
                }
            }
        }
        let w = ChannelWeights {
            shape: vec![2, 1, 2, 3],
            values: values.clone(),
            scales: vec![1.0; 2],
            bias: vec![0; 2],
        };
        let (v, dims) = onnx_filter(&w, false);
        assert_eq!(dims, [2, 3, 1, 2]);
        // ONNX [o][i][0][x] = TFLite [o][0][x][i]: o=1, i=2, x=1 -> index ((1*3+2)*1+0)*2+1 = 11.
        assert_eq!(v[11], values[(2 + 1) * 3 + 2]);
        assert_eq!(v[11], 112);
        // Depthwise: [1, KH=2, KW=1, C=3] -> [3, 1, 2, 1]; value = y*10 + c.
        let dw = ChannelWeights {
            shape: vec![1, 2, 1, 3],
            values: vec![0, 1, 2, 10, 11, 12],
            scales: vec![1.0; 3],
            bias: vec![0; 3],
        };
        let (v, dims) = onnx_filter(&dw, true);
        assert_eq!(dims, [3, 1, 2, 1]);
        assert_eq!(v, vec![0, 10, 1, 11, 2, 12]);
    }
}
