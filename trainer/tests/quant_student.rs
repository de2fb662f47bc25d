//! Post-training quantisation, QAT and lowering of real students on real data: a
//! mobilenet_v2_tiny trained here for a few epochs on 500 Fashion-MNIST images at 32 px, and an
//! efficientnet_lite_tiny. The integer graphs are checked against the float networks' own
//! variables and evaluated by an independent integer evaluation written below (it reads only the
//! `IntGraph`, accumulates in exact integers and requantises in float64).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kdtrainer::config::Config;
use kdtrainer::data::import::fashion_mnist;
use kdtrainer::data::{Dataset, Mode, ModeChoice, Split};
use kdtrainer::models::{build, Classifier, ModelSpec};
use kdtrainer::pipeline::{Loader, LoaderOptions, Normalization};
use kdtrainer::quant::fake_quant::round_half_away;
use kdtrainer::quant::graph::{ElemType, FusedAct, IntGraph, IntOp, QParams};
use kdtrainer::quant::ptq::{calibrate, calibration_loader, post_training_quantize};
use kdtrainer::quant::{QatNet, QatOptions};
use kdtrainer::train::{self, PhaseSpec, TrainSpec, Trainable};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const SIZE: u32 = 32;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    /// The trained float mobilenet_v2_tiny.
    weights: PathBuf,
}

fn spec(name: &str) -> ModelSpec {
    ModelSpec::parse(name, SIZE, 10, 0.0).unwrap()
}

fn opts(batch: usize) -> LoaderOptions {
    let mut o = LoaderOptions::new(SIZE as usize, batch, Normalization::STUDENT);
    o.quiet = true;
    o.workers = 2;
    o.cache = true;
    o
}

/// 500 images per split, and a float student trained on them once per test binary.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("fm");
        let o = fashion_mnist::Options {
            limit: Some(500),
            seed: 11,
            val: 6000,
        };
        fashion_mnist::import(&repo("data/raw/fashion-mnist"), &data, &o).unwrap();
        let ds = Dataset::load(&data, ModeChoice::Auto).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        tch::manual_seed(5);
        let net = build(&vs.root(), &spec("mobilenet_v2_tiny")).unwrap();
        let mut o = opts(50);
        o.shuffle = true;
        let loader = Loader::new(&ds, Split::Train, o).unwrap();
        let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
        for e in 0..8 {
            for b in loader.epoch(e) {
                let b = b.unwrap();
                let loss = net
                    .forward_t(&b.images, true)
                    .cross_entropy_for_logits(&b.class_targets().unwrap());
                opt.backward_step(&loss);
            }
        }
        train::recalibrate_batch_norm(net.as_ref(), &vs, &loader, 0, 10, false).unwrap();
        let weights = dir.path().join("float.safetensors");
        vs.save(&weights).unwrap();
        Fixture {
            _dir: dir,
            data,
            weights,
        }
    })
}

fn dataset() -> Dataset {
    Dataset::load(&fixture().data, ModeChoice::Auto).unwrap()
}

/// The trained float student.
fn float_student() -> (nn::VarStore, Box<dyn Classifier>) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), &spec("mobilenet_v2_tiny")).unwrap();
    vs.load(&fixture().weights).unwrap();
    (vs, net)
}

/// All images and labels of a split, in list order.
fn split(ds: &Dataset, s: Split) -> (Tensor, Vec<usize>) {
    let l = Loader::new(ds, s, opts(100)).unwrap();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for b in l.epoch(0) {
        let b = b.unwrap();
        xs.push(b.images);
        ys.extend(b.labels.iter().map(|l| l[0]));
    }
    (Tensor::cat(&xs, 0), ys)
}

fn top1(scores: &Tensor, labels: &[usize]) -> f64 {
    let pred = Vec::<i64>::try_from(scores.to_kind(Kind::Float).argmax(-1, false)).unwrap();
    let ok = pred
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p as usize == **l)
        .count();
    ok as f64 / labels.len() as f64
}

