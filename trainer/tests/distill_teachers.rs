//! Teacher ensembles, region filters, the learned gate, EMA self-distillation and on-the-fly
//! teacher inference; expected values are computed by hand in the tests.

mod distill_common;

use distill_common::*;
use kdtrainer::config::{Config, TeacherConfig};
use kdtrainer::data::{Mode, Split};
use kdtrainer::distill::teachers::{
    combine, renormalize, Average, Ema, Gate, TeacherSet, EMA_DECAY,
};
use kdtrainer::pipeline::{Loader, LoaderOptions, Normalization};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn t3(v: &[f32], n: i64, k: i64, c: i64) -> Tensor {
    Tensor::from_slice(v).view([n, k, c])
}

fn row(t: &Tensor, i: i64) -> Vec<f64> {
    Vec::<f64>::try_from(t.get(i).to_kind(Kind::Double)).unwrap()
}

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn logit_and_probability_averages_differ_as_computed_by_hand() {
    // Teacher 1: logits [2, 0]; teacher 2: [0, 0]; weights 3 : 1.
    let z = t3(&[2.0, 0.0, 0.0, 0.0], 1, 2, 2);
    let lg = combine(&z, &[3.0, 1.0], Average::Logits, Mode::MultiClass, None).unwrap();
    // 0.75 * [2, 0] + 0.25 * [0, 0]
    close(&row(&lg.logits, 0), &[1.5, 0.0], 1e-6);
    let pr = combine(&z, &[3.0, 1.0], Average::Probs, Mode::MultiClass, None).unwrap();
    // softmax([2, 0]) = [e^2, 1] / (e^2 + 1) = [0.880797, 0.119203]; softmax([0, 0]) = [0.5, 0.5]
    let e2 = 2f64.exp();
    let p0 = 0.75 * e2 / (e2 + 1.0) + 0.25 * 0.5; // 0.785598
    let p1 = 0.75 / (e2 + 1.0) + 0.25 * 0.5; // 0.214402
    close(&row(&pr.logits, 0), &[p0.ln(), p1.ln()], 1e-5);
    // The two ensembles' distributions differ: softmax([1.5, 0]) = [0.817574, 0.182426].
    let soft_logits = 1.0 / (1.0 + (-1.5f64).exp());
    assert!((soft_logits - 0.817574).abs() < 1e-6);
    assert!((p0 - 0.785598).abs() < 1e-6);
    let q = row(&pr.logits.softmax(1, Kind::Double), 0);
    close(&q, &[p0, p1], 1e-5);
    assert!((q[0] - soft_logits).abs() > 0.03);
    assert!(bool::try_from(lg.valid.get(0)).unwrap());
}

#[test]
fn multi_label_probability_average_mixes_sigmoids() {
    // Class 0: both 0; class 1: teacher 1 says 2, teacher 2 says -2; weights 3 : 1.
    let z = t3(&[0.0, 2.0, 0.0, -2.0], 1, 2, 2);
    let pr = combine(&z, &[3.0, 1.0], Average::Probs, Mode::MultiLabel, None).unwrap();
    let p = 0.75 * sigmoid(2.0) + 0.25 * sigmoid(-2.0); // 0.690399
    close(&row(&pr.logits, 0), &[0.0, (p / (1.0 - p)).ln()], 1e-5);
    let lg = combine(&z, &[3.0, 1.0], Average::Logits, Mode::MultiLabel, None).unwrap();
    close(&row(&lg.logits, 0), &[0.0, 1.0], 1e-6);
}

