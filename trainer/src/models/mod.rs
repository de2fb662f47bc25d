//! Image classifiers on tch: teachers (EfficientNet B0..B3-style, ResNet) and int8-friendly
//! students (MobileNetV2, EfficientNet-Lite), plus TorchScript teachers ([`torchscript`]).
//!
//! # Building
//!
//! [`ModelSpec::parse`] reads `name[:width[:depth]]` (e.g. `mobilenet_v2:0.35`,
//! `efficientnet_b2`, `resnet18`, `resnet:0.5:1`); [`build`] creates the variables under a
//! var-store path and returns a [`Classifier`]. Every network reads `[N, 3, S, S]` float images
//! normalised by [`ModelSpec::normalization`] and returns `[N, num_classes]` logits.
//!
//! # Layer naming (stable; the exporter folds BatchNorm and writes TFLite from these names)
//!
//! Names follow torchvision's module paths, so a torchvision state dict maps one-to-one:
//!
//! * MobileNetV2: `features.0` stem (`.0` conv, `.1` bn); `features.1 ..= features.K`
//!   inverted residuals: with expansion `conv.0` (`.0` conv 1x1, `.1` bn), `conv.1` depthwise
//!   (`.0` conv, `.1` bn), `conv.2` projection conv, `conv.3` bn; without expansion (first block)
//!   `conv.0` depthwise, `conv.1` conv, `conv.2` bn; `features.K+1` head 1x1 (`.0`, `.1`);
//!   `classifier.1` the linear layer (`classifier.0` is the parameter-free dropout).
//! * EfficientNet / EfficientNet-Lite: `features.0` stem (`.0` conv, `.1` bn);
//!   `features.{1..=7}.{i}` MBConv block `i` of stage 1..7, whose sub-layers are numbered in
//!   order under `block`: expansion (only when the ratio is not 1; `.0` conv, `.1` bn), depthwise
//!   (`.0`, `.1`), squeeze-excite (EfficientNet only; `fc1`, `fc2` 1x1 convs with bias),
//!   projection (`.0`, `.1`); `features.8` head 1x1 (`.0`, `.1`); `classifier.1` linear.
//! * ResNet: `conv1`, `bn1`, `layer{1..=4}.{i}` basic blocks (`conv1`, `bn1`, `conv2`, `bn2`,
//!   and `downsample.0` conv 1x1 / `downsample.1` bn when the shape changes), `fc` linear.
//!
//! Every convolution is followed by a BatchNorm and has no bias (except the squeeze-excite
//! 1x1s); variables are `weight`/`bias`, BatchNorm statistics `running_mean`/`running_var`
//! (not trainable).
//!
//! # Layer groups and taps
//!
//! [`Classifier::layer_groups`] lists name prefixes from input to output, one per layer (stem,
//! each block, head conv, classifier); a variable belongs to group `g` when its name is `g` or
//! starts with `g.`. [`set_trainable_top`] uses them to train only the top fraction of the
//! network. [`Classifier::forward_features`] returns named taps for feature distillation, named
//! after their output stride so teachers and students pair up: `stride4`, `stride8`, `stride16`,
//! `stride32` (the last feature map of that stride, NCHW), `pooled` (`[N, C]` after global
//! average pooling) and `logits`.

pub mod efficientnet;
pub mod mobilenet_v2;
pub mod resnet;
pub mod torchscript;

use std::fmt;

use anyhow::{bail, Context, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::pipeline::Normalization;
pub use torchscript::TorchScriptTeacher;

/// Network family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// MobileNetV2 (student): inverted residuals, ReLU6, width multiplier.
    MobileNetV2,
    /// EfficientNet B0-style (teacher): MBConv with squeeze-excite and swish.
    EfficientNet,
    /// EfficientNet-Lite (student): no squeeze-excite, ReLU6, fixed stem (32) and head (1280)
    /// widths, first and last stage repeats not depth-scaled.
    EfficientNetLite,
    /// ResNet with basic blocks (teacher); `blocks` per stage at depth 1.0.
    ResNet {
        /// Basic blocks of stages 1..4 before depth scaling (`[2, 2, 2, 2]` is ResNet-18).
        blocks: [usize; 4],
        /// The small-input stem of He et al.'s CIFAR networks (3x3/1 conv, no max pooling)
        /// instead of ImageNet's 7x7/2 conv + 3x3/2 max pooling, which would shrink a 28 px
        /// image to 7 px before the first block.
        small_stem: bool,
    },
}

