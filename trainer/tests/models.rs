//! The networks: parameter counts against published torchvision figures or hand tallies,
//! forward shapes, named taps, layer names and groups, freezing, TorchScript teachers.

use std::collections::BTreeMap;

use kdtrainer::models::{
    build, group_of, set_trainable_top, Arch, Classifier, ModelSpec, Teacher, TorchScriptTeacher,
};
use kdtrainer::pipeline::Normalization;
use tch::nn;
use tch::{Device, Kind, Tensor};

fn spec(s: &str, size: u32, classes: usize) -> ModelSpec {
    ModelSpec::parse(s, size, classes, 0.2).unwrap()
}

fn built(s: &ModelSpec) -> (nn::VarStore, Box<dyn Classifier>) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = build(&vs.root(), s).unwrap();
    (vs, m)
}

fn trainable_params(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum()
}

#[test]
fn full_size_parameter_counts_match_torchvision() {
    // torchvision's published parameter counts (model documentation, 1000 classes).
    for (name, want) in [
        ("mobilenet_v2", 3_504_872),
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("efficientnet_b0", 5_288_548),
        ("efficientnet_b1", 7_794_184),
        ("efficientnet_b2", 9_109_994),
        ("efficientnet_b3", 12_233_232),
    ] {
        let (vs, _) = built(&spec(name, 32, 1000));
        assert_eq!(trainable_params(&vs), want, "{name}");
    }
}

/// Squeeze-excite parameters of EfficientNet-B0, tallied by hand per block as
/// (block input channels, expanded channels): fc1 `e*s + s`, fc2 `s*e + e`, `s = in / 4`.
fn b0_se_params() -> i64 {
    let blocks = [
        (32, 32),
        (16, 96),
        (24, 144),
        (24, 144),
        (40, 240),
        (40, 240),
        (80, 480),
        (80, 480),
        (80, 480),
        (112, 672),
        (112, 672),
        (112, 672),
        (192, 1152),
        (192, 1152),
        (192, 1152),
        (192, 1152),
    ];
    blocks
        .iter()
        .map(|&(i, e)| {
            let s = i / 4;
            e * s + s + s * e + e
        })
        .sum()
}

#[test]
fn efficientnet_lite0_is_b0_without_squeeze_excite() {
    // Lite0 has B0's layers (same widths at 1.0, stem 32, head 1280) minus squeeze-excite:
    // 5,288,548 - 636,540 = 4,652,008, timm's published tf_efficientnet_lite0 count.
    assert_eq!(b0_se_params(), 636_540);
    let (vs, _) = built(&spec("efficientnet_lite0", 32, 1000));
    assert_eq!(trainable_params(&vs), 5_288_548 - b0_se_params());
    assert_eq!(trainable_params(&vs), 4_652_008);
    assert!(vs.variables().keys().all(|k| !k.contains("fc1")));
}

fn conv(cin: i64, cout: i64, k: i64, groups: i64) -> i64 {
    cout * (cin / groups) * k * k
}

