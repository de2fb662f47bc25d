//! The training engine on real Fashion-MNIST images (imported with the real importer, decoded
//! into memory here so that faults can be injected into batches) with a small real conv net:
//! learning, logs and plots, freezing, early stopping, the NaN guard and resume from a step
//! checkpoint. Resume after `kill -9` of the real `kdtrain teacher` process is tested in
//! `cli_train.rs`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::{anyhow, Result};
use kdtrainer::data::import::{fashion_mnist, SplitMix64};
use kdtrainer::data::{Dataset, Mode, ModeChoice, Split};
use kdtrainer::train::optim::OptimizerSpec;
use kdtrainer::train::schedule::{ScheduleKind, ScheduleSpec};
use kdtrainer::train::{
    self, Batch, BatchSource, EarlyStopping, Monitor, PhaseSpec, TrainSpec, Trainable,
};
use tch::{nn, Device, Tensor};

/// Images per split imported for these tests.
const LIMIT: usize = 192;
/// Training batch size: 4 steps per epoch.
const BATCH: usize = 48;

/// One decoded split.
struct Split3 {
    images: Tensor,
    labels: Vec<usize>,
}

fn decode(ds: &Dataset, split: Split) -> Split3 {
    let entries = ds.split(split);
    let mut pixels = Vec::with_capacity(entries.len() * 28 * 28);
    let mut labels = Vec::new();
    for e in entries {
        let img = image::open(ds.images_dir().join(&e.image))
            .unwrap()
            .to_luma8();
        assert_eq!(img.dimensions(), (28, 28), "{}", e.image);
        pixels.extend(img.as_raw().iter().map(|&p| f32::from(p) / 255.0));
        labels.push(ds.class_index(&e.labels[0]).unwrap());
    }
    let n = labels.len() as i64;
    let images = Tensor::from_slice(&pixels)
        .view([n, 1, 28, 28])
        .repeat([1, 3, 1, 1]);
    Split3 { images, labels }
}

/// The imported data set, shared by the tests of this binary.
fn dataset_root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/raw/fashion-mnist");
        let opts = fashion_mnist::Options {
            limit: Some(LIMIT),
            seed: 0,
            val: 6000,
        };
        fashion_mnist::import(&raw, &dir.path().join("fm"), &opts).unwrap();
        dir
    })
    .path()
}

fn load(root: &Path) -> (Split3, Split3, Vec<String>) {
    let ds = Dataset::load(&root.join("fm"), ModeChoice::Auto).unwrap();
    assert_eq!(ds.mode, Mode::MultiClass);
    (
        decode(&ds, Split::Train),
        decode(&ds, Split::Val),
        ds.classes.clone(),
    )
}

/// An in-memory batch source with optional fault injection.
struct MemSource<'a> {
    data: &'a Split3,
    classes: usize,
    batch: usize,
    shuffle_seed: Option<u64>,
    /// NaN images at (epoch, step).
    nan_at: Option<(usize, usize)>,
    /// An error instead of the batch at (epoch, step).
    fail_at: Option<(usize, usize)>,
}

impl<'a> MemSource<'a> {
    fn new(data: &'a Split3, classes: usize, batch: usize, shuffle_seed: Option<u64>) -> Self {
        MemSource {
            data,
            classes,
            batch,
            shuffle_seed,
            nan_at: None,
            fail_at: None,
        }
    }
}

impl BatchSource for MemSource<'_> {
    fn epoch(&self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let mut order: Vec<usize> = (0..self.data.labels.len()).collect();
        if let Some(s) = self.shuffle_seed {
            SplitMix64::new(s ^ epoch as u64).shuffle(&mut order);
        }
        let chunks: Vec<Vec<usize>> = order.chunks(self.batch).map(<[usize]>::to_vec).collect();
        Box::new(chunks.into_iter().enumerate().map(move |(step, idx)| {
            if self.fail_at == Some((epoch, step)) {
                return Err(anyhow!("simulated interruption"));
            }
            let sel = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let mut images = self.data.images.index_select(0, &sel);
            if self.nan_at == Some((epoch, step)) {
                images *= f64::NAN;
            }
            let labels: Vec<usize> = idx.iter().map(|&i| self.data.labels[i]).collect();
            let mut onehot = vec![0f32; idx.len() * self.classes];
            for (r, &c) in labels.iter().enumerate() {
                onehot[r * self.classes + c] = 1.0;
            }
            Ok(Batch {
                images,
                targets: Tensor::from_slice(&onehot).view([idx.len() as i64, -1]),
                labels: labels.into_iter().map(|c| vec![c]).collect(),
                indices: idx,
            })
        }))
    }

    fn len(&self) -> usize {
        self.data.labels.len().div_ceil(self.batch)
    }
}

