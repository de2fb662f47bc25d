//! Distillation losses, the combiner and feature matching against values computed by hand in
//! f64 below (softmax, KL, BCE and pooling written out element by element).

use kdtrainer::config::{ConfidenceName, Distillation, FeaturePair};
use kdtrainer::data::Mode;
use kdtrainer::distill::features::{FeatureMatch, TapPair};
use kdtrainer::distill::loss::{kl_div, soft_bce, soft_cross_entropy, Reduction};
use kdtrainer::distill::weighting::teacher_confidence;
use kdtrainer::distill::KdLoss;
use tch::{nn, Device, Kind, Tensor};

// ---- hand arithmetic -------------------------------------------------------------------------

/// log softmax(z / t), max-shifted.
fn log_softmax(z: &[f64], t: f64) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)) / t;
    let lse = m + z.iter().map(|&v| (v / t - m).exp()).sum::<f64>().ln();
    z.iter().map(|&v| v / t - lse).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Element-wise KL(p_t || p_s) of one row.
fn kl_row(s: &[f64], te: &[f64], t: f64) -> Vec<f64> {
    let (ls, lt) = (log_softmax(s, t), log_softmax(te, t));
    lt.iter()
        .zip(&ls)
        .map(|(&a, &b)| a.exp() * (a - b))
        .collect()
}

/// Element-wise -p_t log p_s of one row.
fn soft_ce_row(s: &[f64], te: &[f64], t: f64) -> Vec<f64> {
    let (ls, lt) = (log_softmax(s, t), log_softmax(te, t));
    lt.iter().zip(&ls).map(|(&a, &b)| -a.exp() * b).collect()
}

/// ln(1 + e^x) without overflow: max(x, 0) + ln(1 + e^-|x|).
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Element-wise BCE(sigmoid(s/T), sigmoid(te/T)) of one row, with ln sigmoid(x) = -softplus(-x)
/// and ln(1 - sigmoid(x)) = -softplus(x).
fn bce_row(s: &[f64], te: &[f64], t: f64) -> Vec<f64> {
    s.iter()
        .zip(te)
        .map(|(&x, &y)| {
            let (x, q) = (x / t, sigmoid(y / t));
            q * softplus(-x) + (1.0 - q) * softplus(x)
        })
        .collect()
}

const S: [[f64; 3]; 2] = [[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]];
const TE: [[f64; 3]; 2] = [[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]];

fn t2(rows: &[[f64; 3]]) -> Tensor {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).reshape([rows.len() as i64, 3])
}

fn vals(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).double_value(&[])
}

fn close(got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs().max(1e-12),
        "got {got}, want {want}"
    );
}

fn close_all(got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        close(*g, *w, rel);
    }
}

/// The four reductions of an element-wise hand result over an `[N, C]` grid.
fn check_reductions(
    f: impl Fn(&Tensor, &Tensor, f64, Reduction) -> anyhow::Result<Tensor>,
    row: impl Fn(&[f64], &[f64], f64) -> Vec<f64>,
    t: f64,
) {
    let (s, te) = (t2(&S), t2(&TE));
    let elems: Vec<f64> = (0..2).flat_map(|i| row(&S[i], &TE[i], t)).collect();
    let sum: f64 = elems.iter().sum();
    close_all(
        &vals(&f(&s, &te, t, Reduction::None).unwrap()),
        &elems,
        1e-12,
    );
    close(scalar(&f(&s, &te, t, Reduction::Sum).unwrap()), sum, 1e-12);
    close(
        scalar(&f(&s, &te, t, Reduction::BatchMean).unwrap()),
        sum / 2.0,
        1e-12,
    );
    close(
        scalar(&f(&s, &te, t, Reduction::Mean).unwrap()),
        sum / 6.0,
        1e-12,
    );
}

// ---- elementary losses -----------------------------------------------------------------------