#[test]
fn tiny_variants_match_hand_tallies() {
    // mobilenet_v2_tiny (width 0.25, depth 0.34): channels 8 (stem), then per block
    // (t, cin, cout): widths 16,24,32,64,96,160,320 x 0.25 rounded to multiples of 8 (at least 8)
    // = 8,8,8,16,24,40,80; repeats ceil(n * 0.34) = 1,1,2,2,2,2,1; head 1280.
    let blocks = [
        (1, 8, 8),
        (6, 8, 8),
        (6, 8, 8),
        (6, 8, 8),
        (6, 8, 16),
        (6, 16, 16),
        (6, 16, 24),
        (6, 24, 24),
        (6, 24, 40),
        (6, 40, 40),
        (6, 40, 80),
    ];
    let mut want = conv(3, 8, 3, 1) + 16;
    for (t, cin, cout) in blocks {
        let h = cin * t;
        if t != 1 {
            want += conv(cin, h, 1, 1) + 2 * h;
        }
        want += conv(h, h, 3, h) + 2 * h + conv(h, cout, 1, 1) + 2 * cout;
    }
    want += conv(80, 1280, 1, 1) + 2 * 1280 + 1280 * 10 + 10;
    let (vs, m) = built(&spec("mobilenet_v2_tiny", 32, 10));
    assert_eq!(trainable_params(&vs), want);
    assert_eq!(m.layer_groups().len(), 1 + blocks.len() + 1 + 1);

    // resnet_tiny (width 0.25, depth 0.5): stem 16, one basic block per stage 16,32,64,128.
    let mut want = conv(3, 16, 7, 1) + 32;
    for (cin, cout) in [(16, 16), (16, 32), (32, 64), (64, 128)] {
        want += conv(cin, cout, 3, 1) + conv(cout, cout, 3, 1) + 4 * cout;
        if cin != cout {
            want += conv(cin, cout, 1, 1) + 2 * cout;
        }
    }
    want += 128 * 10 + 10;
    let (vs, _) = built(&spec("resnet_tiny", 32, 10));
    assert_eq!(trainable_params(&vs), want);
}

const ALL: [&str; 8] = [
    "mobilenet_v2_tiny",
    "mobilenet_v2:0.35",
    "efficientnet_tiny",
    "efficientnet_lite_tiny",
    "efficientnet_lite0",
    "resnet_tiny",
    "resnet18:0.5",
    "efficientnet_b0:0.5:0.5",
];

#[test]
fn every_model_forwards_with_taps_groups_and_freezing() {
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    for name in ALL {
        let s = spec(name, 64, 7);
        let (vs, m) = built(&s);
        let y = m.forward_t(&x, true);
        assert_eq!(y.size(), [2, 7], "{name}");
        let eval = m.forward_t(&x, false);
        let taps = m.forward_features(&x, false);
        let names: Vec<&str> = taps.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(
            names,
            ["stride4", "stride8", "stride16", "stride32", "pooled", "logits"],
            "{name}"
        );
        for (t, side) in taps.iter().zip([16, 8, 4, 2]) {
            let sz = t.1.size();
            assert_eq!((sz[0], sz[2], sz[3]), (2, side, side), "{name} {}", t.0);
        }
        assert_eq!(taps[4].1.size().len(), 2);
        // Evaluation is deterministic and the logits tap is the forward output.
        assert!(taps[5].1.equal(&eval), "{name}");

        // Every variable belongs to exactly one group; every group has variables.
        let groups = m.layer_groups();
        let vars = vs.variables();
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for k in vars.keys() {
            let g = group_of(k, &groups).unwrap_or_else(|| panic!("{name}: {k} has no group"));
            assert_eq!(
                groups
                    .iter()
                    .filter(|h| group_of(k, std::slice::from_ref(h)).is_some())
                    .count(),
                1
            );
            *per.entry(g).or_default() += 1;
        }
        assert_eq!(per.len(), groups.len(), "{name}: empty group");
        let head = groups.last().unwrap();
        assert!(head == "classifier" || head == "fc");

        // Top 30 %: exactly the last ceil(0.3 * G) groups require gradients; statistics never.
        let n = set_trainable_top(&vs, &groups, 0.3).unwrap();
        assert_eq!(n, (0.3 * groups.len() as f64).ceil() as usize);
        let top = &groups[groups.len() - n..];
        for (k, t) in &vars {
            let stat = k.ends_with("running_mean") || k.ends_with("running_var");
            let want = !stat
                && top
                    .iter()
                    .any(|g| group_of(k, std::slice::from_ref(g)).is_some());
            assert_eq!(t.requires_grad(), want, "{name}: {k}");
        }
        set_trainable_top(&vs, &groups, 1.0).unwrap();
        assert!(vs.trainable_variables().iter().all(Tensor::requires_grad));
        set_trainable_top(&vs, &groups, 0.0).unwrap();
        assert!(vs.trainable_variables().iter().all(|t| !t.requires_grad()));
        assert!(set_trainable_top(&vs, &groups, 1.5).is_err());
    }
}