#[test]
fn region_mask_renormalises_weights_and_flags_uncovered_samples() {
    // Teacher k outputs [k, 10 k]; weights 1, 2, 3.
    let mut v = Vec::new();
    for _ in 0..3 {
        for k in 0..3 {
            v.extend([k as f32, 10.0 * k as f32]);
        }
    }
    let z = t3(&v, 3, 3, 2);
    let mask = Tensor::from_slice(&[true, true, true, true, false, true, false, false, false])
        .view([3, 3]);
    let e = combine(
        &z,
        &[1.0, 2.0, 3.0],
        Average::Logits,
        Mode::MultiClass,
        Some(&mask),
    )
    .unwrap();
    // Sample 0: (1*0 + 2*1 + 3*2) / 6; sample 1: (1*0 + 3*2) / 4; sample 2: nobody.
    close(&row(&e.logits, 0), &[8.0 / 6.0, 80.0 / 6.0], 1e-5);
    close(&row(&e.logits, 1), &[1.5, 15.0], 1e-5);
    close(&row(&e.logits, 2), &[0.0, 0.0], 0.0);
    assert_eq!(
        Vec::<bool>::try_from(&e.valid).unwrap(),
        [true, true, false]
    );
    let p = combine(
        &z,
        &[1.0, 2.0, 3.0],
        Average::Probs,
        Mode::MultiClass,
        Some(&mask),
    )
    .unwrap();
    assert_eq!(
        Vec::<bool>::try_from(&p.valid).unwrap(),
        [true, true, false]
    );
    close(&row(&p.logits, 2), &[0.0, 0.0], 0.0);
    // Sample 1: 1/4 softmax([0, 0]) + 3/4 softmax([2, 20]).
    let s = 1.0 / (1.0 + 18f64.exp());
    let p0 = 0.25 * 0.5 + 0.75 * s;
    close(&row(&p.logits, 1), &[p0.ln(), (1.0 - p0).ln()], 1e-5);
}

#[test]
fn extreme_logits_stay_finite() {
    let z = t3(&[1e4, -1e4, -1e4, 1e4], 1, 2, 2);
    for mode in [Mode::MultiClass, Mode::MultiLabel] {
        let p = combine(&z, &[1.0, 1.0], Average::Probs, mode, None).unwrap();
        let r = row(&p.logits, 0);
        let want = match mode {
            // softmax mixture [0.5, 0.5]
            Mode::MultiClass => [-(2f64.ln()), -(2f64.ln())],
            // sigmoid mixture 0.5 per class -> logit 0
            Mode::MultiLabel => [0.0, 0.0],
        };
        close(&r, &want, 1e-4);
    }
}

#[test]
fn combine_rejects_bad_shapes_and_weights() {
    let z = Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu));
    let e = combine(&z, &[1.0, 1.0], Average::Logits, Mode::MultiClass, None).unwrap_err();
    assert!(e.to_string().contains("expected [N, 2, C]"), "{e}");
    let e = combine(
        &z,
        &[1.0, 0.0, 1.0],
        Average::Logits,
        Mode::MultiClass,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("finite and > 0"), "{e}");
    let m = Tensor::ones([3, 3], (Kind::Bool, Device::Cpu));
    let e = combine(&z, &[1.0; 3], Average::Logits, Mode::MultiClass, Some(&m)).unwrap_err();
    assert!(e.to_string().contains("region mask: shape [3, 3]"), "{e}");
}

