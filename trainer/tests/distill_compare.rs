//! The teacher / distilled / scratch comparison: KL and gap against hand calculations.

use kdtrainer::data::Mode;
use kdtrainer::distill::compare::{compare, mean_kl, MAX_GAP};
use tch::Tensor;

fn t(rows: &[[f32; 3]]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, 3])
}

fn softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn mean_kl_matches_a_hand_calculation() {
    let s = [[1.0f32, 0.0, -1.0], [0.5, 2.0, 0.0]];
    let e = [[2.0f32, 0.5, 0.0], [0.0, 1.0, 3.0]];
    let mut want = 0.0;
    for (a, b) in s.iter().zip(&e) {
        let ps = softmax(&a.map(f64::from));
        let pe = softmax(&b.map(f64::from));
        want += ps
            .iter()
            .zip(&pe)
            .map(|(p, q)| p * (p / q).ln())
            .sum::<f64>();
    }
    want /= 2.0;
    let got = mean_kl(&t(&s), &t(&e), Mode::MultiClass).unwrap();
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    // KL of a distribution with itself is zero, and the ensemble may be given as log-probs.
    let lp = t(&e).log_softmax(-1, tch::Kind::Float);
    assert!(mean_kl(&t(&e), &lp, Mode::MultiClass).unwrap().abs() < 1e-6);
}

#[test]
fn multi_label_kl_is_the_sum_of_bernoulli_kls() {
    let s = [[1.0f32, -2.0, 0.0]];
    let e = [[0.0f32, 1.0, -1.0]];
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let want: f64 = s[0]
        .iter()
        .zip(&e[0])
        .map(|(&a, &b)| {
            let (p, q) = (sig(f64::from(a)), sig(f64::from(b)));
            p * (p / q).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - q)).ln()
        })
        .sum();
    let got = mean_kl(&t(&s), &t(&e), Mode::MultiLabel).unwrap();
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn comparison_reports_gap_kl_and_verdicts() {
    let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let labels = vec![vec![0], vec![1], vec![2], vec![0]];
    // Ensemble right on all 4; distilled right on 4 and close to it; scratch right on 2.
    let ens = t(&[
        [3.0, 0.0, 0.0],
        [0.0, 3.0, 0.0],
        [0.0, 0.0, 3.0],
        [3.0, 0.0, 0.0],
    ]);
    let dis = t(&[
        [2.5, 0.0, 0.0],
        [0.0, 2.5, 0.0],
        [0.0, 0.0, 2.5],
        [2.5, 0.0, 0.0],
    ]);
    let scr = t(&[
        [0.0, 1.0, 0.0],
        [0.0, 1.0, 0.0],
        [1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0],
    ]);
    let c = compare(
        Mode::MultiClass,
        &classes,
        &labels,
        &[("t0".to_string(), ens.shallow_clone())],
        &ens,
        &dis,
        &scr,
    )
    .unwrap();
    let row = |n: &str| c.rows.iter().find(|r| r.name == n).unwrap();
    assert_eq!(row("ensemble").metrics["top1"], 1.0);
    assert_eq!(row("distilled").gap, Some(0.0));
    assert_eq!(row("scratch").gap, Some(0.5));
    assert!(c.distilled_beats_scratch && c.gap_ok && c.kl_ok);
    assert!(row("scratch").kl.unwrap() > row("distilled").kl.unwrap());
    let md = c.markdown();
    assert!(md.contains("| scratch |") && md.contains(&format!("gap < {MAX_GAP}: yes")));
    // A distilled student far from the ensemble fails both criteria.
    let c = compare(Mode::MultiClass, &classes, &labels, &[], &ens, &scr, &dis).unwrap();
    assert!(!c.distilled_beats_scratch && !c.gap_ok && !c.kl_ok);
}