#[test]
fn layer_names_follow_torchvision() {
    let (vs, m) = built(&spec("mobilenet_v2", 32, 10));
    let v = vs.variables();
    for k in [
        "features.0.0.weight",
        "features.0.1.running_var",
        "features.1.conv.0.0.weight", // depthwise of the t = 1 block
        "features.1.conv.1.weight",
        "features.1.conv.2.bias",
        "features.3.conv.0.0.weight",
        "features.3.conv.1.0.weight",
        "features.3.conv.2.weight",
        "features.3.conv.3.running_mean",
        "features.18.0.weight",
        "classifier.1.weight",
        "classifier.1.bias",
    ] {
        assert!(v.contains_key(k), "mobilenet_v2: {k}");
    }
    assert_eq!(v["features.3.conv.1.0.weight"].size(), [144, 1, 3, 3]);
    assert_eq!(m.layer_groups().len(), 20);
    let (vs, _) = built(&spec("efficientnet_b0", 32, 10));
    let v = vs.variables();
    for k in [
        "features.1.0.block.0.0.weight",
        "features.1.0.block.1.fc1.weight",
        "features.1.0.block.2.1.weight",
        "features.2.1.block.2.fc2.bias",
        "features.6.3.block.3.0.weight",
        "features.8.0.weight",
        "classifier.1.weight",
    ] {
        assert!(v.contains_key(k), "efficientnet_b0: {k}");
    }
    assert_eq!(v["features.6.3.block.1.0.weight"].size(), [1152, 1, 5, 5]);
    let (vs, _) = built(&spec("resnet18", 32, 10));
    let v = vs.variables();
    for k in [
        "conv1.weight",
        "bn1.running_mean",
        "layer1.1.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer4.1.bn2.bias",
        "fc.weight",
    ] {
        assert!(v.contains_key(k), "resnet18: {k}");
    }
    assert!(!v.contains_key("layer1.0.downsample.0.weight"));
}

#[test]
fn specs_parse_and_reject_bad_input() {
    let s = spec("mobilenet_v2:0.35", 32, 10);
    assert_eq!((s.arch, s.width, s.depth), (Arch::MobileNetV2, 0.35, 1.0));
    assert_eq!(s.normalization, Normalization::STUDENT);
    let s = spec("efficientnet_b2", 64, 10);
    assert_eq!((s.arch, s.width, s.depth), (Arch::EfficientNet, 1.1, 1.2));
    assert_eq!(s.normalization, Normalization::IMAGENET);
    let s = spec("resnet34:0.5:2", 64, 3);
    assert_eq!(
        s.arch,
        Arch::ResNet {
            blocks: [3, 4, 6, 3],
            small_stem: false
        }
    );
    assert_eq!((s.width, s.depth), (0.5, 2.0));
    assert_eq!(s.to_string(), "resnet[3,4,6,3]:0.5:2");
    for (bad, msg) in [
        ("vgg16", "unknown network \"vgg16\""),
        ("mobilenet_v2:wide", "width \"wide\" is not a number"),
        ("mobilenet_v2:0", "width 0 must be in (0, 4]"),
        ("resnet18:1:1:1", "expected name[:width[:depth]]"),
    ] {
        let e = ModelSpec::parse(bad, 32, 10, 0.2).unwrap_err().to_string();
        assert!(e.contains(msg), "{bad}: {e}");
    }
    assert!(ModelSpec::parse("resnet18", 32, 0, 0.2).is_err());
    assert!(ModelSpec::parse("resnet18", 32, 10, 1.0).is_err());
}