fn vals(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Independent integer evaluation of an IntGraph (NCHW, float64 holding exact integers).

/// Requantises real values `real` to the int8 grid of `q` with `act`'s clamp.
fn requant(real: &Tensor, q: QParams, act: FusedAct) -> Tensor {
    let (s, z) = (f64::from(q.scale), f64::from(q.zero_point));
    let t = round_half_away(&(real / s)) + z;
    let lo = match act {
        FusedAct::None => -128.0,
        FusedAct::Relu | FusedAct::Relu6 => z.max(-128.0),
    };
    let hi = match act {
        FusedAct::Relu6 => (z + (6.0 / s).round()).min(127.0),
        _ => 127.0,
    };
    t.clamp(lo, hi)
}

/// Weights `[O, ...]` in PyTorch order and per-channel real multipliers of an accumulator.
fn weights_f64(w: &kdtrainer::quant::graph::ChannelWeights) -> (Tensor, Tensor, Tensor) {
    let shape: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
    let vals: Vec<f64> = w.values.iter().map(|&v| f64::from(v)).collect();
    let t = Tensor::from_slice(&vals).reshape(&shape);
    let scales: Vec<f64> = w.scales.iter().map(|&s| f64::from(s)).collect();
    let bias: Vec<f64> = w.bias.iter().map(|&b| f64::from(b)).collect();
    (t, Tensor::from_slice(&scales), Tensor::from_slice(&bias))
}

/// The int8 outputs of `g` for uint8 images `bytes` `[N, 3, S, S]` (float64 values).
fn int_eval(g: &IntGraph, bytes: &Tensor) -> Tensor {
    let mut vals: Vec<Option<Tensor>> = (0..g.tensors.len()).map(|_| None).collect();
    vals[g.input] = Some(bytes.to_kind(Kind::Double));
    let q = |i: usize| g.tensors[i].q;
    for op in &g.ops {
        match op {
            IntOp::Quantize { input, output } => {
                let x = vals[*input].as_ref().unwrap();
                let real = (x - f64::from(q(*input).zero_point)) * f64::from(q(*input).scale);
                vals[*output] = Some(requant(&real, q(*output), FusedAct::None));
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
                let x = vals[*input].as_ref().unwrap() - f64::from(q(*input).zero_point);
                let x = x.constant_pad_nd([
                    pads[2] as i64,
                    pads[3] as i64,
                    pads[0] as i64,
                    pads[1] as i64,
                ]);
                let (w, s, b) = weights_f64(weights);
                let (w, groups) = if *depthwise {
                    let c = w.size()[3];
                    (w.permute([3, 0, 1, 2]), c)
                } else {
                    (w.permute([0, 3, 1, 2]), 1)
                };
                let st = *stride as i64;
                let acc = x.conv2d(&w, Some(&b), [st, st], [0, 0], [1, 1], groups);
                let m = s * f64::from(q(*input).scale);
                let real = acc * m.reshape([1, -1, 1, 1]);
                vals[*output] = Some(requant(&real, q(*output), *act));
            }
            IntOp::Add { a, b, output, act } => {
                let deq = |i: usize| {
                    (vals[i].as_ref().unwrap() - f64::from(q(i).zero_point)) * f64::from(q(i).scale)
                };
                vals[*output] = Some(requant(&(deq(*a) + deq(*b)), q(*output), *act));
            }
            IntOp::GlobalAvgPool { input, output } => {
                let x = vals[*input].as_ref().unwrap() - f64::from(q(*input).zero_point);
                let real = x.mean_dim([2i64, 3].as_slice(), false, Kind::Double)
                    * f64::from(q(*input).scale);
                vals[*output] = Some(requant(&real, q(*output), FusedAct::None));
            }
            IntOp::FullyConnected {
                input,
                output,
                weights,
                act,
            } => {
                let x = vals[*input].as_ref().unwrap() - f64::from(q(*input).zero_point);
                let (w, s, b) = weights_f64(weights);
                let acc = x.matmul(&w.transpose(0, 1)) + b;
                let real = acc * (s * f64::from(q(*input).scale));
                vals[*output] = Some(requant(&real, q(*output), *act));
            }
        }
    }
    vals[g.output].take().unwrap()
}

/// The uint8 bytes of student-normalised images (`x = (p - 127) / 128`).
fn bytes_of(images: &Tensor) -> Tensor {
    (images * 128.0 + 127.0).round()
}

// ---------------------------------------------------------------------------------------------
// Structural invariants, checked against the float network's own variables.

fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()
        .remove(name)
        .unwrap_or_else(|| panic!("no variable {name}"))
}

