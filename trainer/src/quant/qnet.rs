//! The quantisation-aware network: a student (MobileNetV2 / EfficientNet-Lite) rebuilt with
//! fake quantisation at every tensor the integer graph holds, so its forward pass computes what
//! the int8 model computes, and its variables can be fine-tuned by the training engine.
//!
//! # What is simulated
//!
//! * **Input.** The normalised images are mapped back to their uint8 bytes and on to the int8
//!   grid of the graph input ([`InputQuant`]); the first convolution absorbs what one per-tensor
//!   `(scale, zero_point)` cannot express.
//! * **Conv + BN + activation** (one integer CONV_2D / DEPTHWISE_CONV_2D with fused ReLU6):
//!   - training, BN not frozen: PyTorch's `ConvBn2d` QAT scheme (Jacob et al. 2018, section
//!     3.2): the weights are folded with the *running* statistics `w * gamma / sqrt(var + eps)`
//!     and fake-quantised per output channel, the convolution's output is divided back by
//!     `gamma / sqrt(var + eps)` and batch-normalised with the *batch* statistics (which also
//!     update the running ones, momentum [`BN_MOMENTUM`]);
//!   - training with frozen BN, evaluation, lowering: the BatchNorm is folded with the running
//!     statistics ([`fold_batch_norm`]), the weights fake-quantised per channel, the bias
//!     quantised to int32 with `input_scale * weight_scale[c]`: exactly the integer layer;
//!   - the activation (ReLU6 clamp) is applied, then the output is observed and fake-quantised
//!     once: the clamp is fused into the convolution's output quantisation as TFLite fuses it.
//! * **Residual adds** and the **global average pooling** output each have their own observer
//!   and fake quantisation (their own scale and zero point in the integer graph).
//! * **Classifier**: per-channel int8 weights, int32 bias, int8 logits (fake-quantised);
//!   dropout before it in training only.
//!
//! Weights and activations use straight-through estimators ([`super::fake_quant`]).
//! Activation ranges come from [`Observer`]s: min/max during calibration
//! ([`super::ptq::calibrate`]), an EMA (momentum [`QatOptions::observer_momentum`]) while
//! training, frozen after [`QatOptions::freeze_observers_after`] training steps; BatchNorm
//! statistics freeze after [`QatOptions::freeze_bn_after`] steps.
//!
//! # Variables
//!
//! The var store mirrors the float student's names (`features.3.conv.0.0.weight`, BatchNorm
//! `….weight` / `….bias`), so [`QatNet::layer_groups`] are the float network's groups and the
//! training engine trains, checkpoints and resumes it like any network. Buffers (not trainable,
//! saved in every checkpoint): BatchNorm statistics `<bn>.mean` / `<bn>.var` (deliberately not
//! `running_mean` / `running_var`: the engine's end-of-epoch BatchNorm recalibration would
//! otherwise overwrite statistics that QAT freezes and run training-mode passes that move the
//! observers), observer ranges `<tensor>.obs.min` / `<tensor>.obs.max`, and the training step
//! counter `qat_steps` that the freezing points count.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::fake_quant::{fake_quant, fake_quant_bias, fake_quant_weights, quantize, weight_scales};
use super::fold::{fold_batch_norm, InputQuant};
use super::graph::{FusedAct, QParams};
use super::observer::{Observer, Update};
use crate::models::{
    Act, Classifier, ConvBnParts, ConvShape, ModelSpec, StudentBlock, BN_MOMENTUM,
};

/// QAT settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QatOptions {
    /// EMA constant of the activation observers while training (PyTorch's default 0.01).
    pub observer_momentum: f64,
    /// Training steps after which the BatchNorm statistics freeze (`None`: never).
    pub freeze_bn_after: Option<u64>,
    /// Training steps after which the activation ranges freeze (`None`: never).
    pub freeze_observers_after: Option<u64>,
}

impl Default for QatOptions {
    /// Momentum 0.01, nothing frozen.
    fn default() -> Self {
        QatOptions {
            observer_momentum: 0.01,
            freeze_bn_after: None,
            freeze_observers_after: None,
        }
    }
}