#[test]
fn gate_starts_equal_its_loss_is_the_hand_cross_entropy_and_only_the_gate_learns() {
    let vs = nn::VarStore::new(Device::Cpu);
    let gate = Gate::new(&(vs.root() / "kd_gate"), 3, 2);
    let pooled = Tensor::from_slice(&[0.3f32, -1.0, 2.0])
        .view([1, 3])
        .set_requires_grad(true);
    let z = t3(&[2.0, 0.0, 0.0, 0.0], 1, 2, 2);
    let targets = Tensor::from_slice(&[1f32, 0.0]).view([1, 2]);
    let out = gate
        .combine(
            &pooled,
            &z,
            &targets,
            Average::Logits,
            Mode::MultiClass,
            None,
        )
        .unwrap();
    close(&row(&out.weights, 0), &[0.5, 0.5], 1e-7);
    close(&row(&out.logits, 0), &[1.0, 0.0], 1e-6);
    // CE of [1, 0] against class 0: log(1 + e^-1) = 0.313262
    let want = (1.0 + (-1f64).exp()).ln();
    assert!((out.loss.double_value(&[]) - want).abs() < 1e-6);
    assert!(!out.logits.requires_grad());
    out.loss.backward();
    // Detached input: the student's features get no gradient from the gate.
    assert!(!pooled.grad().defined());
    let gw = vs.variables()["kd_gate.weight"].grad();
    assert!(gw.abs().sum(Kind::Float).double_value(&[]) > 0.0);

    // A masked teacher gets weight 0; a row with no teacher is invalid and its loss ignored.
    let mask = Tensor::from_slice(&[false, true, false, false]).view([2, 2]);
    let pooled2 = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
    let z2 = t3(&[2.0, 0.0, 0.0, 1.0, 5.0, 5.0, 5.0, 5.0], 2, 2, 2);
    let t2 = Tensor::from_slice(&[0f32, 1.0, 1.0, 0.0]).view([2, 2]);
    let out = gate
        .combine(
            &pooled2,
            &z2,
            &t2,
            Average::Logits,
            Mode::MultiClass,
            Some(&mask),
        )
        .unwrap();
    close(&row(&out.weights, 0), &[0.0, 1.0], 0.0);
    close(&row(&out.weights, 1), &[0.0, 0.0], 0.0);
    assert_eq!(Vec::<bool>::try_from(&out.valid).unwrap(), [true, false]);
    // Only sample 0 counts: teacher 2's [0, 1] against class 1: log(1 + e^-1).
    assert!((out.loss.double_value(&[]) - want).abs() < 1e-6);
    assert!(out.loss.double_value(&[]).is_finite());
}

#[test]
fn gate_learns_which_teacher_to_trust_from_the_features() {
    // Feature x > 0: teacher A is right; x < 0: teacher B is right.
    let vs = nn::VarStore::new(Device::Cpu);
    let gate = Gate::new(&vs.root(), 1, 2);
    let mut opt = nn::Sgd::default().build(&vs, 0.5).unwrap();
    let n = 64;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 - 31.5) / 16.0).collect();
    let labels: Vec<i64> = (0..n).map(|i| i % 3).collect();
    let mut z = Vec::new();
    for (i, &xi) in x.iter().enumerate() {
        let y = labels[i] as usize;
        let good: Vec<f32> = (0..3).map(|c| if c == y { 4.0 } else { 0.0 }).collect();
        let bad: Vec<f32> = (0..3)
            .map(|c| if c == (y + 1) % 3 { 4.0 } else { 0.0 })
            .collect();
        let (a, b) = if xi > 0.0 { (good, bad) } else { (bad, good) };
        z.extend(a);
        z.extend(b);
    }
    let z = t3(&z, n, 2, 3);
    let feats = Tensor::from_slice(&x).view([n, 1]);
    let targets = Tensor::from_slice(&labels).one_hot(3).to_kind(Kind::Float);
    let first = gate
        .combine(&feats, &z, &targets, Average::Probs, Mode::MultiClass, None)
        .unwrap()
        .loss
        .double_value(&[]);
    for _ in 0..200 {
        let out = gate
            .combine(&feats, &z, &targets, Average::Probs, Mode::MultiClass, None)
            .unwrap();
        opt.backward_step(&out.loss);
    }
    let out = gate
        .combine(&feats, &z, &targets, Average::Probs, Mode::MultiClass, None)
        .unwrap();
    assert!(
        out.loss.double_value(&[]) < first * 0.5,
        "{first} -> {:?}",
        out.loss
    );
    let w = Vec::<f32>::try_from(out.weights.select(1, 0)).unwrap();
    for (i, &xi) in x.iter().enumerate() {
        if xi > 0.5 {
            assert!(w[i] > 0.8, "x {xi}: weight of A {}", w[i]);
        } else if xi < -0.5 {
            assert!(w[i] < 0.2, "x {xi}: weight of A {}", w[i]);
        }
    }
}