/// The BatchNorm prefix after conv prefix `c` (`...conv.2` -> `...conv.3`, `x.0` -> `x.1`).
fn bn_of(c: &str) -> String {
    let (head, last) = c.rsplit_once('.').unwrap();
    format!("{head}.{}", last.parse::<usize>().unwrap() + 1)
}

/// Shapes chain, parameters are in range, and each layer's integers dequantise to the float
/// network's BatchNorm-folded weights and bias (within half a step: the scale rule
/// `bias_scale = input_scale * weight_scale[c]` included). `eps` is the family's BN epsilon.
fn check_graph(g: &IntGraph, var: &dyn Fn(&str) -> Tensor, eps: f64) {
    let t = &g.tensors;
    assert_eq!(t[g.input].elem, ElemType::U8);
    assert_eq!(t[g.input].shape, [1, SIZE as usize, SIZE as usize, 3]);
    for (i, x) in t.iter().enumerate() {
        assert!(x.q.scale > 0.0 && x.q.scale.is_finite(), "{}", x.name);
        let range = if i == g.input { 0..=255 } else { -128..=127 };
        assert!(range.contains(&x.q.zero_point), "{}", x.name);
        if i != g.input {
            assert_eq!(x.elem, ElemType::I8, "{}", x.name);
        }
    }
    let mut produced = vec![false; t.len()];
    produced[g.input] = true;
    let mut n_conv = 0;
    for op in &g.ops {
        let (ins, out): (Vec<usize>, usize) = match op {
            IntOp::Quantize { input, output } => {
                assert_eq!(t[*output].q.scale, t[*input].q.scale);
                assert_eq!(t[*output].q.zero_point, t[*input].q.zero_point - 128);
                assert_eq!(t[*output].shape, t[*input].shape);
                (vec![*input], *output)
            }
            IntOp::Conv {
                input,
                output,
                weights: w,
                depthwise,
                stride,
                pads,
                ..
            } => {
                n_conv += 1;
                let (si, so) = (&t[*input].shape, &t[*output].shape);
                let k = w.shape[1];
                assert_eq!(w.shape[2], k);
                assert_eq!(*pads, [k / 2; 4]);
                let h = (si[1] + pads[0] + pads[1] - k) / stride + 1;
                assert_eq!(so[..3], [1, h, h], "{}", t[*output].name);
                let cout = so[3];
                if *depthwise {
                    assert_eq!(w.shape, [1, k, k, cout]);
                    assert_eq!(si[3], cout);
                } else {
                    assert_eq!(w.shape, [cout, k, k, si[3]]);
                }
                assert_eq!((w.scales.len(), w.bias.len()), (cout, cout));
                assert!(w.scales.iter().all(|s| *s > 0.0));
                assert!(w.values.iter().all(|v| *v >= -127));
                // Against the float network: w' = w * gamma / sqrt(var + eps), b' = beta - mean * ..
                let name = &t[*output].name;
                let bn = bn_of(name);
                let factor =
                    var(&format!("{bn}.weight")) / (var(&format!("{bn}.running_var")) + eps).sqrt();
                let wf = var(&format!("{name}.weight")) * factor.reshape([-1, 1, 1, 1]);
                let bf = var(&format!("{bn}.bias")) - var(&format!("{bn}.running_mean")) * &factor;
                let (wq, s, b) = weights_f64(w);
                let wq = if *depthwise {
                    wq.permute([3, 0, 1, 2])
                } else {
                    wq.permute([0, 3, 1, 2])
                };
                let s4 = s.reshape([-1, 1, 1, 1]);
                let err = (wq * &s4 - wf.to_kind(Kind::Double)).abs() - &s4 * 0.5;
                assert!(vals(&err).iter().all(|e| *e <= 1e-6), "{name}: weights");
                let bscale = s * f64::from(t[*input].q.scale);
                let err = (b * &bscale - bf.to_kind(Kind::Double)).abs() - &bscale * 0.5;
                assert!(vals(&err).iter().all(|e| *e <= 1e-9), "{name}: bias");
                (vec![*input], *output)
            }
            IntOp::Add { a, b, output, .. } => {
                assert_eq!(t[*a].shape, t[*b].shape);
                assert_eq!(t[*output].shape, t[*a].shape);
                (vec![*a, *b], *output)
            }
            IntOp::GlobalAvgPool { input, output } => {
                assert_eq!(t[*output].shape, [1, t[*input].shape[3]]);
                (vec![*input], *output)
            }
            IntOp::FullyConnected {
                input,
                output,
                weights: w,
                ..
            } => {
                assert_eq!(w.shape, [t[*output].shape[1], t[*input].shape[1]]);
                assert!(w.values.iter().all(|v| *v >= -127));
                assert_eq!(w.scales.len(), w.bias.len());
                (vec![*input], *output)
            }
        };
        for i in ins {
            assert!(produced[i], "{} read before it is produced", t[i].name);
        }
        assert!(!produced[out], "{} produced twice", t[out].name);
        produced[out] = true;
    }
    assert!(n_conv >= 5);
    assert_eq!(t[g.output].shape, [1, 10]);
    assert!(
        matches!(g.ops.last(), Some(IntOp::FullyConnected { output, .. }) if *output == g.output)
    );
}