#[test]
fn torchscript_teacher_matches_the_traced_network() {
    let (mut vs, m) = built(&spec("mobilenet_v2_tiny", 32, 5));
    // The tracer stores weights as constants, which must not require gradients.
    vs.freeze();
    let example = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let traced = tch::no_grad(|| {
        tch::CModule::create_by_tracing(
            "Teacher",
            "forward",
            &[example.shallow_clone()],
            &mut |xs| vec![m.forward_t(&xs[0], false)],
        )
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("teacher.pt");
    traced.save(&path).unwrap();

    let t = TorchScriptTeacher::load(&path, Device::Cpu).unwrap();
    // Another batch size than the trace's example.
    let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
    let got = t.forward(&x).unwrap();
    let want = tch::no_grad(|| m.forward_t(&x, false));
    assert_eq!(got.size(), [3, 5]);
    let diff = (&got - &want).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max |diff| {diff}");
    let teacher = Teacher::Script(t);
    assert!(teacher
        .logits(&x)
        .unwrap()
        .allclose(&want, 1e-5, 1e-5, false));
    assert_eq!(teacher.normalization(), Normalization::IMAGENET);

    // A module whose output is not [N, C] is refused with its path named.
    let flat =
        tch::CModule::create_by_tracing("Flat", "forward", &[example.shallow_clone()], &mut |xs| {
            vec![xs[0].flatten(0, -1)]
        })
        .unwrap();
    let fpath = dir.path().join("flat.pt");
    flat.save(&fpath).unwrap();
    let e = TorchScriptTeacher::load(&fpath, Device::Cpu)
        .unwrap()
        .forward(&x)
        .unwrap_err();
    assert!(
        e.to_string().contains("flat.pt: returned shape [9216]"),
        "{e}"
    );

    // Not a TorchScript file.
    let junk = dir.path().join("junk.pt");
    std::fs::write(&junk, b"junk").unwrap();
    let e = TorchScriptTeacher::load(&junk, Device::Cpu).unwrap_err();
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot load as TorchScript", junk.display())));
}

#[test]
fn cifar_stem_keeps_the_input_resolution() {
    // resnet_tiny_cifar: resnet_tiny with a 3x3/1 stem and no max pooling.
    let s = spec("resnet_tiny_cifar", 28, 10);
    assert_eq!(
        s.arch,
        Arch::ResNet {
            blocks: [2, 2, 2, 2],
            small_stem: true
        }
    );
    assert_eq!(s.to_string(), "resnet_cifar[2,2,2,2]:0.25:0.5");
    let mut want = conv(3, 16, 3, 1) + 32;
    for (cin, cout) in [(16, 16), (16, 32), (32, 64), (64, 128)] {
        want += conv(cin, cout, 3, 1) + conv(cout, cout, 3, 1) + 4 * cout;
        if cin != cout {
            want += conv(cin, cout, 1, 1) + 2 * cout;
        }
    }
    want += 128 * 10 + 10;
    let (vs, m) = built(&s);
    assert_eq!(trainable_params(&vs), want);
    // Stages at strides 1, 2, 4, 8: a 28 px input ends at 4x4 (28 -> 14 -> 7 -> 4).
    let x = Tensor::randn([2, 3, 28, 28], (Kind::Float, Device::Cpu));
    let taps: BTreeMap<String, Vec<i64>> = m
        .forward_features(&x, false)
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    assert_eq!(taps["stride4"], [2, 64, 7, 7]);
    assert_eq!(taps["stride8"], [2, 128, 4, 4]);
    assert_eq!(taps["logits"], [2, 10]);
    assert!(!taps.contains_key("stride16"));
    // The ImageNet stem of resnet_tiny reaches stride 32 (1x1) on the same input.
    let (_vs, m) = built(&spec("resnet_tiny", 28, 10));
    let taps: BTreeMap<String, Vec<i64>> = m
        .forward_features(&x, false)
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    assert_eq!(taps["stride32"], [2, 128, 1, 1]);
}