impl Arch {
    /// Students are the int8-friendly families (ReLU6, no squeeze-excite).
    pub fn is_student(self) -> bool {
        matches!(self, Arch::MobileNetV2 | Arch::EfficientNetLite)
    }

    /// Family name as used in spec strings.
    pub fn family(self) -> &'static str {
        match self {
            Arch::MobileNetV2 => "mobilenet_v2",
            Arch::EfficientNet => "efficientnet",
            Arch::EfficientNetLite => "efficientnet_lite",
            Arch::ResNet {
                small_stem: false, ..
            } => "resnet",
            Arch::ResNet {
                small_stem: true, ..
            } => "resnet_cifar",
        }
    }
}

/// Everything needed to build a network.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Family.
    pub arch: Arch,
    /// Width (channel) multiplier.
    pub width: f64,
    /// Depth (repeats) multiplier: stage repeats become `ceil(n * depth)`.
    pub depth: f64,
    /// Side of the square input. The resolution multiplier of the EfficientNet family is this
    /// size (e.g. 240 for B1 at full scale; small data sets use small inputs).
    pub input_size: u32,
    /// Number of outputs.
    pub num_classes: usize,
    /// Dropout probability before the classifier.
    pub dropout: f64,
    /// Input normalisation ([`Normalization::STUDENT`] for students, ImageNet for teachers).
    pub normalization: Normalization,
}

/// The named presets of [`ModelSpec::parse`]: name, family, width, depth.
pub const PRESETS: &[(&str, Arch, f64, f64)] = &[
    ("mobilenet_v2", Arch::MobileNetV2, 1.0, 1.0),
    ("mobilenet_v2_tiny", Arch::MobileNetV2, 0.25, 0.34),
    ("efficientnet", Arch::EfficientNet, 1.0, 1.0),
    ("efficientnet_b0", Arch::EfficientNet, 1.0, 1.0),
    ("efficientnet_b1", Arch::EfficientNet, 1.0, 1.1),
    ("efficientnet_b2", Arch::EfficientNet, 1.1, 1.2),
    ("efficientnet_b3", Arch::EfficientNet, 1.2, 1.4),
    ("efficientnet_tiny", Arch::EfficientNet, 0.25, 0.34),
    ("efficientnet_lite", Arch::EfficientNetLite, 1.0, 1.0),
    ("efficientnet_lite0", Arch::EfficientNetLite, 1.0, 1.0),
    ("efficientnet_lite1", Arch::EfficientNetLite, 1.0, 1.1),
    ("efficientnet_lite_tiny", Arch::EfficientNetLite, 0.25, 0.34),
    (
        "resnet",
        Arch::ResNet {
            blocks: [2, 2, 2, 2],
            small_stem: false,
        },
        1.0,
        1.0,
    ),
    (
        "resnet18",
        Arch::ResNet {
            blocks: [2, 2, 2, 2],
            small_stem: false,
        },
        1.0,
        1.0,
    ),
    (
        "resnet34",
        Arch::ResNet {
            blocks: [3, 4, 6, 3],
            small_stem: false,
        },
        1.0,
        1.0,
    ),
    (
        "resnet_tiny",
        Arch::ResNet {
            blocks: [2, 2, 2, 2],
            small_stem: false,
        },
        0.25,
        0.5,
    ),
    (
        "resnet18_cifar",
        Arch::ResNet {
            blocks: [2, 2, 2, 2],
            small_stem: true,
        },
        1.0,
        1.0,
    ),
    (
        "resnet_tiny_cifar",
        Arch::ResNet {
            blocks: [2, 2, 2, 2],
            small_stem: true,
        },
        0.25,
        0.5,
    ),
];