/// Compares the fake-quantised forward with the independent integer evaluation; returns the
/// fraction of equal logits and the largest difference.
fn agreement(net: &QatNet, g: &IntGraph, images: &Tensor) -> (f64, f64) {
    let fq = net.fake_quant_logits(images).to_kind(Kind::Double);
    let ie = int_eval(g, &bytes_of(images));
    let d = vals(&(fq - ie).abs());
    let equal = d.iter().filter(|x| **x == 0.0).count() as f64 / d.len() as f64;
    (equal, d.iter().cloned().fold(0.0, f64::max))
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_folded_calibration_pass_equals_the_float_network() {
    let ds = dataset();
    let (fvs, float) = float_student();
    let qvs = nn::VarStore::new(Device::Cpu);
    let net = QatNet::new(&qvs, float.as_ref(), &fvs, QatOptions::default()).unwrap();
    let (x, _) = split(&ds, Split::Val);
    let x = x.narrow(0, 0, 100);
    let reference = tch::no_grad(|| float.forward_t(&x, false));
    let folded = net.calibrate_batch(&x);
    let scale = vals(&reference.abs().max())[0];
    let worst = vals(&(folded - &reference).abs().max())[0];
    // Float32 rounding of two orders of the same arithmetic through ~20 layers.
    assert!(
        worst <= 1e-4 * scale.max(1.0),
        "{worst} vs logits up to {scale}"
    );
}

#[test]
fn ptq_lowers_to_a_consistent_graph_that_keeps_the_float_accuracy() {
    let ds = dataset();
    let (fvs, float) = float_student();
    let qvs = nn::VarStore::new(Device::Cpu);
    let calib = calibration_loader(&ds, float.spec(), 64).unwrap();
    let net = post_training_quantize(&qvs, float.as_ref(), &fvs, &calib, 200).unwrap();
    let g = net.to_int_graph().unwrap();
    check_graph(&g, &|n: &str| var(&fvs, n), 1e-5);
    assert_eq!(
        g.tensors[g.input].q,
        QParams {
            scale: 1.0 / 128.0,
            zero_point: 127
        }
    );
    // Every residual add and the pool have their own parameters.
    let adds = g
        .ops
        .iter()
        .filter(|o| matches!(o, IntOp::Add { .. }))
        .count();
    assert!(adds >= 1);

    let (x, y) = split(&ds, Split::Test);
    let float_top1 = top1(&tch::no_grad(|| float.forward_t(&x, false)), &y);
    let fq = net.fake_quant_logits(&x);
    let ptq_top1 = top1(&fq, &y);
    let int_top1 = top1(&int_eval(&g, &bytes_of(&x)), &y);
    eprintln!("float {float_top1:.3}  ptq fake-quant {ptq_top1:.3}  integer {int_top1:.3}");
    assert!(
        float_top1 > 0.5,
        "the float student did not learn: {float_top1}"
    );
    assert!(
        (float_top1 - ptq_top1).abs() <= 0.03,
        "{float_top1} vs {ptq_top1}"
    );
    assert!(
        (int_top1 - ptq_top1).abs() <= 0.01,
        "{int_top1} vs {ptq_top1}"
    );
    let (equal, worst) = agreement(&net, &g, &x);
    eprintln!("fake-quant vs integer logits: {equal:.4} equal, worst {worst}");
    // Exact arithmetic on both sides: only a requantisation tie rounded the other way could
    // differ (none seen; 0.1 % and 1 LSB allowed).
    assert!(equal >= 0.999 && worst <= 1.0, "{equal} {worst}");
}

#[test]
fn efficientnet_lite_lowers_and_its_fake_quant_predicts_the_integers() {
    let ds = dataset();
    let fvs = nn::VarStore::new(Device::Cpu);
    tch::manual_seed(9);
    let float = build(&fvs.root(), &spec("efficientnet_lite_tiny")).unwrap();
    // Statistics of real data instead of the initial (0, 1).
    let calib = calibration_loader(&ds, float.spec(), 50).unwrap();
    train::recalibrate_batch_norm(float.as_ref(), &fvs, &calib, 0, 4, false).unwrap();
    let qvs = nn::VarStore::new(Device::Cpu);
    let net = post_training_quantize(&qvs, float.as_ref(), &fvs, &calib, 200).unwrap();
    let g = net.to_int_graph().unwrap();
    check_graph(&g, &|n: &str| var(&fvs, n), 1e-3);
    let (x, _) = split(&ds, Split::Val);
    let (equal, worst) = agreement(&net, &g, &x.narrow(0, 0, 200));
    eprintln!("efficientnet_lite: {equal:.4} equal, worst {worst}");
    // Exact arithmetic on both sides: only a requantisation tie rounded the other way could
    // differ (none seen; 0.1 % and 1 LSB allowed).
    assert!(equal >= 0.999 && worst <= 1.0, "{equal} {worst}");
}

#[test]
fn qat_steps_freeze_batch_norm_then_observers() {
    let ds = dataset();
    let (fvs, float) = float_student();
    let qvs = nn::VarStore::new(Device::Cpu);
    let o = QatOptions {
        observer_momentum: 0.01,
        freeze_bn_after: Some(3),
        freeze_observers_after: Some(5),
    };
    let net = QatNet::new(&qvs, float.as_ref(), &fvs, o).unwrap();
    calibrate(
        &net,
        &calibration_loader(&ds, float.spec(), 50).unwrap(),
        200,
    )
    .unwrap();
    let (x, y) = split(&ds, Split::Train);
    let (x, y) = (x.narrow(0, 0, 64), &y[..64]);
    let targets = Tensor::from_slice(&y.iter().map(|&l| l as i64).collect::<Vec<_>>());
    let eval_loss = || {
        tch::no_grad(|| net.forward_t(&x, false).cross_entropy_for_logits(&targets))
            .double_value(&[])
    };
    let bn_mean = || vals(&var(&qvs, "features.1.conv.0.1.mean"));
    let pool = || net.observers().last().unwrap().range();
    let start = eval_loss();
    let mut opt = nn::Adam::default().build(&qvs, 1e-3).unwrap();
    let mut means = vec![bn_mean()];
    let mut ranges = vec![pool()];
    for _ in 0..7 {
        let loss = net.forward_t(&x, true).cross_entropy_for_logits(&targets);
        opt.backward_step(&loss);
        means.push(bn_mean());
        ranges.push(pool());
    }
    assert_eq!(net.steps(), 7);
    // Steps 0..2 use batch statistics and update the running ones; from step 3 they are frozen.
    assert_ne!(means[0], means[1]);
    assert_ne!(means[2], means[3]);
    assert_eq!(means[3], means[7]);
    // Observers move (EMA) until step 5, then stay.
    assert_ne!(ranges[0], ranges[1]);
    assert_eq!(ranges[5], ranges[7]);
    let end = eval_loss();
    assert!(end < start, "QAT loss {start} -> {end}");
    // Everything frozen (and no dropout): the training pass is the integer model's pass.
    let a = tch::no_grad(|| net.forward_t(&x, true));
    let b = tch::no_grad(|| net.forward_t(&x, false));
    assert_eq!(vals(&a), vals(&b));
    // The QAT variables (statistics named `mean` / `var`) lower by the same rules.
    let qat_var = |n: &str| {
        let n = n
            .replace(".running_mean", ".mean")
            .replace(".running_var", ".var");
        var(&qvs, &n)
    };
    check_graph(&net.to_int_graph().unwrap(), &qat_var, 1e-5);
}

#[test]
fn the_engine_trains_it_and_checkpoints_hold_the_observers() {
    let ds = dataset();
    let (fvs, float) = float_student();
    let mut qvs = nn::VarStore::new(Device::Cpu);
    let mut train_opts = opts(100);
    train_opts.shuffle = true;
    let train_src = Loader::new(&ds, Split::Train, train_opts).unwrap();
    let val_src = Loader::new(&ds, Split::Val, opts(100)).unwrap();
    let cfg = Config::load(&repo("configs/default.yaml")).unwrap();
    let o = QatOptions::from_config(&cfg.qat, train_src.num_batches()).unwrap();
    let net = QatNet::new(&qvs, float.as_ref(), &fvs, o).unwrap();
    calibrate(
        &net,
        &calibration_loader(&ds, float.spec(), 50).unwrap(),
        200,
    )
    .unwrap();
    let mut spec = TrainSpec::student(&cfg, Mode::MultiClass, ds.classes.clone());
    spec.phases = vec![PhaseSpec {
        name: "qat".into(),
        epochs: 2,
        lr: cfg.qat.lr,
        trainable: Trainable::All,
    }];
    spec.early_stopping = None;
    let out = tempfile::tempdir().unwrap();
    let groups = net.layer_groups();
    train::run(
        &spec,
        &train_src,
        &val_src,
        &net,
        &mut qvs,
        &groups,
        out.path(),
    )
    .unwrap();
    assert_eq!(net.steps(), 2 * train_src.num_batches() as u64);

    // A fresh network loading the last checkpoint has the same observers, statistics, step
    // counter, and so the same integer outputs.
    let ckpt = latest_weights(out.path());
    let mut vs2 = nn::VarStore::new(Device::Cpu);
    let net2 = QatNet::new(&vs2, float.as_ref(), &fvs, o).unwrap();
    vs2.load(&ckpt).unwrap();
    assert_eq!(net2.steps(), net.steps());
    let r1: Vec<_> = net.observers().iter().map(|o| o.range()).collect();
    let r2: Vec<_> = net2.observers().iter().map(|o| o.range()).collect();
    assert_eq!(r1, r2);
    let (x, _) = split(&ds, Split::Val);
    let x = x.narrow(0, 0, 50);
    assert!(net.fake_quant_logits(&x).equal(&net2.fake_quant_logits(&x)));
}

/// The model file the last committed checkpoint names.
fn latest_weights(out: &Path) -> PathBuf {
    let dir = out.join("checkpoints");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    dir.join(state["model_file"].as_str().unwrap())
}

#[test]
fn teachers_and_uncalibrated_networks_are_refused_by_name() {
    let fvs = nn::VarStore::new(Device::Cpu);
    let teacher = build(&fvs.root(), &spec("resnet_tiny_cifar")).unwrap();
    let e = QatNet::new(
        &nn::VarStore::new(Device::Cpu),
        teacher.as_ref(),
        &fvs,
        QatOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("only students"), "{e}");
    let fvs = nn::VarStore::new(Device::Cpu);
    let s = build(&fvs.root(), &spec("mobilenet_v2_tiny")).unwrap();
    let net = QatNet::new(
        &nn::VarStore::new(Device::Cpu),
        s.as_ref(),
        &fvs,
        QatOptions::default(),
    )
    .unwrap();
    let e = net.to_int_graph().unwrap_err().to_string();
    assert!(
        e.contains("activation features.0.0") && e.contains("calibrate"),
        "{e}"
    );
}