impl QatOptions {
    /// Freezing points as fractions of a run of `total_steps` training steps (`round(fraction *
    /// total_steps)`; a fraction of 1 never freezes within the run).
    pub fn from_fractions(
        total_steps: u64,
        freeze_bn_fraction: f64,
        freeze_observers_fraction: f64,
        observer_momentum: f64,
    ) -> Result<QatOptions> {
        for (what, f) in [
            ("freeze_bn_fraction", freeze_bn_fraction),
            ("freeze_observers_fraction", freeze_observers_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                bail!("QAT {what} {f} must be in [0, 1]");
            }
        }
        if !(observer_momentum > 0.0 && observer_momentum <= 1.0) {
            bail!("QAT observer momentum {observer_momentum} must be in (0, 1]");
        }
        let at = |f: f64| (f < 1.0).then(|| (f * total_steps as f64).round() as u64);
        Ok(QatOptions {
            observer_momentum,
            freeze_bn_after: at(freeze_bn_fraction),
            freeze_observers_after: at(freeze_observers_fraction),
        })
    }
}

impl QatOptions {
    /// The settings of the `qat` configuration section for a run of `qat.epochs` epochs of
    /// `steps_per_epoch` steps.
    pub fn from_config(qat: &crate::config::Qat, steps_per_epoch: usize) -> Result<QatOptions> {
        QatOptions::from_fractions(
            (qat.epochs * steps_per_epoch) as u64,
            qat.freeze_bn_fraction,
            qat.freeze_observers_fraction,
            qat.observer_momentum,
        )
    }
}

/// What a forward pass does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pass {
    /// Float pass with BN folded, observers widened to each batch's min/max (calibration).
    Calibrate,
    /// Fake-quantised training pass.
    Train {
        /// Fold BatchNorm with the running statistics instead of using batch statistics.
        bn_frozen: bool,
        /// How observers move.
        observers: Update,
    },
    /// Fake-quantised evaluation pass: BN folded, observers frozen.
    Eval,
}

/// Path of a dotted variable prefix (`features.3.conv.0.0`) under `root`.
fn dotted<'a>(root: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    let mut parts = name.split('.');
    let first = root.sub(parts.next().unwrap_or_default());
    parts.fold(first, |p, s| p.sub(s))
}

/// The fused activation of a student layer's activation.
fn fused(act: Act, layer: &str) -> Result<FusedAct> {
    Ok(match act {
        Act::Linear => FusedAct::None,
        Act::Relu => FusedAct::Relu,
        Act::Relu6 => FusedAct::Relu6,
        Act::Silu => bail!("{layer}: SiLU has no int8 fused form; only students quantise"),
    })
}

fn apply_act(x: Tensor, act: FusedAct) -> Tensor {
    match act {
        FusedAct::None => x,
        FusedAct::Relu => x.relu(),
        FusedAct::Relu6 => x.clamp(0.0, 6.0),
    }
}

/// The observer rule of a pass.
fn rule(pass: Pass) -> Update {
    match pass {
        Pass::Calibrate => Update::MinMax,
        Pass::Train { observers, .. } => observers,
        Pass::Eval => Update::Frozen,
    }
}

/// Observes `x` and (except when calibrating) fake-quantises it; returns it with its params.
fn observe(obs: &Observer, x: Tensor, pass: Pass) -> (Tensor, QParams) {
    obs.update(&x, rule(pass));
    let q = obs.qparams();
    if pass == Pass::Calibrate {
        (x, q)
    } else {
        (fake_quant(&x, q), q)
    }
}

/// Maps the float var store's tensors to their names.
struct Names(HashMap<usize, String>);

impl Names {
    fn new(vs: &nn::VarStore) -> Names {
        Names(
            vs.variables()
                .into_iter()
                .map(|(n, t)| (t.data_ptr() as usize, n))
                .collect(),
        )
    }

    /// The name prefix of `t`, whose name must end with `.suffix`.
    fn prefix(&self, t: &Tensor, suffix: &str) -> Result<String> {
        let name = self
            .0
            .get(&(t.data_ptr() as usize))
            .context("a layer's tensor is not in the float network's var store")?;
        name.strip_suffix(&format!(".{suffix}"))
            .map(str::to_string)
            .with_context(|| format!("variable {name}: expected a name ending in .{suffix}"))
    }
}