#[test]
fn kl_closed_form_example() {
    // teacher softmax([ln 3, 0]) = [0.75, 0.25], student softmax([0, 0]) = [0.5, 0.5].
    let s = Tensor::from_slice(&[0.0f64, 0.0]).reshape([1, 2]);
    let te = Tensor::from_slice(&[3f64.ln(), 0.0]).reshape([1, 2]);
    let want = 0.75 * (0.75f64 / 0.5).ln() + 0.25 * (0.25f64 / 0.5).ln();
    close(
        scalar(&kl_div(&s, &te, 1.0, Reduction::BatchMean).unwrap()),
        want,
        1e-12,
    );
    // Soft CE = KL + H(teacher) = -(0.75 ln 0.5 + 0.25 ln 0.5) = ln 2.
    close(
        scalar(&soft_cross_entropy(&s, &te, 1.0, Reduction::Sum).unwrap()),
        2f64.ln(),
        1e-12,
    );
}

#[test]
fn kl_div_every_reduction_and_temperature() {
    for t in [1.0, 2.0, 4.0, 20.0] {
        check_reductions(kl_div, kl_row, t);
    }
}

#[test]
fn soft_cross_entropy_every_reduction() {
    for t in [1.0, 3.0] {
        check_reductions(soft_cross_entropy, soft_ce_row, t);
    }
}

#[test]
fn soft_bce_every_reduction() {
    for t in [1.0, 2.5] {
        check_reductions(soft_bce, bce_row, t);
    }
}

#[test]
fn teacher_is_detached_and_student_gradient_is_the_hand_one() {
    let t = 2.0;
    let s = t2(&S).set_requires_grad(true);
    let te = t2(&TE).set_requires_grad(true);
    kl_div(&s, &te, t, Reduction::BatchMean).unwrap().backward();
    assert!(!te.grad().defined(), "no gradient may reach the teacher");
    // d/ds_ij of (1/N) sum KL = (p_s - p_t) / (T N).
    let want: Vec<f64> = (0..2)
        .flat_map(|i| {
            let (ls, lt) = (log_softmax(&S[i], t), log_softmax(&TE[i], t));
            ls.iter()
                .zip(&lt)
                .map(|(a, b)| (a.exp() - b.exp()) / (t * 2.0))
                .collect::<Vec<_>>()
        })
        .collect();
    close_all(&vals(&s.grad()), &want, 1e-10);
    for f in [soft_cross_entropy, soft_bce] {
        let te = t2(&TE).set_requires_grad(true);
        f(&t2(&S).set_requires_grad(true), &te, t, Reduction::Sum)
            .unwrap()
            .backward();
        assert!(!te.grad().defined());
    }
}

#[test]
fn extreme_logits_stay_finite_and_exact() {
    let s_rows = [[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]];
    let t_rows = [[-1e4, 1e4, 0.0], [-1e4, 1e4, -1e4]];
    for t in [1.0, 2.0, 5.0, 10.0, 20.0] {
        let s32 = t2(&s_rows).to_kind(Kind::Float).set_requires_grad(true);
        let te32 = t2(&t_rows).to_kind(Kind::Float);
        for (f, row) in [
            (
                kl_div as fn(_, _, _, _) -> _,
                kl_row as fn(&[f64], &[f64], f64) -> Vec<f64>,
            ),
            (soft_cross_entropy, soft_ce_row),
            (soft_bce, bce_row),
        ] {
            let want: f64 = (0..2).flat_map(|i| row(&s_rows[i], &t_rows[i], t)).sum();
            assert!(want.is_finite() && want > 1.0, "hand value {want} at T={t}");
            let loss = f(&s32, &te32, t, Reduction::Sum).unwrap();
            close(scalar(&loss), want, 1e-5);
            let g = Tensor::run_backward(&[&loss], &[&s32], false, false);
            assert!(
                vals(&g[0]).iter().all(|v| v.is_finite()),
                "T={t}: non-finite gradient"
            );
        }
        // Identical extreme logits: KL exactly 0.
        let same = kl_div(&te32, &te32, t, Reduction::Sum).unwrap();
        assert_eq!(scalar(&same), 0.0);
    }
}