/// A tiny "network": one parameter vector and one buffer.
#[derive(Debug)]
struct Tiny;

fn tiny(p: &nn::Path) -> anyhow::Result<Tiny> {
    let _ = p.var("w", &[2], nn::Init::Const(0.0));
    let _ = p.zeros_no_train("running_mean", &[2]);
    Ok(Tiny)
}

fn set(vs: &nn::VarStore, name: &str, v: &[f32]) {
    let mut t = vs.variables()[name].shallow_clone();
    tch::no_grad(|| t.copy_(&Tensor::from_slice(v)));
}

fn get(vs: &nn::VarStore, name: &str) -> Vec<f64> {
    Vec::<f64>::try_from(vs.variables()[name].to_kind(Kind::Double)).unwrap()
}

#[test]
fn ema_follows_the_hand_computed_average_and_copies_buffers() {
    assert_eq!(EMA_DECAY, 0.999);
    let student = nn::VarStore::new(Device::Cpu);
    let _ = tiny(&student.root());
    set(&student, "w", &[1.0, 2.0]);
    set(&student, "running_mean", &[5.0, 6.0]);
    let mut ema = Ema::new(&student, 0.9, tiny).unwrap();
    assert_eq!(get(ema.var_store(), "w"), [1.0, 2.0]);
    assert!(!ema.var_store().variables()["w"].requires_grad());

    set(&student, "w", &[3.0, -2.0]);
    set(&student, "running_mean", &[7.0, 8.0]);
    ema.update(&student).unwrap();
    // 0.9 * [1, 2] + 0.1 * [3, -2] = [1.2, 1.6]; the buffer is copied.
    close(&get(ema.var_store(), "w"), &[1.2, 1.6], 1e-6);
    close(&get(ema.var_store(), "running_mean"), &[7.0, 8.0], 0.0);
    set(&student, "w", &[0.0, 0.0]);
    ema.update(&student).unwrap();
    // 0.9 * [1.2, 1.6] + 0.1 * [0, 0] = [1.08, 1.44]
    close(&get(ema.var_store(), "w"), &[1.08, 1.44], 1e-6);
    assert_eq!(ema.updates(), 2);

    assert!(Ema::new(&student, 1.0, tiny).is_err());
    let other = nn::VarStore::new(Device::Cpu);
    let _ = other.root().var("v", &[1], nn::Init::Const(0.0));
    let e = Ema::new(&other, 0.5, tiny).unwrap_err().to_string();
    assert!(e.contains("not in the student's var store"), "{e}");
}

#[test]
fn ema_of_a_classifier_gives_the_students_logits_at_decay_zero() {
    let spec = kdtrainer::models::ModelSpec::parse("mobilenet_v2_tiny", 16, 4, 0.0).unwrap();
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = kdtrainer::models::build(&vs.root(), &spec).unwrap();
    let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
    let mut ema = Ema::classifier(&vs, &spec, 0.0).unwrap();
    let want = tch::no_grad(|| m.forward_t(&x, false));
    assert!(max_diff(&ema.logits(&x), &want) < 1e-6);
    // A training-mode step moves BN statistics and (here) the weights; decay 0 copies all.
    tch::no_grad(|| {
        for mut t in vs.trainable_variables() {
            t.copy_(&(&t * 1.5));
        }
    });
    let _ = tch::no_grad(|| m.forward_t(&x, true));
    ema.update(&vs).unwrap();
    let want = tch::no_grad(|| m.forward_t(&x, false));
    assert!(max_diff(&ema.logits(&x), &want) < 1e-5);
}