impl ModelSpec {
    /// Parses `name[:width[:depth]]`, `name` one of [`PRESETS`]; an explicit width or depth
    /// replaces the preset's. Width in `(0, 4]`, depth in `(0, 4]`, `num_classes >= 1`,
    /// `input_size >= 8`, `dropout` in `[0, 1)`.
    pub fn parse(s: &str, input_size: u32, num_classes: usize, dropout: f64) -> Result<ModelSpec> {
        let mut parts = s.trim().split(':');
        let name = parts.next().unwrap_or_default();
        let Some(&(_, arch, mut width, mut depth)) = PRESETS.iter().find(|p| p.0 == name) else {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            bail!(
                "model {s:?}: unknown network {name:?}; known: {}",
                names.join(", ")
            );
        };
        let num = |v: Option<&str>, what: &str, cur: f64| -> Result<f64> {
            match v {
                None => Ok(cur),
                Some(t) => t
                    .parse::<f64>()
                    .with_context(|| format!("model {s:?}: {what} {t:?} is not a number")),
            }
        };
        width = num(parts.next(), "width", width)?;
        depth = num(parts.next(), "depth", depth)?;
        if parts.next().is_some() {
            bail!("model {s:?}: expected name[:width[:depth]]");
        }
        let spec = ModelSpec {
            arch,
            width,
            depth,
            input_size,
            num_classes,
            dropout,
            normalization: if arch.is_student() {
                Normalization::STUDENT
            } else {
                Normalization::IMAGENET
            },
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Range checks (see [`ModelSpec::parse`]).
    pub fn validate(&self) -> Result<()> {
        let s = self.to_string();
        if !(self.width > 0.0 && self.width <= 4.0) {
            bail!("model {s}: width {} must be in (0, 4]", self.width);
        }
        if !(self.depth > 0.0 && self.depth <= 4.0) {
            bail!("model {s}: depth {} must be in (0, 4]", self.depth);
        }
        if self.num_classes == 0 {
            bail!("model {s}: num_classes must be at least 1");
        }
        if self.input_size < 8 {
            bail!(
                "model {s}: input_size {} must be at least 8",
                self.input_size
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("model {s}: dropout {} must be in [0, 1)", self.dropout);
        }
        Ok(())
    }
}

impl fmt::Display for ModelSpec {
    /// `family:width:depth` (ResNet: `resnet[b1,b2,b3,b4]:width:depth`, `resnet_cifar[...]` with
    /// the small-input stem).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arch {
            Arch::ResNet { blocks: b, .. } => write!(
                f,
                "{}[{},{},{},{}]:{}:{}",
                self.arch.family(),
                b[0],
                b[1],
                b[2],
                b[3],
                self.width,
                self.depth
            ),
            a => write!(f, "{}:{}:{}", a.family(), self.width, self.depth),
        }
    }
}

/// A classification network (see the module docs for names, groups and taps).
pub trait Classifier: ModuleT + Send {
    /// The spec it was built from.
    fn spec(&self) -> &ModelSpec;
    /// Forward pass returning the named taps (`stride4` .. `stride32`, `pooled`, `logits`).
    fn forward_features(&self, xs: &Tensor, train: bool) -> Vec<(String, Tensor)>;
    /// Variable-name prefixes of the layers, from input to output; the last is the classifier.
    fn layer_groups(&self) -> Vec<String>;
    /// The structure the quantiser walks, when every layer is a [`StudentBlock`] (MobileNetV2,
    /// EfficientNet-Lite); `None` for the other networks.
    fn student_structure(&self) -> Option<StudentStructure<'_>> {
        None
    }
}

/// Builds the network of `spec` under `vs` (variables named as in the module docs).
pub fn build(vs: &nn::Path, spec: &ModelSpec) -> Result<Box<dyn Classifier>> {
    spec.validate()?;
    let net = match spec.arch {
        Arch::MobileNetV2 => mobilenet_v2::build(vs, spec),
        Arch::EfficientNet | Arch::EfficientNetLite => efficientnet::build(vs, spec),
        Arch::ResNet { .. } => resnet::build(vs, spec),
    };
    Ok(Box::new(net))
}

/// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, at least 8, never more than
/// 10 % below `v`.
pub fn make_divisible(v: f64) -> i64 {
    let d = 8i64;
    let mut n = (((v + d as f64 / 2.0) as i64) / d * d).max(d);
    if (n as f64) < 0.9 * v {
        n += d;
    }
    n
}

/// `ceil(n * depth)`, at least 1.
pub fn scale_depth(n: usize, depth: f64) -> usize {
    ((n as f64 * depth).ceil() as usize).max(1)
}

/// Momentum of every BatchNorm's running statistics (PyTorch's default):
/// `running = (1 - m) * running + m * batch`. [`crate::train::recalibrate_batch_norm`] relies on it.
pub const BN_MOMENTUM: f64 = 0.1;

/// Which activation follows a conv + BN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// None (projection layers).
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// Swish / SiLU `x * sigmoid(x)`.
    Silu,
}

impl Act {
    /// Applies the activation.
    pub fn apply(self, xs: Tensor) -> Tensor {
        match self {
            Act::Linear => xs,
            Act::Relu => xs.relu(),
            Act::Relu6 => xs.clamp(0.0, 6.0),
            Act::Silu => xs.silu(),
        }
    }
}

/// A bias-free convolution, its BatchNorm and an activation.
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    act: Act,
    shape: ConvShape,
    eps: f64,
}