#[test]
fn bad_inputs_are_named() {
    let s = t2(&S);
    let e = kl_div(&s, &s.narrow(1, 0, 2), 1.0, Reduction::Sum).unwrap_err();
    assert_eq!(
        e.to_string(),
        "teacher logits: shape [2, 2] differs from the student's [2, 3]"
    );
    let e = kl_div(&s.flatten(0, -1), &s.flatten(0, -1), 1.0, Reduction::Sum).unwrap_err();
    assert!(
        e.to_string().starts_with("student logits: expected [N, C]"),
        "{e}"
    );
    let e = soft_bce(&s, &s, 0.0, Reduction::Sum).unwrap_err();
    assert_eq!(
        e.to_string(),
        "temperature: must be a finite number > 0, got 0"
    );
}

// ---- the combiner ----------------------------------------------------------------------------

fn cfg() -> Distillation {
    Distillation::new(0.7, 2.0)
}

/// One-hot targets of labels [1, 2] (multi-class).
fn one_hot() -> Tensor {
    t2(&[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
}
const LABELS: [usize; 2] = [1, 2];

fn hand_ce() -> f64 {
    (0..2)
        .map(|i| -log_softmax(&S[i], 1.0)[LABELS[i]])
        .sum::<f64>()
        / 2.0
}

fn hand_pmax(i: usize) -> f64 {
    log_softmax(&TE[i], 1.0)
        .iter()
        .map(|v| v.exp())
        .fold(0.0, f64::max)
}

fn hand_kl(i: usize, t: f64) -> f64 {
    kl_row(&S[i], &TE[i], t).iter().sum()
}

#[test]
fn combined_loss_multi_class() {
    let kd = KdLoss::from_config(&cfg(), Mode::MultiClass, 10).unwrap();
    let s = t2(&S).set_requires_grad(true);
    let te = t2(&TE).set_requires_grad(true);
    let (loss, st) = kd.compute(&s, &te, &one_hot(), None, 3, 0.25).unwrap();
    let (a, t) = (0.7, 2.0);
    let kd_term = t * t * (hand_kl(0, t) + hand_kl(1, t)) / 2.0;
    let total = (1.0 - a) * hand_ce() + a * kd_term;
    close(st.ce, hand_ce(), 1e-6);
    close(st.kd, kd_term, 1e-12);
    close(st.total, total, 1e-6);
    close(scalar(&loss), total, 1e-6);
    assert_eq!((st.kd_weight, st.temperature, st.coverage), (0.7, 2.0, 1.0));
    let (p0, p1) = (hand_pmax(0), hand_pmax(1));
    close(st.mean_conf, (p0 + p1) / 2.0, 1e-12);
    close(st.min_conf, p0.min(p1), 1e-12);
    close(st.max_conf, p0.max(p1), 1e-12);
    loss.backward();
    assert!(s.grad().defined() && !te.grad().defined());
    let json = serde_json::to_value(st).unwrap();
    for k in [
        "total",
        "ce",
        "kd",
        "kd_weight",
        "temperature",
        "coverage",
        "mean_conf",
        "min_conf",
        "max_conf",
    ] {
        assert!(json[k].is_f64(), "{k} missing in {json}");
    }
}

#[test]
fn confidence_weights_and_domain_mask() {
    let (p0, p1) = (hand_pmax(0), hand_pmax(1));
    let t = 2.0;
    let (k0, k1) = (t * t * hand_kl(0, t), t * t * hand_kl(1, t));
    // pmax: w_i = p_max(i); mask drops sample 1.
    let mut c = cfg();
    c.confidence = ConfidenceName::Pmax;
    let kd = KdLoss::from_config(&c, Mode::MultiClass, 10).unwrap();
    let (_, st) = kd
        .compute(&t2(&S), &t2(&TE), &one_hot(), None, 0, 0.0)
        .unwrap();
    close(st.kd, (p0 * k0 + p1 * k1) / 2.0, 1e-12);
    assert_eq!(st.coverage, 1.0);
    let mask = Tensor::from_slice(&[true, false]);
    let (_, st) = kd
        .compute(&t2(&S), &t2(&TE), &one_hot(), Some(&mask), 0, 0.0)
        .unwrap();
    close(st.kd, p0 * k0 / 2.0, 1e-12);
    assert_eq!(st.coverage, 0.5);
    // Confidence stats are over the whole batch, masked or not.
    close(st.mean_conf, (p0 + p1) / 2.0, 1e-12);

    // threshold between the two confidences keeps only the more confident sample.
    let mut c = cfg();
    c.confidence = ConfidenceName::Threshold;
    c.confidence_threshold = (p0 + p1) / 2.0;
    let kd = KdLoss::from_config(&c, Mode::MultiClass, 10).unwrap();
    let (_, st) = kd
        .compute(&t2(&S), &t2(&TE), &one_hot(), None, 0, 0.0)
        .unwrap();
    let want = if p0 >= p1 { k0 } else { k1 } / 2.0;
    close(st.kd, want, 1e-12);
    assert_eq!(st.coverage, 0.5);
    // A threshold at the larger confidence itself (as computed) still includes it (>=).
    let conf = teacher_confidence(&t2(&TE), Mode::MultiClass).unwrap();
    c.confidence_threshold = scalar(&conf.max());
    let kd = KdLoss::from_config(&c, Mode::MultiClass, 10).unwrap();
    let (_, st) = kd
        .compute(&t2(&S), &t2(&TE), &one_hot(), None, 0, 0.0)
        .unwrap();
    assert_eq!(st.coverage, 0.5);
}

#[test]
fn several_temperatures_average_their_t2_scaled_terms() {
    let mut c = cfg();
    c.temperatures = vec![1.0, 4.0, 10.0];
    let kd = KdLoss::from_config(&c, Mode::MultiClass, 10).unwrap();
    let (_, st) = kd
        .compute(&t2(&S), &t2(&TE), &one_hot(), None, 0, 0.0)
        .unwrap();
    let want: f64 = [1.0f64, 4.0, 10.0]
        .iter()
        .map(|&t| t * t * (hand_kl(0, t) + hand_kl(1, t)) / 2.0)
        .sum::<f64>()
        / 3.0;
    close(st.kd, want, 1e-12);
    close(st.temperature, 5.0, 1e-12);
}

#[test]
fn combined_loss_multi_label() {
    let y = t2(&[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]);
    let yv = [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]];
    let mut c = cfg();
    c.kd_alpha = 0.4;
    c.temperature = 3.0;
    c.confidence = ConfidenceName::Pmax;
    let kd = KdLoss::from_config(&c, Mode::MultiLabel, 10).unwrap();
    let (loss, st) = kd.compute(&t2(&S), &t2(&TE), &y, None, 0, 0.5).unwrap();
    let t = 3.0;
    // Hard BCE: mean over the 6 elements.
    let mut ce = 0.0;
    for i in 0..2 {
        for j in 0..3 {
            let p = sigmoid(S[i][j]);
            ce -= yv[i][j] * p.ln() + (1.0 - yv[i][j]) * (1.0 - p).ln();
        }
    }
    ce /= 6.0;
    // Confidence: mean over classes of max(q, 1 - q) at T = 1.
    let conf: Vec<f64> = (0..2)
        .map(|i| {
            TE[i]
                .iter()
                .map(|&z| sigmoid(z).max(1.0 - sigmoid(z)))
                .sum::<f64>()
                / 3.0
        })
        .collect();
    let kd_i: Vec<f64> = (0..2)
        .map(|i| t * t * bce_row(&S[i], &TE[i], t).iter().sum::<f64>() / 3.0)
        .collect();
    let kd_term = (conf[0] * kd_i[0] + conf[1] * kd_i[1]) / 2.0;
    close(st.ce, ce, 1e-6);
    close(st.kd, kd_term, 1e-12);
    close(st.total, 0.6 * ce + 0.4 * kd_term, 1e-6);
    close(scalar(&loss), st.total, 1e-12);
    close(st.min_conf, conf[0].min(conf[1]), 1e-12);
}

#[test]
fn warm_up_is_hard_loss_only_and_hard_phase_too() {
    let mut c = cfg();
    c.warmup_epochs = 2.0;
    c.ramp_epochs = 2.0;
    c.hard_epochs = 3;
    let kd = KdLoss::from_config(&c, Mode::MultiClass, 10).unwrap();
    for (epoch, frac, a) in [
        (1usize, 0.9, 0.0),
        (3, 0.0, 0.35),
        (6, 0.0, 0.7),
        (10, 0.0, 0.0),
    ] {
        let (loss, st) = kd
            .compute(&t2(&S), &t2(&TE), &one_hot(), None, epoch, frac)
            .unwrap();
        close(st.kd_weight + 1.0, a + 1.0, 1e-12);
        close(scalar(&loss), (1.0 - a) * hand_ce() + a * st.kd, 1e-6);
    }
}

#[test]
fn combiner_input_errors_are_named() {
    let kd = KdLoss::from_config(&cfg(), Mode::MultiClass, 10).unwrap();
    let e = kd
        .compute(&t2(&S), &t2(&TE), &one_hot().narrow(0, 0, 1), None, 0, 0.0)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "targets: shape [1, 3] differs from the logits' [2, 3]"
    );
    let mask = Tensor::from_slice(&[1f32, 0.0, 1.0]);
    let e = kd
        .compute(&t2(&S), &t2(&TE), &one_hot(), Some(&mask), 0, 0.0)
        .unwrap_err();
    assert_eq!(e.to_string(), "kd mask: expected [2], got [3]");
    let e = kd
        .compute(&t2(&S), &t2(&TE), &one_hot(), None, 0, 1.5)
        .unwrap_err();
    assert_eq!(e.to_string(), "epoch fraction: must be in [0, 1], got 1.5");
    let mut c = cfg();
    c.kd_alpha = 2.0;
    let e = KdLoss::from_config(&c, Mode::MultiClass, 10).unwrap_err();
    assert_eq!(
        e.to_string(),
        "distillation.kd_alpha: must be in [0, 1], got 2"
    );
}