#[test]
fn teacher_keys_of_the_configuration_are_parsed_and_checked() {
    let text = std::fs::read_to_string(repo().join("configs/default.yaml")).unwrap();
    let c = Config::from_yaml("cfg.yaml", &text).unwrap();
    assert!(c.distillation.teachers.is_empty());
    assert_eq!(c.distillation.teacher_average, Average::Logits);
    let with = text.replace(
        "  temperature: 4.0\n",
        "  temperature: 4.0\n  teacher_average: probs\n  teachers:\n    - { path: a, weight: 2, \
         regions: [eu] }\n    - { path: b.pt, input_size: 64, normalization: student }\n",
    );
    let c = Config::from_yaml("cfg.yaml", &with).unwrap();
    assert_eq!(c.distillation.teacher_average, Average::Probs);
    let t = &c.distillation.teachers;
    assert_eq!(t[0].weight, 2.0);
    assert_eq!(t[0].regions.as_deref(), Some(&["eu".to_string()][..]));
    assert_eq!(t[1].weight, 1.0);
    assert_eq!(t[1].input_size, Some(64));
    assert_eq!(t[1].normalization.unwrap().get(), Normalization::STUDENT);
    let bad = with.replace("weight: 2,", "weight: -1,");
    let e = format!("{:#}", Config::from_yaml("cfg.yaml", &bad).unwrap_err());
    assert!(
        e.contains("distillation.teachers[0].weight: must be finite and > 0, got -1"),
        "{e}"
    );
    let bad = with.replace("input_size: 64", "input_size: 4");
    let e = format!("{:#}", Config::from_yaml("cfg.yaml", &bad).unwrap_err());
    assert!(e.contains("distillation.teachers[1].input_size"), "{e}");
    let bad = with.replace("regions: [eu]", "region: [eu]");
    let e = format!("{:#}", Config::from_yaml("cfg.yaml", &bad).unwrap_err());
    assert!(e.contains("unknown field `region`"), "{e}");
}

