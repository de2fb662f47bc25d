//! KD schedules (weight ramp, temperature, two-phase recipe), confidence weights and the domain
//! mask read from a data set's lists and side files, against values worked out by hand.

use kdtrainer::config::{ConfidenceName, Distillation, TemperatureScheduleName};
use kdtrainer::data::{Dataset, Mode, ModeChoice, Split};
use kdtrainer::distill::schedule::{KdSchedule, Phase, TemperatureSchedule};
use kdtrainer::distill::weighting::{
    confidence_stats, domain_mask, teacher_confidence, Confidence,
};
use tch::{Kind, Tensor};

fn cfg() -> Distillation {
    Distillation::new(0.6, 4.0)
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
}

#[test]
fn default_schedule_is_constant_kd_from_the_first_step() {
    let s = KdSchedule::from_config(&cfg(), 5);
    for (e, f) in [(0, 0.0), (2, 0.5), (4, 0.99)] {
        assert_eq!(s.kd_alpha(e, f), 0.6);
        assert_eq!(s.temperatures(e, f), [4.0]);
    }
    assert_eq!(
        s.kd_alpha(5, 0.0),
        0.0,
        "no KD after the distillation epochs"
    );
    assert_eq!(
        s.phases(),
        [Phase {
            name: "distil",
            first_epoch: 0,
            epochs: 5,
            distil: true,
            lr: None
        }]
    );
}

#[test]
fn warm_up_then_linear_ramp() {
    // W = 1, R = 2, A = 0.6: a(p) = 0 for p < 1, 0.3 (p - 1) for 1 <= p < 3, 0.6 after.
    let mut c = cfg();
    c.warmup_epochs = 1.0;
    c.ramp_epochs = 2.0;
    let s = KdSchedule::from_config(&c, 6);
    for (e, f, want) in [
        (0, 0.0, 0.0),
        (0, 0.99, 0.0),
        (1, 0.0, 0.0),
        (1, 0.5, 0.15),
        (2, 0.0, 0.3),
        (2, 0.5, 0.45),
        (3, 0.0, 0.6),
        (5, 0.75, 0.6),
        (6, 0.0, 0.0),
    ] {
        close(s.kd_alpha(e, f), want);
    }
    // Fractional warm-up of half an epoch and a step (R = 0).
    c.warmup_epochs = 0.5;
    c.ramp_epochs = 0.0;
    let s = KdSchedule::from_config(&c, 6);
    close(s.kd_alpha(0, 0.49), 0.0);
    close(s.kd_alpha(0, 0.5), 0.6);
}

#[test]
fn linear_temperature_decays_and_rises_over_the_distillation_epochs() {
    let mut c = cfg();
    c.temperature = 8.0;
    c.temperature_schedule = TemperatureScheduleName::Linear;
    c.temperature_end = Some(2.0);
    let s = KdSchedule::from_config(&c, 4);
    assert_eq!(
        s.temperature,
        TemperatureSchedule::Linear {
            start: 8.0,
            end: 2.0
        }
    );
    // T(p) = 8 - 6 p / 4.
    for (e, f, want) in [
        (0, 0.0, 8.0),
        (1, 0.0, 6.5),
        (2, 0.5, 4.25),
        (3, 0.5, 2.75),
        (4, 0.0, 2.0),
        (9, 0.0, 2.0),
    ] {
        close(s.temperatures(e, f)[0], want);
    }
    c.temperature = 1.0;
    c.temperature_end = Some(5.0);
    let s = KdSchedule::from_config(&c, 8);
    close(s.temperatures(2, 0.0)[0], 2.0); // 1 + 4 * 2/8
    close(s.temperatures(6, 0.5)[0], 4.25); // 1 + 4 * 6.5/8
}

#[test]
fn several_temperatures_are_returned_together() {
    let mut c = cfg();
    c.temperatures = vec![1.0, 4.0, 8.0];
    let s = KdSchedule::from_config(&c, 3);
    assert_eq!(s.temperatures(1, 0.3), [1.0, 4.0, 8.0]);
}

#[test]
fn two_phase_recipe() {
    let mut c = cfg();
    c.hard_epochs = 3;
    c.hard_lr = Some(1e-4);
    let s = KdSchedule::from_config(&c, 10);
    assert_eq!(
        s.phases(),
        [
            Phase {
                name: "distil",
                first_epoch: 0,
                epochs: 10,
                distil: true,
                lr: None
            },
            Phase {
                name: "hard",
                first_epoch: 10,
                epochs: 3,
                distil: false,
                lr: Some(1e-4)
            }
        ]
    );
    assert_eq!(s.kd_alpha(9, 0.9), 0.6);
    assert_eq!(s.kd_alpha(10, 0.0), 0.0);
    assert_eq!(s.kd_alpha(12, 0.9), 0.0);
}

