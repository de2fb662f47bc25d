//! ResNet with basic blocks (He et al. 2016) as torchvision builds it: 7x7/2 stem, 3x3/2 max
//! pooling, four stages of basic blocks (64, 128, 256, 512 channels times the width multiplier,
//! rounded to a multiple of 8 by [`make_divisible`]), 1x1 projection shortcuts where the shape
//! changes, ReLU. Repeats per stage are `ceil(blocks * depth)`.
//!
//! With `small_stem` (the `*_cifar` presets) the stem is He et al.'s CIFAR one: a 3x3/1 conv
//! without max pooling, so a 28-32 px input keeps its resolution into stage 1 (the ImageNet stem
//! divides it by 4). The variable names are the same.

use tch::{nn, Tensor};

use super::{
    make_divisible, scale_depth, Act, Arch, Block, ConvBn, ConvShape, Layer, ModelSpec, Net,
};

const EPS: f64 = 1e-5;

/// conv1/bn1/ReLU, then 3x3/2 max pooling unless `pool` is false (small-input stem).
#[derive(Debug)]
struct Stem {
    conv: ConvBn,
    pool: bool,
}

impl Block for Stem {
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = self.conv.forward(xs, train);
        if self.pool {
            y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
        } else {
            y
        }
    }
}

/// A basic block (`layerK.i`): two 3x3 convs and a shortcut.
#[derive(Debug)]
pub struct BasicBlock {
    a: ConvBn,
    b: ConvBn,
    down: Option<ConvBn>,
}

impl BasicBlock {
    /// Block at `p` from `cin` to `cout` channels.
    pub fn new(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
        let s = ConvShape {
            cin,
            cout,
            k: 3,
            stride,
            groups: 1,
        };
        let a = ConvBn::new(p / "conv1", p / "bn1", s, Act::Relu, EPS);
        let s = ConvShape {
            cin: cout,
            cout,
            k: 3,
            stride: 1,
            groups: 1,
        };
        let b = ConvBn::new(p / "conv2", p / "bn2", s, Act::Linear, EPS);
        let down = (stride != 1 || cin != cout).then(|| {
            let s = ConvShape {
                cin,
                cout,
                k: 1,
                stride,
                groups: 1,
            };
            ConvBn::seq(&(p / "downsample"), s, Act::Linear, EPS)
        });
        BasicBlock { a, b, down }
    }
}

impl Block for BasicBlock {
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = self.b.forward(&self.a.forward(xs, train), train);
        let short = match &self.down {
            Some(d) => d.forward(xs, train),
            None => xs.shallow_clone(),
        };
        (y + short).relu()
    }
}

/// Builds a ResNet for `spec` under `vs` (names: see the [module docs](super)).
pub fn build(vs: &nn::Path, spec: &ModelSpec) -> Net {
    let (blocks, small_stem) = match spec.arch {
        Arch::ResNet { blocks, small_stem } => (blocks, small_stem),
        _ => ([2, 2, 2, 2], false),
    };
    let width = |c: f64| make_divisible(c * spec.width);
    let mut cin = width(64.0);
    let s = ConvShape {
        cin: 3,
        cout: cin,
        k: if small_stem { 3 } else { 7 },
        stride: if small_stem { 1 } else { 2 },
        groups: 1,
    };
    let stem = ConvBn::new(vs / "conv1", vs / "bn1", s, Act::Relu, EPS);
    let mut layers = vec![Layer {
        groups: vec!["conv1".into(), "bn1".into()],
        stride: if small_stem { 1 } else { 4 },
        block: Box::new(Stem {
            conv: stem,
            pool: !small_stem,
        }),
    }];
    for (k, (&n, c)) in blocks.iter().zip([64.0, 128.0, 256.0, 512.0]).enumerate() {
        let cout = width(c);
        let stage = vs / format!("layer{}", k + 1);
        for i in 0..scale_depth(n, spec.depth) {
            let stride = if i == 0 && k > 0 { 2 } else { 1 };
            layers.push(Layer {
                groups: vec![format!("layer{}.{i}", k + 1)],
                stride,
                block: Box::new(BasicBlock::new(&(&stage / i), cin, cout, stride)),
            });
            cin = cout;
        }
    }
    let fc = nn::linear(vs / "fc", cin, spec.num_classes as i64, Default::default());
    Net::new(spec.clone(), layers, "fc", fc)
}
