//! MobileNetV2 (Sandler et al. 2018) as torchvision builds it: inverted residual blocks
//! (expand 1x1 -> depthwise 3x3 -> linear 1x1 projection), ReLU6, a width multiplier on every
//! channel count (rounded by [`make_divisible`]), head width `1280 * max(1, width)`.
//! The depth multiplier (an extension) scales each stage's repeats to `ceil(n * depth)`.

use tch::{nn, Tensor};

use super::{
    make_divisible, scale_depth, Act, Block, ConvBn, ConvShape, Layer, ModelSpec, Net, StudentBlock,
};

/// `(t, c, n, s)`: expansion, output channels, repeats, stride of the first repeat.
pub const STAGES: [(i64, i64, usize, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

const EPS: f64 = 1e-5;

/// An inverted residual block (`features.i`).
#[derive(Debug)]
pub struct InvertedResidual {
    expand: Option<ConvBn>,
    dw: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    /// Block at `p` from `cin` to `cout` channels.
    pub fn new(p: &nn::Path, cin: i64, cout: i64, stride: i64, t: i64) -> Self {
        let conv = p / "conv";
        let hidden = cin * t;
        let mut i = 0;
        let mut next = || {
            let q = &conv / i;
            i += 1;
            q
        };
        let expand = (t != 1).then(|| {
            let s = ConvShape {
                cin,
                cout: hidden,
                k: 1,
                stride: 1,
                groups: 1,
            };
            ConvBn::seq(&next(), s, Act::Relu6, EPS)
        });
        let s = ConvShape {
            cin: hidden,
            cout: hidden,
            k: 3,
            stride,
            groups: hidden,
        };
        let dw = ConvBn::seq(&next(), s, Act::Relu6, EPS);
        let (pc, pb) = (next(), next());
        let s = ConvShape {
            cin: hidden,
            cout,
            k: 1,
            stride: 1,
            groups: 1,
        };
        let project = ConvBn::new(pc, pb, s, Act::Linear, EPS);
        InvertedResidual {
            expand,
            dw,
            project,
            residual: stride == 1 && cin == cout,
        }
    }
}

impl Block for InvertedResidual {
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = match &self.expand {
            Some(e) => e.forward(xs, train),
            None => xs.shallow_clone(),
        };
        y = self.dw.forward(&y, train);
        y = self.project.forward(&y, train);
        if self.residual {
            y + xs
        } else {
            y
        }
    }

    fn student_block(&self) -> Option<StudentBlock<'_>> {
        Some(StudentBlock::Inverted {
            expand: self.expand.as_ref(),
            dw: &self.dw,
            project: &self.project,
            residual: self.residual,
        })
    }
}

impl Block for ConvBn {
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        ConvBn::forward(self, xs, train)
    }

    fn student_block(&self) -> Option<StudentBlock<'_>> {
        // Only the int8-friendly activations; a SiLU stem (EfficientNet) is not a student's.
        matches!(self.parts().act, Act::Linear | Act::Relu | Act::Relu6)
            .then_some(StudentBlock::Conv(self))
    }
}

/// Builds MobileNetV2 for `spec` under `vs` (names: see the [module docs](super)).
pub fn build(vs: &nn::Path, spec: &ModelSpec) -> Net {
    let f = vs / "features";
    let mut cin = make_divisible(32.0 * spec.width);
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
        block: Box::new(ConvBn::seq(&(&f / 0), stem, Act::Relu6, EPS)),
    }];
    for (t, c, n, s) in STAGES {
        let cout = make_divisible(c as f64 * spec.width);
        for r in 0..scale_depth(n, spec.depth) {
            let i = layers.len();
            let stride = if r == 0 { s } else { 1 };
            layers.push(Layer {
                groups: vec![format!("features.{i}")],
                stride,
                block: Box::new(InvertedResidual::new(&(&f / i), cin, cout, stride, t)),
            });
            cin = cout;
        }
    }
    let last = make_divisible(1280.0 * spec.width.max(1.0));
    let i = layers.len();
    let head = ConvShape {
        cin,
        cout: last,
        k: 1,
        stride: 1,
        groups: 1,
    };
    layers.push(Layer {
        groups: vec![format!("features.{i}")],
        stride: 1,
        block: Box::new(ConvBn::seq(&(&f / i), head, Act::Relu6, EPS)),
    });
    let fc = nn::linear(
        vs / "classifier" / 1,
        last,
        spec.num_classes as i64,
        nn::LinearConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        },
    );
    Net::new(spec.clone(), layers, "classifier", fc)
}