fn softmax_max(z: &[f64]) -> f64 {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let sum: f64 = z.iter().map(|v| (v - m).exp()).sum();
    1.0 / sum // the max element's exp(0) / sum
}

#[test]
fn confidence_weights_and_stats() {
    let rows = [[3.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]];
    let t = Tensor::from_slice(&rows.concat()).reshape([3, 3]);
    let conf = teacher_confidence(&t, Mode::MultiClass).unwrap();
    let want: Vec<f64> = rows.iter().map(|r| softmax_max(r)).collect();
    // e^3 / (e^3 + 2), e / (2e + 1), 1/3
    close(want[0], 3f64.exp() / (3f64.exp() + 2.0));
    close(want[1], 1f64.exp() / (2.0 * 1f64.exp() + 1.0));
    let got = Vec::<f64>::try_from(&conf).unwrap();
    for (g, w) in got.iter().zip(&want) {
        close(*g, *w);
    }
    let none = Confidence::None.weights(&conf);
    assert_eq!(Vec::<f64>::try_from(&none).unwrap(), [1.0, 1.0, 1.0]);
    let pmax = Confidence::Pmax.weights(&conf);
    assert_eq!(Vec::<f64>::try_from(&pmax).unwrap(), got);
    let thr = Confidence::Threshold(want[1]).weights(&conf);
    assert_eq!(Vec::<f64>::try_from(&thr).unwrap(), [1.0, 1.0, 0.0]);
    let st = confidence_stats(&conf, &thr);
    close(st.coverage, 2.0 / 3.0);
    close(st.mean, want.iter().sum::<f64>() / 3.0);
    close(st.min, 1.0 / 3.0);
    close(st.max, want[0]);

    let mut c = cfg();
    c.confidence = ConfidenceName::Threshold;
    c.confidence_threshold = 0.9;
    assert_eq!(Confidence::from_config(&c), Confidence::Threshold(0.9));

    // Multi-label: mean over classes of max(q, 1 - q), q = sigmoid(z).
    let z = Tensor::from_slice(&[0.0f64, 2.0, -2.0]).reshape([1, 3]);
    let q = 1.0 / (1.0 + (-2f64).exp());
    let ml = teacher_confidence(&z, Mode::MultiLabel).unwrap();
    close(ml.double_value(&[0]), (0.5 + q + q) / 3.0);
    let e = teacher_confidence(
        &Tensor::zeros([3], (Kind::Float, tch::Device::Cpu)),
        Mode::MultiClass,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "teacher logits: expected [N, C] with N, C >= 1, got [3]"
    );
}

#[test]
fn domain_mask_from_list_column_and_side_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("train.txt"),
        "a.png,x,domain=indoor;region=eu\nb.png,y\nc.png,x\nd.png,y,domain=lab\n",
    )
    .unwrap();
    std::fs::write(d.path().join("val.txt"), "v.png,x\n").unwrap();
    std::fs::write(d.path().join("test.txt"), "t.png,y\n").unwrap();
    std::fs::write(
        d.path().join("train.meta.csv"),
        "image,domain,region\nb.png,outdoor,us\nc.png,indoor,\n",
    )
    .unwrap();
    let ds = Dataset::load(d.path(), ModeChoice::Auto).unwrap();
    let entries = ds.split(Split::Train);
    let domains = vec!["indoor".to_string(), "outdoor".to_string()];
    // A batch in shuffled order: positions 3, 0, 1, 2.
    let m = domain_mask(&domains, entries, &[3, 0, 1, 2], "train.txt")
        .unwrap()
        .unwrap();
    assert_eq!(Vec::<f32>::try_from(&m).unwrap(), [0.0, 1.0, 1.0, 1.0]);
    let m = domain_mask(&domains[..1], entries, &[1, 2], "train.txt")
        .unwrap()
        .unwrap();
    assert_eq!(Vec::<f32>::try_from(&m).unwrap(), [0.0, 1.0]);
    assert!(domain_mask(&[], entries, &[0], "train.txt")
        .unwrap()
        .is_none());
    let e = domain_mask(&domains, entries, &[4], "train.txt").unwrap_err();
    assert_eq!(
        e.to_string(),
        "train.txt: batch index 4 is past the 4 images of the list"
    );
    assert_eq!(
        ds.attributes(Split::Train, 1).unwrap().region.as_deref(),
        Some("us")
    );
    assert_eq!(
        ds.attributes(Split::Train, 0).unwrap().get("region"),
        Some("eu")
    );
}