/// The per-input-channel absorption of the input normalisation (first convolution only).
#[derive(Debug)]
pub(crate) struct InputFold {
    /// `[1, 3, 1, 1]` multipliers.
    scale: Tensor,
    /// `[1, 3, 1, 1]` offsets.
    shift: Tensor,
}

/// One conv + BN + activation.
#[derive(Debug)]
pub(crate) struct QConv {
    /// The convolution's variable prefix; also the name of its output tensor.
    pub(crate) name: String,
    weight: Tensor,
    gamma: Tensor,
    beta: Tensor,
    mean: Tensor,
    var: Tensor,
    eps: f64,
    pub(crate) shape: ConvShape,
    pub(crate) act: FusedAct,
    input_fold: Option<InputFold>,
    pub(crate) out: Observer,
}

impl QConv {
    fn new(
        vs: &nn::VarStore,
        parts: ConvBnParts<'_>,
        names: &Names,
        input_fold: Option<&InputQuant>,
    ) -> Result<QConv> {
        let name = names.prefix(&parts.conv.ws, "weight")?;
        if parts.conv.bs.is_some() {
            bail!("{name}: a convolution with a bias before its BatchNorm is not a student's");
        }
        let (Some(g), Some(b)) = (&parts.bn.ws, &parts.bn.bs) else {
            bail!("{name}: its BatchNorm is not affine");
        };
        let bn = names.prefix(g, "weight")?;
        let root = vs.root();
        let (cp, bp) = (dotted(&root, &name), dotted(&root, &bn));
        let c = parts.shape.cout;
        let mean = bp.zeros_no_train("mean", &[c]);
        let var = bp.ones_no_train("var", &[c]);
        tch::no_grad(|| {
            mean.shallow_clone().copy_(&parts.bn.running_mean);
            var.shallow_clone().copy_(&parts.bn.running_var);
        });
        let dev = vs.device();
        let input_fold = input_fold.map(|iq| InputFold {
            scale: Tensor::from_slice(&iq.channel_scale)
                .reshape([1, 3, 1, 1])
                .to_device(dev),
            shift: Tensor::from_slice(&iq.channel_shift)
                .reshape([1, 3, 1, 1])
                .to_device(dev),
        });
        Ok(QConv {
            weight: cp.var_copy("weight", &parts.conv.ws),
            gamma: bp.var_copy("weight", g),
            beta: bp.var_copy("bias", b),
            mean,
            var,
            eps: parts.eps,
            shape: parts.shape,
            act: fused(parts.act, &name)?,
            input_fold,
            out: Observer::new(&cp, &name),
            name,
        })
    }

    /// The convolution on the graph's real input (input normalisation absorbed) and its bias.
    fn effective(&self) -> (Tensor, Option<Tensor>) {
        match &self.input_fold {
            None => (self.weight.shallow_clone(), None),
            Some(f) => (
                &self.weight * &f.scale,
                Some((&self.weight * &f.shift).sum_dim_intlist(
                    [1i64, 2, 3].as_slice(),
                    false,
                    Kind::Float,
                )),
            ),
        }
    }

    /// Weights and bias with the BatchNorm folded in using the running statistics.
    pub(crate) fn folded(&self) -> (Tensor, Tensor) {
        let (w, b) = self.effective();
        fold_batch_norm(
            &w,
            b.as_ref(),
            &self.gamma,
            &self.beta,
            &self.mean,
            &self.var,
            self.eps,
        )
    }

    fn conv(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        let s = self.shape;
        x.conv2d(
            w,
            b,
            [s.stride, s.stride],
            [s.k / 2, s.k / 2],
            [1, 1],
            s.groups,
        )
    }