/// Two strided convolutions, dropout, a linear head on the flattened feature map.
#[derive(Debug)]
struct SmallNet {
    c1: nn::Conv2D,
    c2: nn::Conv2D,
    head: nn::Linear,
}

const GROUPS: [&str; 3] = ["conv1", "conv2", "head"];

impl SmallNet {
    fn new(p: &nn::Path, classes: i64) -> SmallNet {
        let cfg = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        SmallNet {
            c1: nn::conv2d(p / "conv1", 3, 8, 3, cfg),
            c2: nn::conv2d(p / "conv2", 8, 16, 3, cfg),
            // 28x28 -> 14x14 -> 7x7 with 16 channels, flattened.
            head: nn::linear(p / "head", 16 * 7 * 7, classes, Default::default()),
        }
    }
}

impl nn::ModuleT for SmallNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.c1)
            .relu()
            .apply(&self.c2)
            .relu()
            .flatten(1, -1)
            .dropout(0.2, train)
            .apply(&self.head)
    }
}

fn groups() -> Vec<String> {
    GROUPS.iter().map(|s| s.to_string()).collect()
}

fn spec(classes: Vec<String>) -> TrainSpec {
    TrainSpec {
        seed: 3,
        mode: Mode::MultiClass,
        classes,
        phases: vec![
            PhaseSpec {
                name: "head".into(),
                epochs: 1,
                lr: 0.02,
                trainable: Trainable::Head,
            },
            PhaseSpec {
                name: "finetune".into(),
                epochs: 2,
                lr: 0.01,
                trainable: Trainable::Top { fraction: 0.5 },
            },
        ],
        optimizer: OptimizerSpec::adamw(),
        schedule: ScheduleSpec {
            kind: ScheduleKind::Cosine {
                t0_epochs: 0.0,
                t_mult: 1.0,
                min_lr_ratio: 0.1,
            },
            warmup_epochs: 0.5,
        },
        clip_grad_norm: Some(5.0),
        early_stopping: None,
        monitor: Monitor::default_for(Mode::MultiClass),
        top_k: 2,
        checkpoint_every_steps: None,
        mixed_precision: true,
        threshold: 0.5,
        resume: false,
    }
}

/// A fresh model with seeded initial weights.
fn model(classes: usize) -> (nn::VarStore, SmallNet) {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = SmallNet::new(&vs.root(), classes as i64);
    (vs, net)
}