/// The parts of a [`ConvBn`] (see [`ConvBn::parts`]).
#[derive(Clone, Copy, Debug)]
pub struct ConvBnParts<'a> {
    /// The bias-free convolution (`ws` `[cout, cin / groups, k, k]`).
    pub conv: &'a nn::Conv2D,
    /// Its BatchNorm (affine, running statistics).
    pub bn: &'a nn::BatchNorm,
    /// The activation after the BatchNorm.
    pub act: Act,
    /// Geometry (padding `k / 2` on every side).
    pub shape: ConvShape,
    /// The BatchNorm's epsilon.
    pub eps: f64,
}

/// The structure of a student block, as the quantiser walks it ([`Block::student_block`]).
#[derive(Clone, Copy, Debug)]
pub enum StudentBlock<'a> {
    /// A plain conv + BN + activation (stem, head conv).
    Conv(&'a ConvBn),
    /// An inverted residual (MobileNetV2) or MBConv-lite block: optional 1x1 expansion,
    /// depthwise, linear 1x1 projection, and the residual add when `residual`.
    Inverted {
        /// Expansion 1x1 (absent when the ratio is 1).
        expand: Option<&'a ConvBn>,
        /// Depthwise k x k.
        dw: &'a ConvBn,
        /// Linear projection 1x1.
        project: &'a ConvBn,
        /// Whether the block's input is added to its output.
        residual: bool,
    },
}

/// The structure of a student network ([`Classifier::student_structure`]): feature layers,
/// global average pooling, dropout (training only), linear classifier.
#[derive(Debug)]
pub struct StudentStructure<'a> {
    /// Feature layers, input to output, each with its layer-group name and spatial stride.
    pub layers: Vec<(String, i64, StudentBlock<'a>)>,
    /// The linear classifier.
    pub head: &'a nn::Linear,
    /// The classifier's layer group.
    pub head_group: String,
}

/// Geometry of a [`ConvBn`].
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    /// Input channels.
    pub cin: i64,
    /// Output channels.
    pub cout: i64,
    /// Square kernel size (padding `k / 2`).
    pub k: i64,
    /// Stride.
    pub stride: i64,
    /// Groups (`cin` for depthwise).
    pub groups: i64,
}

impl ConvBn {
    /// Conv at `conv`, BatchNorm at `bn` (`eps` as the family uses: 1e-5, EfficientNet 1e-3).
    pub fn new(conv: nn::Path, bn: nn::Path, s: ConvShape, act: Act, eps: f64) -> ConvBn {
        let cfg = nn::ConvConfig {
            stride: s.stride,
            padding: s.k / 2,
            groups: s.groups,
            bias: false,
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Normal,
                fan: nn::init::FanInOut::FanOut,
                non_linearity: nn::init::NonLinearity::ReLU,
            },
            ..Default::default()
        };
        ConvBn {
            conv: nn::conv2d(conv, s.cin, s.cout, s.k, cfg),
            bn: nn::batch_norm2d(
                bn,
                s.cout,
                nn::BatchNormConfig {
                    eps,
                    momentum: BN_MOMENTUM,
                    ..Default::default()
                },
            ),
            act,
            shape: s,
            eps,
        }
    }

    /// The layer's parts, for quantisation (BatchNorm folding reads them).
    pub fn parts(&self) -> ConvBnParts<'_> {
        ConvBnParts {
            conv: &self.conv,
            bn: &self.bn,
            act: self.act,
            shape: self.shape,
            eps: self.eps,
        }
    }

    /// The usual `p/0` conv, `p/1` bn pair.
    pub fn seq(p: &nn::Path, s: ConvShape, act: Act, eps: f64) -> ConvBn {
        ConvBn::new(p / "0", p / "1", s, act, eps)
    }

    /// conv -> bn -> activation.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        self.act
            .apply(xs.apply(&self.conv).apply_t(&self.bn, train))
    }
}

/// One layer of a [`Net`]'s feature extractor.
pub trait Block: fmt::Debug + Send {
    /// Forward pass.
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor;
    /// The block's structure when it is one of the int8-friendly kinds the quantiser handles
    /// ([`StudentBlock`]); `None` otherwise.
    fn student_block(&self) -> Option<StudentBlock<'_>> {
        None
    }
}

/// A feature layer with its group names and its stride.
#[derive(Debug)]
pub struct Layer {
    /// Variable-name prefixes of the layer (usually one).
    pub groups: Vec<String>,
    /// Spatial stride (1 or 2, 4 for a stem with pooling).
    pub stride: i64,
    /// The layer.
    pub block: Box<dyn Block>,
}