    /// Output (fake-quantised unless calibrating) and its quantisation; `q_in` is the input's.
    fn forward(&self, x: &Tensor, q_in: QParams, pass: Pass) -> (Tensor, QParams) {
        let y = match pass {
            Pass::Calibrate => {
                let (w, b) = self.folded();
                self.conv(x, &w, Some(&b))
            }
            Pass::Train {
                bn_frozen: false, ..
            } => {
                let (w, b) = self.effective();
                let factor = &self.gamma / (&self.var + self.eps).sqrt();
                let wf = w * factor.reshape([-1, 1, 1, 1]);
                let wq = fake_quant_weights(&wf, &weight_scales(&wf), x.kind());
                let mut y = self.conv(x, &wq, None) / factor.reshape([1, -1, 1, 1]);
                if let Some(b) = b {
                    y += b.reshape([1, -1, 1, 1]);
                }
                y.batch_norm(
                    Some(&self.gamma),
                    Some(&self.beta),
                    Some(&self.mean),
                    Some(&self.var),
                    true,
                    BN_MOMENTUM,
                    self.eps,
                    false,
                )
            }
            Pass::Train {
                bn_frozen: true, ..
            }
            | Pass::Eval => {
                let (w, b) = self.folded();
                let sw = weight_scales(&w);
                let wq = fake_quant_weights(&w, &sw, x.kind());
                let bq = fake_quant_bias(&b, q_in.scale, &sw, x.kind());
                self.conv(x, &wq, Some(&bq))
            }
        };
        observe(&self.out, apply_act(y, self.act), pass)
    }
}

/// A feature layer.
#[derive(Debug)]
pub(crate) enum QBlock {
    /// Stem or head conv.
    Conv(QConv),
    /// Inverted residual / MBConv-lite.
    Inverted {
        /// Expansion.
        expand: Option<Box<QConv>>,
        /// Depthwise.
        dw: Box<QConv>,
        /// Projection.
        project: Box<QConv>,
        /// The residual sum's observer (its tensor `<group>.add`), when the block adds.
        add: Option<Observer>,
    },
}

impl QBlock {
    fn forward(&self, x: &Tensor, q: QParams, pass: Pass) -> (Tensor, QParams) {
        match self {
            QBlock::Conv(c) => c.forward(x, q, pass),
            QBlock::Inverted {
                expand,
                dw,
                project,
                add,
            } => {
                let (mut y, mut qy) = (x.shallow_clone(), q);
                if let Some(e) = expand {
                    (y, qy) = e.forward(&y, qy, pass);
                }
                (y, qy) = dw.forward(&y, qy, pass);
                (y, qy) = project.forward(&y, qy, pass);
                match add {
                    Some(obs) => observe(obs, y + x, pass),
                    None => (y, qy),
                }
            }
        }
    }
}

/// The linear classifier.
#[derive(Debug)]
pub(crate) struct QLinear {
    /// Variable prefix (`classifier.1`); its output tensor is `logits`.
    pub(crate) name: String,
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) out: Observer,
}

/// A student network with simulated quantisation (see the module docs).
#[derive(Debug)]
pub struct QatNet {
    spec: ModelSpec,
    pub(crate) input: InputQuant,
    pub(crate) layers: Vec<(String, i64, QBlock)>,
    pub(crate) pool: Observer,
    pub(crate) head: QLinear,
    head_group: String,
    steps: Tensor,
    opts: QatOptions,
}

impl QatNet {
    /// Builds the network in `vs` (names as the float network's, so `vs` should be a fresh var
    /// store) from the float student `float` whose variables are in `float_vs` (built at its
    /// root), copying every weight and BatchNorm statistic. Observers start unobserved: run
    /// [`super::ptq::calibrate`] before training or lowering.
    ///
    /// Errors when `float` is not a student (MobileNetV2, EfficientNet-Lite).
    pub fn new(
        vs: &nn::VarStore,
        float: &dyn Classifier,
        float_vs: &nn::VarStore,
        opts: QatOptions,
    ) -> Result<QatNet> {
        let spec = float.spec().clone();
        let Some(st) = float.student_structure() else {
            bail!("model {spec}: only students (mobilenet_v2, efficientnet_lite) can be quantised");
        };
        let names = Names::new(float_vs);
        let input = InputQuant::for_normalization(&spec.normalization);
        let root = vs.root();
        let mut layers = Vec::with_capacity(st.layers.len());
        for (i, (group, stride, block)) in st.layers.into_iter().enumerate() {
            let fold = (i == 0 && !input.is_identity()).then_some(&input);
            let q = match block {
                StudentBlock::Conv(c) => QBlock::Conv(QConv::new(vs, c.parts(), &names, fold)?),
                StudentBlock::Inverted {
                    expand,
                    dw,
                    project,
                    residual,
                } => {
                    if i == 0 {
                        bail!("model {spec}: the first layer must be a plain convolution");
                    }
                    QBlock::Inverted {
                        expand: expand
                            .map(|e| QConv::new(vs, e.parts(), &names, None).map(Box::new))
                            .transpose()?,
                        dw: Box::new(QConv::new(vs, dw.parts(), &names, None)?),
                        project: Box::new(QConv::new(vs, project.parts(), &names, None)?),
                        add: residual.then(|| {
                            let name = format!("{group}.add");
                            Observer::new(&dotted(&root, &name), &name)
                        }),
                    }
                }
            };
            layers.push((group, stride, q));
        }
        let hname = names.prefix(&st.head.ws, "weight")?;
        let Some(hb) = &st.head.bs else {
            bail!("{hname}: the classifier has no bias");
        };
        let hp = dotted(&root, &hname);
        let head = QLinear {
            weight: hp.var_copy("weight", &st.head.ws),
            bias: hp.var_copy("bias", hb),
            out: Observer::new(&hp, "logits"),
            name: hname,
        };
        Ok(QatNet {
            pool: Observer::new(&root.sub("pool"), "pool"),
            steps: root.zeros_no_train("qat_steps", &[]),
            spec,
            input,
            layers,
            head,
            head_group: st.head_group,
            opts,
        })
    }