// ---- feature matching ------------------------------------------------------------------------

/// `[1, c, h, w]` from values in NCHW order.
fn map(c: i64, h: i64, w: i64, v: &[f64]) -> Tensor {
    Tensor::from_slice(v).reshape([1, c, h, w])
}

#[test]
fn feature_match_pools_to_the_smaller_size_without_adapter() {
    let vs = nn::VarStore::new(Device::Cpu);
    let fm = FeatureMatch::new(
        &(vs.root() / "fm"),
        &[TapPair {
            student: "stride8".into(),
            student_channels: 1,
            teacher: "stride16".into(),
            teacher_channels: 1,
        }],
    )
    .unwrap();
    assert!(vs.variables().is_empty(), "equal channels need no adapter");
    // Student 4x4 is pooled 2x2 -> 2x2 block means; teacher 2x2 as is.
    let sv: Vec<f64> = (0..16).map(|v| v as f64).collect();
    let tv = [1.0, 2.0, 3.0, 4.0];
    let blocks = [
        (0.0 + 1.0 + 4.0 + 5.0) / 4.0,
        (2.0 + 3.0 + 6.0 + 7.0) / 4.0,
        (8.0 + 9.0 + 12.0 + 13.0) / 4.0,
        (10.0 + 11.0 + 14.0 + 15.0) / 4.0,
    ];
    let want = blocks
        .iter()
        .zip(tv)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / 4.0;
    let st = vec![("stride8".to_string(), map(1, 4, 4, &sv))];
    let tt = vec![("stride16".to_string(), map(1, 2, 2, &tv))];
    close(scalar(&fm.loss(&st, &tt).unwrap()), want, 1e-12);
    let e = fm.loss(&st, &st).unwrap_err();
    assert_eq!(
        e.to_string(),
        "teacher tap \"stride16\": not among the network's taps [\"stride8\"]"
    );
}