/// The common shape of every network here: feature layers, global average pooling, dropout,
/// one linear classifier.
#[derive(Debug)]
pub struct Net {
    spec: ModelSpec,
    layers: Vec<Layer>,
    head_group: String,
    head: nn::Linear,
}

impl Net {
    /// Assembles a network; `head` is the linear classifier named `head_group`.
    pub fn new(spec: ModelSpec, layers: Vec<Layer>, head_group: &str, head: nn::Linear) -> Net {
        Net {
            spec,
            layers,
            head_group: head_group.to_string(),
            head,
        }
    }

    fn run(
        &self,
        xs: &Tensor,
        train: bool,
        mut taps: Option<&mut Vec<(String, Tensor)>>,
    ) -> Tensor {
        let mut x = xs.shallow_clone();
        let mut stride = 1i64;
        for (i, l) in self.layers.iter().enumerate() {
            x = l.block.forward(&x, train);
            stride *= l.stride;
            let last_of_stride = self.layers.get(i + 1).is_none_or(|n| n.stride > 1);
            if let Some(t) = taps.as_deref_mut() {
                if last_of_stride && stride >= 4 {
                    t.push((format!("stride{stride}"), x.shallow_clone()));
                }
            }
        }
        let pooled = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let logits = pooled.dropout(self.spec.dropout, train).apply(&self.head);
        if let Some(t) = taps {
            t.push(("pooled".into(), pooled));
            t.push(("logits".into(), logits.shallow_clone()));
        }
        logits
    }
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.run(xs, train, None)
    }
}

impl Classifier for Net {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn forward_features(&self, xs: &Tensor, train: bool) -> Vec<(String, Tensor)> {
        let mut taps = Vec::new();
        let _logits = self.run(xs, train, Some(&mut taps));
        taps
    }

    fn layer_groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self.layers.iter().flat_map(|l| l.groups.clone()).collect();
        g.push(self.head_group.clone());
        g
    }

    fn student_structure(&self) -> Option<StudentStructure<'_>> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let b = l.block.student_block()?;
                Some((l.groups.first()?.clone(), l.stride, b))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(StudentStructure {
            layers,
            head: &self.head,
            head_group: self.head_group.clone(),
        })
    }
}

/// The group of a variable name: the group `g` with `name == g` or `name` starting with `g.`.
pub fn group_of<'a>(name: &str, groups: &'a [String]) -> Option<&'a str> {
    groups
        .iter()
        .find(|g| {
            name.strip_prefix(g.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
        .map(String::as_str)
}

/// Makes only the variables of the top `ceil(fraction * groups.len())` groups trainable
/// (`requires_grad`), freezing the rest; BatchNorm statistics are never touched. `fraction` 0
/// freezes everything, 1 unfreezes everything. Returns the number of trainable groups.
///
/// Errors when `fraction` is outside `[0, 1]` or a trainable variable belongs to no group.
pub fn set_trainable_top(vs: &nn::VarStore, groups: &[String], fraction: f64) -> Result<usize> {
    if !(0.0..=1.0).contains(&fraction) {
        bail!("trainable fraction {fraction} must be in [0, 1]");
    }
    let n_top = (fraction * groups.len() as f64).ceil() as usize;
    let first = groups.len() - n_top.min(groups.len());
    let trainable: std::collections::HashSet<usize> = vs
        .trainable_variables()
        .iter()
        .map(|t| t.data_ptr() as usize)
        .collect();
    for (name, t) in vs.variables() {
        if !trainable.contains(&(t.data_ptr() as usize)) {
            continue;
        }
        let g = group_of(&name, groups)
            .with_context(|| format!("variable {name} belongs to no layer group"))?;
        let pos = groups.iter().position(|x| x == g).unwrap_or(0);
        let _ = t.set_requires_grad(pos >= first);
    }
    Ok(n_top.min(groups.len()))
}

/// A teacher: a network built here, or a TorchScript module.
pub enum Teacher {
    /// A [`build`]-built network (its var store is held by the caller).
    Native(Box<dyn Classifier>),
    /// A TorchScript file.
    Script(TorchScriptTeacher),
}

impl Teacher {
    /// Logits in evaluation mode, without gradient.
    pub fn logits(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Teacher::Native(m) => Ok(tch::no_grad(|| m.forward_t(xs, false))),
            Teacher::Script(m) => m.forward(xs),
        }
    }

    /// The input normalisation the teacher expects.
    pub fn normalization(&self) -> Normalization {
        match self {
            Teacher::Native(m) => m.spec().normalization,
            Teacher::Script(m) => m.normalization,
        }
    }
}
