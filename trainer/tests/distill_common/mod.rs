//! Helpers of the distillation tests: a small real Fashion-MNIST set, teachers with random
//! weights saved as training folders or TorchScript files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kdtrainer::config::Role;
use kdtrainer::data::import::fashion_mnist;
use kdtrainer::data::{Dataset, ModeChoice};
use kdtrainer::models::{build, ModelSpec};
use kdtrainer::stages::{SavedModel, MODEL_SCHEMA};
use tch::{nn, Device, Kind, Tensor};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `per_split` real Fashion-MNIST images per split under `dir/fm`.
pub fn fashion(dir: &Path, per_split: usize) -> (PathBuf, Dataset) {
    let out = dir.join("fm");
    fashion_mnist::import(
        &repo().join("data/raw/fashion-mnist"),
        &out,
        &fashion_mnist::Options {
            limit: Some(per_split),
            seed: 3,
            val: 100,
        },
    )
    .unwrap();
    let ds = Dataset::load(&out, ModeChoice::Auto).unwrap();
    (out, ds)
}

/// A training folder (`checkpoints/model.json` + `best.safetensors`) holding `arch` at `size`
/// with random weights drawn from `seed` (BatchNorm statistics perturbed so evaluation mode
/// differs from training mode).
pub fn teacher_dir(dir: &Path, arch: &str, size: u32, classes: &[String], seed: i64) -> PathBuf {
    let spec = ModelSpec::parse(arch, size, classes.len(), 0.0).unwrap();
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = build(&vs.root(), &spec).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with("running_var") {
                t.copy_(&(Tensor::rand_like(&t) + 0.5));
            } else if name.ends_with("running_mean") {
                t.copy_(&(Tensor::randn_like(&t) * 0.1));
            }
        }
    });
    let out = dir.join(format!("teacher-{seed}"));
    std::fs::create_dir_all(out.join("checkpoints")).unwrap();
    vs.save(out.join("checkpoints/best.safetensors")).unwrap();
    let saved = SavedModel {
        schema: MODEL_SCHEMA.into(),
        role: Role::Teacher,
        arch: arch.into(),
        resolved: spec.to_string(),
        input_size: size,
        dropout: 0.0,
        classes: classes.to_vec(),
        mode: "multi-class".into(),
        mean: spec.normalization.mean,
        std: spec.normalization.std,
    };
    std::fs::write(
        SavedModel::path(&out),
        serde_json::to_string_pretty(&saved).unwrap(),
    )
    .unwrap();
    out
}

/// The network of a training folder, loaded, for computing expected values independently.
pub fn load_dir(dir: &Path) -> (nn::VarStore, Box<dyn kdtrainer::models::Classifier>) {
    let saved = SavedModel::load(dir).unwrap();
    let spec = saved.spec().unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let m = build(&vs.root(), &spec).unwrap();
    vs.load(dir.join("checkpoints/best.safetensors")).unwrap();
    (vs, m)
}

/// A TorchScript teacher traced from `mobilenet_v2_tiny` with random weights, for `size` px
/// inputs; returns the file and the network it was traced from.
pub fn script_teacher(
    dir: &Path,
    size: u32,
    classes: usize,
    seed: i64,
) -> (
    PathBuf,
    nn::VarStore,
    Box<dyn kdtrainer::models::Classifier>,
) {
    let spec = ModelSpec::parse("mobilenet_v2_tiny", size, classes, 0.0).unwrap();
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let m = build(&vs.root(), &spec).unwrap();
    vs.freeze();
    let example = Tensor::randn([2, 3, size as i64, size as i64], (Kind::Float, Device::Cpu));
    let traced = tch::no_grad(|| {
        tch::CModule::create_by_tracing("T", "forward", &[example], &mut |xs| {
            vec![m.forward_t(&xs[0], false)]
        })
    })
    .unwrap();
    let path = dir.join(format!("script-{seed}.pt"));
    traced.save(&path).unwrap();
    (path, vs, m)
}

/// Largest absolute difference.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