#[test]
fn feature_match_adapter_maps_channels_and_trains() {
    let vs = nn::VarStore::new(Device::Cpu);
    let st = vec![
        ("stride8".to_string(), map(2, 1, 2, &[1.0, 2.0, 3.0, 4.0])),
        (
            "pooled".to_string(),
            Tensor::from_slice(&[0.5f64, -0.5]).reshape([1, 2]),
        ),
    ];
    let te = Tensor::from_slice(&[1.0f64, 0.0, 2.0, 1.0, 0.0, 0.0]).reshape([1, 3, 1, 2]);
    let te = te.set_requires_grad(true);
    let tt = vec![
        ("stride8".to_string(), te.shallow_clone()),
        (
            "pooled".to_string(),
            Tensor::from_slice(&[0.0f64, 1.0]).reshape([1, 2]),
        ),
    ];
    let pairs = [
        FeaturePair {
            student: "stride8".into(),
            teacher: "stride8".into(),
        },
        FeaturePair {
            student: "pooled".into(),
            teacher: "pooled".into(),
        },
    ];
    let fm = FeatureMatch::from_taps(&(vs.root() / "fm"), &pairs, &st, &tt).unwrap();
    let chans: Vec<(i64, i64)> = fm
        .pairs()
        .map(|p| (p.student_channels, p.teacher_channels))
        .collect();
    assert_eq!(chans, [(2, 3), (2, 2)]);
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    assert_eq!(names, ["fm.pair0.bias", "fm.pair0.weight"]);
    // Adapter: out_o = sum_c W[o][c] x_c + b_o with known weights.
    let w = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    let b = [0.0, 0.5, -1.0];
    tch::no_grad(|| {
        vars["fm.pair0.weight"].shallow_clone().copy_(
            &Tensor::from_slice(&w.concat())
                .reshape([3, 2, 1, 1])
                .to_kind(Kind::Float),
        );
        vars["fm.pair0.bias"]
            .shallow_clone()
            .copy_(&Tensor::from_slice(&b).to_kind(Kind::Float));
    });
    // Student x[c][pixel] = [[1, 2], [3, 4]], teacher y[o][pixel].
    let x = [[1.0, 2.0], [3.0, 4.0]];
    let y = [[1.0, 0.0], [2.0, 1.0], [0.0, 0.0]];
    let mut sq = 0.0;
    for o in 0..3 {
        for p in 0..2 {
            let out = w[o][0] * x[0][p] + w[o][1] * x[1][p] + b[o];
            sq += (out - y[o][p]) * (out - y[o][p]);
        }
    }
    let adapted = sq / 6.0;
    let pooled = ((0.5 - 0.0f64).powi(2) + (-0.5 - 1.0f64).powi(2)) / 2.0;
    // Student taps are f64 here, so the adapter runs in f64 on f32 weights: cast the taps.
    let st32: Vec<(String, Tensor)> = st
        .iter()
        .map(|(n, t)| (n.clone(), t.to_kind(Kind::Float)))
        .collect();
    let loss = fm.loss(&st32, &tt).unwrap();
    close(scalar(&loss), (adapted + pooled) / 2.0, 1e-6);
    loss.backward();
    assert!(vars["fm.pair0.weight"].grad().defined());
    assert!(!te.grad().defined(), "no gradient may reach the teacher");

    let bad = [FeaturePair {
        student: "stride4".into(),
        teacher: "stride8".into(),
    }];
    let e = FeatureMatch::from_taps(&(vs.root() / "x"), &bad, &st, &tt).unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "distillation.features[0]: student tap \"stride4\": not among the network's taps \
         [\"stride8\", \"pooled\"]"
    );
}
