//! Lowering a calibrated (PTQ) or trained (QAT) [`QatNet`] to the integer graph: the weights,
//! biases and activation parameters its evaluation pass fake-quantises with, as integers.
//!
//! Layer by layer: QUANTIZE (uint8 input -> int8), one CONV_2D / DEPTHWISE_CONV_2D per
//! conv + BN + activation (BatchNorm folded with the running statistics, ReLU6 fused, padding
//! `k / 2` on every side as PyTorch pads), ADD per residual, MEAN (global average pooling),
//! FULLY_CONNECTED. Tensor names: `input` (uint8), `input_int8`, each convolution's variable
//! prefix (`features.3.conv.1.0`), `<group>.add`, `pool`, `logits`.

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use super::fake_quant::{quantize_bias, quantize_weights, weight_scales, BIAS_MAX};
use super::graph::{
    ChannelWeights, ElemType, FusedAct, IntGraph, IntOp, IntTensor, QParams, TensorIx,
};
use super::qnet::{QBlock, QConv, QatNet};
use crate::models::Classifier;

/// Builder state: the graph so far and the current tensor.
struct Lowering {
    g: IntGraph,
    /// Current tensor and its spatial size.
    cur: TensorIx,
    hw: usize,
}

impl Lowering {
    fn tensor(&mut self, name: &str, shape: Vec<usize>, q: QParams) -> TensorIx {
        self.g.tensors.push(IntTensor {
            name: name.to_string(),
            shape,
            elem: ElemType::I8,
            q,
        });
        self.g.tensors.len() - 1
    }

    fn q(&self, t: TensorIx) -> QParams {
        self.g.tensors[t].q
    }

    fn conv(&mut self, c: &QConv) -> Result<()> {
        let s = c.shape;
        let (k, stride) = (s.k as usize, s.stride as usize);
        let depthwise = s.groups > 1 && s.groups == s.cin && s.groups == s.cout;
        if s.groups != 1 && !depthwise {
            bail!(
                "{}: grouped convolution (groups {}) has no int8 lowering",
                c.name,
                s.groups
            );
        }
        let pad = k / 2;
        if self.hw + 2 * pad < k {
            bail!(
                "{}: input {}x{} is smaller than the kernel",
                c.name,
                self.hw,
                self.hw
            );
        }
        let hw = (self.hw + 2 * pad - k) / stride + 1;
        let q_in = self.q(self.cur);
        let (w, b) = tch::no_grad(|| c.folded());
        let weights = channel_weights(&c.name, &w, &b, q_in, depthwise)?;
        let q_out = c.out.checked_qparams()?;
        let out = self.tensor(&c.name, vec![1, hw, hw, s.cout as usize], q_out);
        self.g.ops.push(IntOp::Conv {
            input: self.cur,
            output: out,
            weights,
            depthwise,
            stride,
            pads: [pad; 4],
            act: c.act,
        });
        self.cur = out;
        self.hw = hw;
        Ok(())
    }
}

/// Values of a float tensor of integers.
fn ints(t: &Tensor) -> Result<Vec<f64>> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).context("reading a tensor")
}

/// Per-channel int8 weights and int32 bias of float weights `w` (`[O, ...]` in PyTorch order)
/// and bias `b` read by an input quantised with `q_in`, reordered to TFLite's layout
/// (CONV `[O, KH, KW, I]`, DEPTHWISE `[1, KH, KW, C]`, FULLY_CONNECTED `[O, I]`).
fn channel_weights(
    name: &str,
    w: &Tensor,
    b: &Tensor,
    q_in: QParams,
    depthwise: bool,
) -> Result<ChannelWeights> {
    tch::no_grad(|| {
        let scales = weight_scales(w);
        let q = quantize_weights(w, &scales);
        let qb = quantize_bias(b, q_in.scale, &scales);
        let q = match (w.dim(), depthwise) {
            (4, true) => q.permute([1, 2, 3, 0]),
            (4, false) => q.permute([0, 2, 3, 1]),
            (2, _) => q,
            (d, _) => bail!("{name}: weights of rank {d}"),
        };
        let shape: Vec<usize> = q.size().iter().map(|&d| d as usize).collect();
        let values = ints(&q.contiguous())?
            .into_iter()
            .map(|v| v as i8)
            .collect();
        let bias = ints(&qb)?;
        if let Some((c, v)) = bias.iter().enumerate().find(|(_, v)| v.abs() >= BIAS_MAX) {
            bail!(
                "{name}: bias of channel {c} quantises to {v}, outside int32 (input scale {} \
                 times a tiny weight scale)",
                q_in.scale
            );
        }
        let scales = Vec::<f32>::try_from(&scales).context("weight scales")?;
        Ok(ChannelWeights {
            shape,
            values,
            scales,
            bias: bias.into_iter().map(|v| v as i32).collect(),
        })
    })
}

impl QatNet {
    /// The integer graph of the network's evaluation pass (see the module docs). Errors when an
    /// activation was never observed (calibrate first), a bias overflows int32, or a layer has
    /// no int8 form.
    pub fn to_int_graph(&self) -> Result<IntGraph> {
        let size = self.spec().input_size as usize;
        let iq = self.input_quant();
        let mut l = Lowering {
            g: IntGraph {
                tensors: vec![IntTensor {
                    name: "input".into(),
                    shape: vec![1, size, size, 3],
                    elem: ElemType::U8,
                    q: iq.q,
                }],
                ops: Vec::new(),
                input: 0,
                output: 0,
            },
            cur: 0,
            hw: size,
        };
        let q8 = l.tensor("input_int8", vec![1, size, size, 3], iq.int8());
        l.g.ops.push(IntOp::Quantize {
            input: 0,
            output: q8,
        });
        l.cur = q8;
        for (group, _, block) in &self.layers {
            match block {
                QBlock::Conv(c) => l.conv(c)?,
                QBlock::Inverted {
                    expand,
                    dw,
                    project,
                    add,
                } => {
                    let x = l.cur;
                    if let Some(e) = expand {
                        l.conv(e)?;
                    }
                    l.conv(dw)?;
                    l.conv(project)?;
                    if let Some(obs) = add {
                        let shape = l.g.tensors[l.cur].shape.clone();
                        if l.g.tensors[x].shape != shape {
                            bail!("{group}: residual add of different shapes");
                        }
                        let out = l.tensor(&obs.name, shape, obs.checked_qparams()?);
                        l.g.ops.push(IntOp::Add {
                            a: l.cur,
                            b: x,
                            output: out,
                            act: FusedAct::None,
                        });
                        l.cur = out;
                    }
                }
            }
        }
        let channels = l.g.tensors[l.cur].shape[3];
        let pool = l.tensor("pool", vec![1, channels], self.pool.checked_qparams()?);
        l.g.ops.push(IntOp::GlobalAvgPool {
            input: l.cur,
            output: pool,
        });
        let h = &self.head;
        let weights = channel_weights(&h.name, &h.weight, &h.bias, l.q(pool), false)?;
        let classes = weights.shape[0];
        let logits = l.tensor("logits", vec![1, classes], h.out.checked_qparams()?);
        l.g.ops.push(IntOp::FullyConnected {
            input: pool,
            output: logits,
            weights,
            act: FusedAct::None,
        });
        l.g.output = logits;
        Ok(l.g)
    }
}