    /// The settings.
    pub fn options(&self) -> QatOptions {
        self.opts
    }

    /// Changes the settings (e.g. after [`super::ptq`] built the network for calibration).
    pub fn set_options(&mut self, opts: QatOptions) {
        self.opts = opts;
    }

    /// The uint8 graph input's quantisation and the first convolution's absorption of the
    /// normalisation.
    pub fn input_quant(&self) -> InputQuant {
        self.input
    }

    /// The device of the network's variables.
    pub fn device(&self) -> tch::Device {
        self.head.weight.device()
    }

    /// Training steps taken (the counter the freezing points compare with).
    pub fn steps(&self) -> u64 {
        self.steps.double_value(&[]) as u64
    }

    /// Every activation observer, input to output.
    pub fn observers(&self) -> Vec<&Observer> {
        let mut v = Vec::new();
        for (_, _, b) in &self.layers {
            match b {
                QBlock::Conv(c) => v.push(&c.out),
                QBlock::Inverted {
                    expand,
                    dw,
                    project,
                    add,
                } => {
                    v.extend(expand.iter().map(|e| &e.out));
                    v.push(&dw.out);
                    v.push(&project.out);
                    v.extend(add.iter());
                }
            }
        }
        v.push(&self.pool);
        v.push(&self.head.out);
        v
    }

    /// The real input of the integer graph, `scale * (p - zero_point)`, from normalised images
    /// (`p` the uint8 bytes they were made of).
    fn graph_input(&self, images: &Tensor) -> Tensor {
        let n = &self.spec.normalization;
        let dev = images.device();
        let mean = Tensor::from_slice(&n.mean)
            .reshape([1, 3, 1, 1])
            .to_device(dev);
        let std = Tensor::from_slice(&n.std)
            .reshape([1, 3, 1, 1])
            .to_device(dev);
        let bytes = (images.detach() * std + mean).round().clamp(0.0, 255.0);
        (bytes - f64::from(self.input.q.zero_point)) * f64::from(self.input.q.scale)
    }

    /// The forward pass of `pass`, recording the taps when asked (as
    /// [`Classifier::forward_features`]).
    pub(crate) fn run(
        &self,
        images: &Tensor,
        pass: Pass,
        mut taps: Option<&mut Vec<(String, Tensor)>>,
    ) -> Tensor {
        tch::autocast(false, || {
            let images = match images.kind() {
                Kind::Double => images.shallow_clone(),
                _ => images.to_kind(Kind::Float),
            };
            let mut x = self.graph_input(&images);
            let mut q = self.input.int8();
            let mut stride = 1i64;
            for (i, (_, s, block)) in self.layers.iter().enumerate() {
                (x, q) = block.forward(&x, q, pass);
                stride *= s;
                let last_of_stride = self.layers.get(i + 1).is_none_or(|n| n.1 > 1);
                if let Some(t) = taps.as_deref_mut() {
                    if last_of_stride && stride >= 4 {
                        t.push((format!("stride{stride}"), x.shallow_clone()));
                    }
                }
            }
            let pooled = x.mean_dim([2i64, 3].as_slice(), false, x.kind());
            let (pooled, qp) = observe(&self.pool, pooled, pass);
            let train = matches!(pass, Pass::Train { .. });
            let h = pooled.dropout(self.spec.dropout, train);
            let logits = if pass == Pass::Calibrate {
                h.linear(&self.head.weight, Some(&self.head.bias))
            } else {
                let sw = weight_scales(&self.head.weight);
                let wq = fake_quant_weights(&self.head.weight, &sw, h.kind());
                let bq = fake_quant_bias(&self.head.bias, qp.scale, &sw, h.kind());
                h.linear(&wq, Some(&bq))
            };
            let (logits, _) = observe(&self.head.out, logits, pass);
            if let Some(t) = taps {
                t.push(("pooled".into(), pooled));
                t.push(("logits".into(), logits.shallow_clone()));
            }
            logits
        })
    }