#[test]
fn teacher_set_loads_folders_and_torchscript_and_runs_on_the_fly() {
    let tmp = tempfile::tempdir().unwrap();
    let (_root, ds) = fashion(tmp.path(), 40);
    let a = teacher_dir(tmp.path(), "resnet_tiny_cifar", 28, &ds.classes, 11);
    let b = teacher_dir(tmp.path(), "mobilenet_v2_tiny", 32, &ds.classes, 12);
    let (script, _svs, snet) = script_teacher(tmp.path(), 24, ds.classes.len(), 13);
    let mut ta = TeacherConfig::new(&a);
    ta.weight = 2.0;
    ta.regions = Some(vec!["eu".into()]);
    let mut ts = TeacherConfig::new(&script);
    ts.input_size = Some(24);
    let list = vec![ta.clone(), TeacherConfig::new(&b), ts.clone()];
    let set = TeacherSet::load(&list, Average::Logits, &ds, 28, Device::Cpu).unwrap();
    assert_eq!((set.len(), set.num_classes()), (3, 10));
    assert_eq!(set.weights(), [2.0, 1.0, 1.0]);
    assert_eq!(set.members()[0].input_size, 28);
    assert_eq!(set.members()[1].normalization, Normalization::STUDENT);
    assert_eq!(set.members()[2].normalization, Normalization::IMAGENET);

    // The hash covers the teachers' logits, not how they are combined.
    let mut reweighted = list.clone();
    reweighted[0].weight = 5.0;
    reweighted[0].regions = None;
    let same = TeacherSet::load(&reweighted, Average::Probs, &ds, 28, Device::Cpu).unwrap();
    assert_eq!(same.hash(), set.hash());
    let reordered = vec![list[1].clone(), list[0].clone(), list[2].clone()];
    let other = TeacherSet::load(&reordered, Average::Logits, &ds, 28, Device::Cpu).unwrap();
    assert_ne!(other.hash(), set.hash());

    // Region mask: teacher 0 only for "eu"; the others everywhere.
    let regions = vec![Some("eu".to_string()), Some("us".into()), None];
    let m = set.region_mask(&regions);
    assert_eq!(
        Vec::<bool>::try_from(m.reshape([-1])).unwrap(),
        [true, true, true, false, true, true, false, true, true]
    );

    // On the fly, for a student loader at 32 px (no augmentation): teacher b reads the batch
    // renormalised, a (28 px) and the script (24 px) a second view. Expected: each network run
    // on its own evaluation loader.
    let student = LoaderOptions::new(32, 8, Normalization::STUDENT);
    let inputs = set.inputs(&ds, Split::Train, &student).unwrap();
    let loader = Loader::new(&ds, Split::Train, student.clone()).unwrap();
    let batch = loader.batch(&[3, 0, 17, 9], 0).unwrap();
    let got = set.logits_for_batch(&inputs, &batch, 0).unwrap();
    assert_eq!(got.size(), [4, 3, 10]);
    let (_va, na) = load_dir(&a);
    let (_vb, nb) = load_dir(&b);
    let direct = |net: &dyn kdtrainer::models::Classifier, size: usize, norm| {
        let l = Loader::new(&ds, Split::Train, LoaderOptions::new(size, 8, norm)).unwrap();
        let x = l.batch(&[3, 0, 17, 9], 0).unwrap().images;
        tch::no_grad(|| net.forward_t(&x, false))
    };
    assert!(
        max_diff(
            &got.select(1, 0),
            &direct(na.as_ref(), 28, Normalization::IMAGENET)
        ) < 1e-5
    );
    assert!(
        max_diff(
            &got.select(1, 1),
            &direct(nb.as_ref(), 32, Normalization::STUDENT)
        ) < 1e-5
    );
    assert!(
        max_diff(
            &got.select(1, 2),
            &direct(snet.as_ref(), 24, Normalization::IMAGENET)
        ) < 1e-4
    );

    // The ensemble with the regions: sample 1 ("us") has no teacher 0.
    let four = [regions.clone(), vec![Some("eu".to_string())]].concat();
    let e = set.combine(&got, &four).unwrap();
    let want1 = (got.get(1).get(1) + got.get(1).get(2)) / 2.0;
    assert!(max_diff(&e.logits.get(1), &want1) < 1e-5);
    let want0 = (got.get(0).get(0) * 2.0 + got.get(0).get(1) + got.get(0).get(2)) / 4.0;
    assert!(max_diff(&e.logits.get(0), &want0) < 1e-5);

    // A teacher trained on other classes is refused, naming the classes.
    let wrong = teacher_dir(tmp.path(), "resnet_tiny_cifar", 28, &ds.classes[..9], 14);
    let e = TeacherSet::load(
        &[TeacherConfig::new(&wrong)],
        Average::Logits,
        &ds,
        28,
        Device::Cpu,
    )
    .err()
    .unwrap();
    let e = format!("{e:#}");
    assert!(
        e.contains("teacher 0") && e.contains("differ from the data set's"),
        "{e}"
    );
    // A TorchScript teacher with another class count is refused on its first batch.
    let (s5, _, _) = script_teacher(tmp.path(), 32, 5, 15);
    let set5 = TeacherSet::load(
        &[TeacherConfig::new(&s5)],
        Average::Logits,
        &ds,
        32,
        Device::Cpu,
    )
    .unwrap();
    let in5 = set5.inputs(&ds, Split::Train, &student).unwrap();
    let e = set5
        .logits_for_batch(&in5, &batch, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("5 outputs, the data set has 10 classes"), "{e}");
}

#[test]
fn renormalize_matches_normalising_the_bytes_directly() {
    let bytes: Vec<u8> = (0..3 * 4).map(|i| (i * 21) as u8).collect();
    let mut s = vec![0f32; 12];
    let mut t = vec![0f32; 12];
    Normalization::STUDENT.apply(&bytes, &mut s).unwrap();
    Normalization::IMAGENET.apply(&bytes, &mut t).unwrap();
    let s = Tensor::from_slice(&s).view([1, 3, 2, 2]);
    let t = Tensor::from_slice(&t).view([1, 3, 2, 2]);
    let r = renormalize(&s, &Normalization::STUDENT, &Normalization::IMAGENET);
    assert!(max_diff(&r, &t) < 1e-5);
}