fn snapshot(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Names of the variables whose values differ between two snapshots.
fn changed(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> Vec<String> {
    a.iter()
        .zip(b)
        .filter(|((_, x), (_, y))| !x.equal(y))
        .map(|((n, _), _)| n.clone())
        .collect()
}

fn losses(h: &[train::EpochRecord]) -> Vec<(usize, f64, f64)> {
    h.iter()
        .map(|r| (r.epoch, r.train_loss, r.val_loss))
        .collect()
}

/// Loss histories equal up to rounding noise: the same computation, but MKL's GEMM may round
/// differently depending on the memory alignment of its operands (seen: 1 ulp in a val loss).
/// A resume that lost or repeated a step, or restarted the optimiser moments, differs by far more.
fn assert_same_history(got: &[(usize, f64, f64)], want: &[(usize, f64, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs();
        assert!(
            g.0 == w.0 && close(g.1, w.1) && close(g.2, w.2),
            "{got:?} vs {want:?}"
        );
    }
}

/// libtorch's random generator is process-wide and the engine re-seeds it at every step, so two
/// trainings running on parallel test threads would draw each other's numbers. Each test that
/// trains holds this lock.
fn torch_rng() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn trains_and_writes_logs_plots_and_checkpoints() {
    let _rng = torch_rng();
    tch::set_num_threads(1);
    let (tr, va, classes) = load(dataset_root());
    let nc = classes.len();
    let out = tempfile::tempdir().unwrap();
    let (mut vs, net) = model(nc);
    let before = snapshot(&vs);
    let mut s = spec(classes);
    // Long enough to learn something: 1 + 5 epochs of 4 steps.
    s.phases[1].epochs = 5;
    s.phases[1].lr = 0.02;
    let train_src = MemSource::new(&tr, nc, BATCH, Some(5));
    let val_src = MemSource::new(&va, nc, 64, None);
    let rep = train::run(
        &s,
        &train_src,
        &val_src,
        &net,
        &mut vs,
        &groups(),
        out.path(),
    )
    .unwrap();

    let h = &rep.history;
    let phases: Vec<&str> = h.iter().map(|r| r.phase.as_str()).collect();
    assert_eq!(
        phases,
        ["head", "finetune", "finetune", "finetune", "finetune", "finetune"]
    );
    assert!(
        h[5].train_loss < h[0].train_loss,
        "loss did not fall: {:?}",
        losses(h)
    );
    // 10 classes: chance is 0.1.
    let top1 = h[5].val_metrics["top1"];
    assert!(top1 > 0.5, "val top-1 {top1}: {:?}", losses(h));
    assert!(h.iter().all(|r| r.images_per_s > 0.0 && r.steps == 4));
    // Warm-up of half an epoch (2 of 4 steps), then one cosine cycle over the remaining half
    // epoch: step 3 is a quarter epoch into it, half the cycle, so
    // lr = 0.002 + (0.02 - 0.002) * (1 + cos(pi / 2)) / 2 = 0.011.
    assert!((h[0].lr - 0.011).abs() < 1e-12, "lr {}", h[0].lr);

    // conv1 is never trained (Top 0.5 of 3 groups = conv2 + head); conv2 only in phase 2.
    let after = snapshot(&vs);
    assert_eq!(
        changed(&before, &after),
        ["conv2.bias", "conv2.weight", "head.bias", "head.weight"]
    );

    let jsonl = std::fs::read_to_string(out.path().join("train_log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[1]["phase"], "finetune");
    assert_eq!(lines[5]["val_metrics"]["top1"], top1);
    let csv = std::fs::read_to_string(out.path().join("train_log.csv")).unwrap();
    let mut rows = csv.lines();
    assert_eq!(
        rows.next().unwrap(),
        "epoch,phase,phase_epoch,lr,train_loss,val_loss,val_top1,val_top5,seconds,images_per_s,steps"
    );
    assert_eq!(rows.count(), 6);
    for f in ["loss.svg", "metrics.svg", "val_confusion.svg"] {
        let t = std::fs::read_to_string(out.path().join(f)).unwrap();
        assert!(t.contains("<svg") && t.contains("<polyline") || f == "val_confusion.svg");
    }
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("val_metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["schema"], "kdedge.eval.metrics/1");
    assert_eq!(metrics["top1"], top1);

    // Best = the epoch with the highest val top-1; its weights load; top-2 kept.
    let (be, bv) = rep.best.unwrap();
    let max = h.iter().map(|r| r.val_metrics["top1"]).fold(0.0, f64::max);
    assert_eq!(bv, max);
    assert_eq!(h[be].val_metrics["top1"], max);
    let (mut vs2, _net2) = model(nc);
    vs2.load(rep.best_weights.as_ref().unwrap()).unwrap();
    let mut top: Vec<String> = std::fs::read_dir(out.path().join("checkpoints/top"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top.len(), 2, "{top:?}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("checkpoints/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["finished"], true);
    assert_eq!(state["epoch"], 6);

    // A second fresh run into the same folder must not clobber it.
    let e = train::run(
        &s,
        &train_src,
        &val_src,
        &net,
        &mut vs,
        &groups(),
        out.path(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("a checkpoint exists"), "{e}");
}

#[test]
fn head_phase_trains_only_the_head() {
    let _rng = torch_rng();
    tch::set_num_threads(1);
    let (tr, va, classes) = load(dataset_root());
    let nc = classes.len();
    let out = tempfile::tempdir().unwrap();
    let (mut vs, net) = model(nc);
    let before = snapshot(&vs);
    let mut s = spec(classes);
    s.phases.truncate(1);
    let rep = train::run(
        &s,
        &MemSource::new(&tr, nc, BATCH, Some(5)),
        &MemSource::new(&va, nc, 64, None),
        &net,
        &mut vs,
        &groups(),
        out.path(),
    )
    .unwrap();
    assert_eq!(rep.history.len(), 1);
    assert_eq!(
        changed(&before, &snapshot(&vs)),
        ["head.bias", "head.weight"]
    );
}

#[test]
fn early_stopping_ends_the_phase() {
    let _rng = torch_rng();
    tch::set_num_threads(1);
    let (tr, va, classes) = load(dataset_root());
    let nc = classes.len();
    let out = tempfile::tempdir().unwrap();
    let (mut vs, net) = model(nc);
    let mut s = spec(classes);
    s.phases = vec![PhaseSpec {
        name: "all".into(),
        epochs: 6,
        lr: 0.01,
        trainable: Trainable::All,
    }];
    // No change of the validation loss can exceed 10: epoch 0 sets the best, epoch 1 is the
    // first without improvement, and with patience 1 the phase ends after it.
    s.monitor = Monitor::val_loss();
    s.early_stopping = Some(EarlyStopping {
        patience: 1,
        min_delta: 10.0,
    });
    let rep = train::run(
        &s,
        &MemSource::new(&tr, nc, BATCH, Some(5)),
        &MemSource::new(&va, nc, 64, None),
        &net,
        &mut vs,
        &groups(),
        out.path(),
    )
    .unwrap();
    assert_eq!(rep.history.len(), 2);
    assert_eq!(rep.stopped_early, ["all"]);
}

#[test]
fn nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint() {
    let _rng = torch_rng();
    tch::set_num_threads(1);
    let (tr, va, classes) = load(dataset_root());
    let nc = classes.len();
    let out = tempfile::tempdir().unwrap();
    let (mut vs, net) = model(nc);
    let s = spec(classes);
    let mut src = MemSource::new(&tr, nc, BATCH, Some(5));
    src.nan_at = Some((1, 2));
    let e = train::run(
        &s,
        &src,
        &MemSource::new(&va, nc, 64, None),
        &net,
        &mut vs,
        &groups(),
        out.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("epoch 1 step 2: the training loss"), "{e}");
    assert!(e.contains("is NaN"), "{e}");
    assert!(e.contains("1 completed epochs"), "{e}");
    let ck = out.path().join("checkpoints");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["epoch"], 1);
    let weights = ck.join(state["model_file"].as_str().unwrap());
    let (mut vs2, _n) = model(nc);
    vs2.load(&weights).unwrap();
    // The kept weights are finite.
    for (n, t) in vs2.variables() {
        assert!(t.isfinite().all().int64_value(&[]) == 1, "{n}");
    }
    let log = std::fs::read_to_string(out.path().join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
}

#[test]
fn resume_from_a_step_checkpoint_matches_the_uninterrupted_run() {
    let _rng = torch_rng();
    tch::set_num_threads(1);
    let (tr, va, classes) = load(dataset_root());
    let nc = classes.len();
    let mut s = spec(classes);
    s.checkpoint_every_steps = Some(2);
    let val_src = MemSource::new(&va, nc, 64, None);
    let g = groups();

    let reference = {
        let out = tempfile::tempdir().unwrap();
        let (mut vs, net) = model(nc);
        let src = MemSource::new(&tr, nc, BATCH, Some(5));
        let rep = train::run(&s, &src, &val_src, &net, &mut vs, &g, out.path()).unwrap();
        (rep.history, snapshot(&vs))
    };

    let out = tempfile::tempdir().unwrap();
    {
        let (mut vs, net) = model(nc);
        let mut src = MemSource::new(&tr, nc, BATCH, Some(5));
        src.fail_at = Some((2, 3));
        let e = train::run(&s, &src, &val_src, &net, &mut vs, &g, out.path()).unwrap_err();
        assert!(format!("{e:#}").contains("simulated interruption"), "{e:#}");
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("checkpoints/state.json")).unwrap(),
    )
    .unwrap();
    // Epochs 0 and 1 done, 2 steps of epoch 2 checkpointed; the third step never ran.
    assert_eq!(
        (state["epoch"].as_u64(), state["step_in_epoch"].as_u64()),
        (Some(2), Some(2))
    );

    // A different model init: everything must come from the checkpoint.
    tch::manual_seed(99);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = SmallNet::new(&vs.root(), nc as i64);
    s.resume = true;
    let src = MemSource::new(&tr, nc, BATCH, Some(5));
    let rep = train::run(&s, &src, &val_src, &net, &mut vs, &g, out.path()).unwrap();
    assert_eq!(rep.resumed_at, Some(2));
    assert_same_history(&losses(&rep.history), &losses(&reference.0));
    for ((n, a), (_, b)) in reference.1.iter().zip(snapshot(&vs)) {
        assert!(
            a.allclose(&b, 1e-5, 1e-6, false),
            "{n} differs from the reference run"
        );
    }
}

/// An objective with its own state (a step counter) and a per-step statistic.
struct Counting {
    steps: Tensor,
}

impl train::objective::Objective for Counting {
    fn train_loss(
        &mut self,
        model: &dyn nn::ModuleT,
        _batch: &Batch,
        images: &Tensor,
        targets: &Tensor,
        _ctx: &train::objective::StepContext,
    ) -> Result<train::objective::StepLoss> {
        let logits = model.forward_t(images, true);
        let loss = train::objective::hard_loss(Mode::MultiClass, &logits, targets);
        let twice = 2.0 * loss.double_value(&[]);
        Ok(train::objective::StepLoss {
            loss,
            stats: [("twice".to_string(), twice)].into_iter().collect(),
        })
    }

    fn after_step(&mut self, _ctx: &train::objective::StepContext, _lr: f64) -> Result<()> {
        self.steps += 1.0;
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        vec![("steps".into(), self.steps.shallow_clone())]
    }

    fn load_state(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        for (k, t) in tensors {
            anyhow::ensure!(k == "steps", "unexpected objective state {k:?}");
            self.steps = t;
        }
        Ok(())
    }
}

#[test]
fn objective_statistics_and_state_survive_an_interrupted_run() {
    let _rng = torch_rng();
    tch::set_num_threads(1);
    let (tr, va, classes) = load(dataset_root());
    let nc = classes.len();
    let out = tempfile::tempdir().unwrap();
    let mut s = spec(classes);
    s.checkpoint_every_steps = Some(2);
    let val_src = MemSource::new(&va, nc, 64, None);
    let (mut vs, net) = model(nc);
    let mut obj = Counting {
        steps: Tensor::from(0.0f64),
    };
    let mut interrupted = MemSource::new(&tr, nc, BATCH, Some(5));
    // Epoch 1 (phase finetune), step 3: steps 0-1 of that epoch are checkpointed, step 2 is not.
    interrupted.fail_at = Some((1, 3));
    let g = groups();
    let err = train::run_with(
        &s,
        &interrupted,
        &val_src,
        &net,
        &mut vs,
        &g,
        out.path(),
        &mut obj,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("simulated interruption"),
        "{err:#}"
    );
    assert_eq!(
        obj.steps.double_value(&[]),
        7.0,
        "4 + 3 steps ran before the fault"
    );

    s.resume = true;
    let (mut vs, net) = model(nc);
    let mut obj = Counting {
        steps: Tensor::from(0.0f64),
    };
    let train_src = MemSource::new(&tr, nc, BATCH, Some(5));
    let rep = train::run_with(
        &s,
        &train_src,
        &val_src,
        &net,
        &mut vs,
        &g,
        out.path(),
        &mut obj,
        &mut |_| {},
    )
    .unwrap();
    // 3 epochs of 4 steps, each counted once: the step after the last checkpoint was redone
    // from the checkpointed count (6), not added to the in-memory 7.
    assert_eq!(obj.steps.double_value(&[]), 12.0);
    for r in &rep.history {
        let twice = r.train_stats["twice"];
        assert!(
            (twice - 2.0 * r.train_loss).abs() < 1e-9 * twice.abs(),
            "{r:?}"
        );
    }
    let steps: Vec<serde_json::Value> =
        std::fs::read_to_string(out.path().join("train_steps.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let ids: Vec<u64> = steps
        .iter()
        .map(|v| v["global_step"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (0..12).collect::<Vec<u64>>());
    for v in &steps {
        let (loss, twice) = (v["loss"].as_f64().unwrap(), v["twice"].as_f64().unwrap());
        assert!((twice - 2.0 * loss).abs() < 1e-9 * twice.abs(), "{v}");
    }
    let csv = std::fs::read_to_string(out.path().join("train_log.csv")).unwrap();
    assert!(
        csv.lines().next().unwrap().contains(",train_twice,"),
        "{csv}"
    );
}