    /// The pass of a training-mode forward at the current step.
    fn train_pass(&self) -> Pass {
        let step = self.steps();
        let reached = |at: Option<u64>| at.is_some_and(|a| step >= a);
        Pass::Train {
            bn_frozen: reached(self.opts.freeze_bn_after),
            observers: if reached(self.opts.freeze_observers_after) {
                Update::Frozen
            } else {
                Update::Ema {
                    momentum: self.opts.observer_momentum,
                }
            },
        }
    }

    fn forward_pass(
        &self,
        xs: &Tensor,
        train: bool,
        taps: Option<&mut Vec<(String, Tensor)>>,
    ) -> Tensor {
        if !train {
            return self.run(xs, Pass::Eval, taps);
        }
        let out = self.run(xs, self.train_pass(), taps);
        tch::no_grad(|| {
            let mut s = self.steps.shallow_clone();
            s += 1.0;
        });
        out
    }

    /// Runs one calibration batch (float pass, BatchNorm folded, input normalisation absorbed,
    /// observers widened to the batch's min/max; see [`super::ptq::calibrate`]) and returns its
    /// float logits, which equal the float network's evaluation logits up to rounding.
    pub fn calibrate_batch(&self, images: &Tensor) -> Tensor {
        tch::no_grad(|| self.run(images, Pass::Calibrate, None))
    }

    /// The int8 logits `[N, classes]` (kind `Int8`) of normalised `images` `[N, 3, S, S]` by the
    /// fake-quantised evaluation pass with the parameters [`QatNet::to_int_graph`] lowers:
    /// what the integer graph should output for the images' uint8 bytes.
    ///
    /// It runs in float64 (the integers are the float32 network's, the arithmetic between
    /// them float64), so every accumulator is exact and the only differences from an integer
    /// runtime are its requantisation rounding (TFLite's fixed-point multipliers; ties),
    /// whereas float32 flips a rounding now and then and the flip travels to the logits.
    pub fn fake_quant_logits(&self, images: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let y = self.run(&images.to_kind(Kind::Double), Pass::Eval, None);
            quantize(&y, self.head.out.qparams()).to_kind(Kind::Int8)
        })
    }
}

impl QatNet {
    /// The int8 logits of [`QatNet::fake_quant_logits`] dequantised with the output's scale
    /// and zero point (float32): the exact integer model's scores, for metrics.
    pub fn fake_quant_scores(&self, images: &Tensor) -> Tensor {
        let q = self.head.out.qparams();
        (self.fake_quant_logits(images).to_kind(Kind::Float) - f64::from(q.zero_point))
            * f64::from(q.scale)
    }
}

impl ModuleT for QatNet {
    /// Dequantised fake-quantised logits. `train` runs the QAT pass and counts one step towards
    /// the freezing points (so call it, or `forward_features`, once per optimisation step);
    /// otherwise the evaluation pass (float32).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_pass(xs, train, None)
    }
}

impl Classifier for QatNet {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn forward_features(&self, xs: &Tensor, train: bool) -> Vec<(String, Tensor)> {
        let mut taps = Vec::new();
        let _ = self.forward_pass(xs, train, Some(&mut taps));
        taps
    }

    fn layer_groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self.layers.iter().map(|l| l.0.clone()).collect();
        g.push(self.head_group.clone());
        g
    }
}
