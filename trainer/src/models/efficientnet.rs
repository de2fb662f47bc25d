//! EfficientNet (Tan & Le 2019) as torchvision builds it, and EfficientNet-Lite.
//!
//! EfficientNet: stem 3x3/2 (32 channels), seven stages of MBConv blocks (expansion 1x1 ->
//! depthwise k x k -> squeeze-excite with `max(1, cin / 4)` channels -> linear 1x1 projection),
//! swish (SiLU), head 1x1 to `4 x` the last stage's channels, BatchNorm eps 1e-3. The width
//! multiplier scales every channel count ([`make_divisible`]), the depth multiplier every stage's
//! repeats (`ceil(n * depth)`); B0..B3 are (1.0, 1.0), (1.0, 1.1), (1.1, 1.2), (1.2, 1.4), at
//! native resolutions 224, 240, 260, 300 (here: the spec's `input_size`). Stochastic depth is
//! not used.
//!
//! EfficientNet-Lite (the int8-friendly variant): the same stages without squeeze-excite, ReLU6
//! instead of swish, stem fixed at 32 and head at 1280 channels whatever the width, and the
//! first and last stages' repeats never depth-scaled.

use tch::{nn, Tensor};

use super::{
    make_divisible, scale_depth, Act, Arch, Block, ConvBn, ConvShape, Layer, ModelSpec, Net,
    StudentBlock,
};

/// `(expansion, kernel, stride, channels, repeats)` of stages 1..7 at scale 1.
pub const STAGES: [(i64, i64, i64, i64, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];

const EPS: f64 = 1e-3;

/// Squeeze-excite: global pool -> 1x1 (`fc1`) -> SiLU -> 1x1 (`fc2`) -> sigmoid -> scale.
#[derive(Debug)]
struct SqueezeExcite {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
}

impl SqueezeExcite {
    fn new(p: &nn::Path, channels: i64, squeeze: i64) -> Self {
        let c = Default::default();
        SqueezeExcite {
            fc1: nn::conv2d(p / "fc1", channels, squeeze, 1, c),
            fc2: nn::conv2d(p / "fc2", squeeze, channels, 1, c),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let s = xs
            .adaptive_avg_pool2d([1, 1])
            .apply(&self.fc1)
            .silu()
            .apply(&self.fc2)
            .sigmoid();
        xs * s
    }
}

/// An MBConv block (`features.s.i`).
#[derive(Debug)]
pub struct MbConv {
    expand: Option<ConvBn>,
    dw: ConvBn,
    se: Option<SqueezeExcite>,
    project: ConvBn,
    residual: bool,
}

/// Geometry of one MBConv block.
#[derive(Clone, Copy, Debug)]
pub struct MbShape {
    /// Input channels.
    pub cin: i64,
    /// Output channels.
    pub cout: i64,
    /// Expansion ratio.
    pub expand: i64,
    /// Depthwise kernel size.
    pub kernel: i64,
    /// Depthwise stride.
    pub stride: i64,
}

impl MbConv {
    /// Block at `p`; `lite` drops squeeze-excite and uses ReLU6.
    pub fn new(p: &nn::Path, s: MbShape, lite: bool) -> Self {
        let act = if lite { Act::Relu6 } else { Act::Silu };
        let b = p / "block";
        let hidden = make_divisible((s.cin * s.expand) as f64);
        let mut i = 0;
        let mut next = || {
            let q = &b / i;
            i += 1;
            q
        };
        let expand = (s.expand != 1).then(|| {
            let c = ConvShape {
                cin: s.cin,
                cout: hidden,
                k: 1,
                stride: 1,
                groups: 1,
            };
            ConvBn::seq(&next(), c, act, EPS)
        });
        let c = ConvShape {
            cin: hidden,
            cout: hidden,
            k: s.kernel,
            stride: s.stride,
            groups: hidden,
        };
        let dw = ConvBn::seq(&next(), c, act, EPS);
        let se = (!lite).then(|| SqueezeExcite::new(&next(), hidden, (s.cin / 4).max(1)));
        let c = ConvShape {
            cin: hidden,
            cout: s.cout,
            k: 1,
            stride: 1,
            groups: 1,
        };
        let project = ConvBn::seq(&next(), c, Act::Linear, EPS);
        MbConv {
            expand,
            dw,
            se,
            project,
            residual: s.stride == 1 && s.cin == s.cout,
        }
    }
}

impl Block for MbConv {
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = match &self.expand {
            Some(e) => e.forward(xs, train),
            None => xs.shallow_clone(),
        };
        y = self.dw.forward(&y, train);
        if let Some(se) = &self.se {
            y = se.forward(&y);
        }
        y = self.project.forward(&y, train);
        if self.residual {
            y + xs
        } else {
            y
        }
    }

    fn student_block(&self) -> Option<StudentBlock<'_>> {
        // Squeeze-excite (full EfficientNet) has no int8 lowering here; the lite blocks do.
        if self.se.is_some() {
            return None;
        }
        Some(StudentBlock::Inverted {
            expand: self.expand.as_ref(),
            dw: &self.dw,
            project: &self.project,
            residual: self.residual,
        })
    }
}

/// Builds EfficientNet or EfficientNet-Lite for `spec` under `vs` (names: see the
/// [module docs](super)).
pub fn build(vs: &nn::Path, spec: &ModelSpec) -> Net {
    let lite = spec.arch == Arch::EfficientNetLite;
    let act = if lite { Act::Relu6 } else { Act::Silu };
    let width = |c: f64| make_divisible(c * spec.width);
    let f = vs / "features";
    let mut cin = if lite { 32 } else { width(32.0) };
    let stem = ConvShape {
        cin: 3,
        cout: cin,
        k: 3,
        stride: 2,
        groups: 1,
    };
    let mut layers = vec![Layer {
        groups: vec!["features.0".into()],
        stride: 2,
        block: Box::new(ConvBn::seq(&(&f / 0), stem, act, EPS)),
    }];
    for (k, &(expand, kernel, stride, c, n)) in STAGES.iter().enumerate() {
        let cout = width(c as f64);
        let fixed = lite && (k == 0 || k == STAGES.len() - 1);
        let repeats = if fixed { n } else { scale_depth(n, spec.depth) };
        let stage = &f / (k + 1);
        for i in 0..repeats {
            let s = MbShape {
                cin,
                cout,
                expand,
                kernel,
                stride: if i == 0 { stride } else { 1 },
            };
            layers.push(Layer {
                groups: vec![format!("features.{}.{i}", k + 1)],
                stride: s.stride,
                block: Box::new(MbConv::new(&(&stage / i), s, lite)),
            });
            cin = cout;
        }
    }
    let last = if lite { 1280 } else { 4 * cin };
    let head = ConvShape {
        cin,
        cout: last,
        k: 1,
        stride: 1,
        groups: 1,
    };
    layers.push(Layer {
        groups: vec!["features.8".into()],
        stride: 1,
        block: Box::new(ConvBn::seq(&(&f / 8), head, act, EPS)),
    });
    let fc = nn::linear(
        vs / "classifier" / 1,
        last,
        spec.num_classes as i64,
        Default::default(),
    );
    Net::new(spec.clone(), layers, "classifier", fc)
}
