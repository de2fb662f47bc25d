//! The export folder: `model_data.c/.h` compiled by the system C compiler, and `write_all` on
//! small real data sets (Fashion-MNIST, multi-class; Fashion-MNIST mosaics, multi-label), its
//! metrics and thresholds recomputed here independently from TFLite BUILTIN_REF outputs with
//! the definitions written out in this file.

mod export_net;

use std::path::Path;
use std::process::Command;

use kdtests::reference::{self, Backend, RunOptions};
use kdtrainer::data::import::{fashion_mnist, mosaic};
use kdtrainer::data::{Dataset, ModeChoice, Split};
use kdtrainer::export::{self, c_array, sha256_hex, tflite, ExportOptions};
use kdtrainer::pipeline::{eval_input, Normalization};
use serde_json::Value;

const SIZE: usize = 28;

#[test]
fn c_array_compiles_and_holds_the_model_bytes() {
    let inputs: Vec<Vec<u8>> = export_net::photo_inputs(SIZE)
        .into_iter()
        .take(5)
        .map(|(_, b)| b)
        .collect();
    let model = tflite::write(&export_net::mobilenet_like(SIZE, 10, 7, &inputs), "c").unwrap();
    let (c, h) = c_array::write(&model, export::C_SYMBOL).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model_data.c"), &c).unwrap();
    std::fs::write(dir.path().join("model_data.h"), &h).unwrap();
    let main = r#"
#include <stdint.h>
#include <stdio.h>
#include "model_data.h"
int main(int argc, char **argv) {
    if (argc != 2) return 3;
    if (((uintptr_t)kdedge_model_data) % 16 != 0) return 2;
    if (kdedge_model_data_len != KDEDGE_MODEL_DATA_LEN || sizeof(kdedge_model_data) != KDEDGE_MODEL_DATA_LEN) return 4;
    FILE *f = fopen(argv[1], "wb");
    if (!f) return 5;
    fwrite(kdedge_model_data, 1, kdedge_model_data_len, f);
    return fclose(f) == 0 ? 0 : 6;
}
"#;
    std::fs::write(dir.path().join("main.c"), main).unwrap();
    for std in ["-std=c99", "-std=c11"] {
        let exe = dir.path().join(format!("dump{std}"));
        let out = Command::new("cc")
            .args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
            .arg(&exe)
            .arg(dir.path().join("main.c"))
            .arg(dir.path().join("model_data.c"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cc {std}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = dir.path().join(format!("model{std}.bin"));
        let st = Command::new(&exe).arg(&bin).status().unwrap();
        assert_eq!(st.code(), Some(0), "{std}: exit code (2 = misaligned)");
        assert_eq!(std::fs::read(&bin).unwrap(), model, "{std}: bytes differ");
    }
}

/// Imports 40 images per split of a data set kind into a temp folder.
fn data(kind: &str) -> (tempfile::TempDir, Dataset) {
    let raw = export_net::repo().join("data/raw/fashion-mnist");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(kind);
    match kind {
        "fm" => {
            let o = fashion_mnist::Options {
                limit: Some(40),
                ..Default::default()
            };
            fashion_mnist::import(&raw, &root, &o).unwrap();
        }
        _ => {
            let o = mosaic::Options {
                limit: Some(40),
                ..Default::default()
            };
            mosaic::import(&raw, &root, &o).unwrap();
        }
    }
    let ds = Dataset::load(&root, ModeChoice::Auto).unwrap();
    (dir, ds)
}

fn inputs(ds: &Dataset, split: Split) -> Vec<Vec<u8>> {
    ds.split(split)
        .iter()
        .map(|e| eval_input(&ds.images_dir().join(&e.image), SIZE).unwrap())
        .collect()
}

/// BUILTIN_REF's int8 outputs for a split, dequantised.
fn reference_logits(model: &[u8], xs: &[Vec<u8>], scale: f64, zp: i32) -> Vec<Vec<f64>> {
    let samples: Vec<[&Vec<u8>; 1]> = xs.iter().map(|x| [x]).collect();
    let r =
        reference::run_samples(model, Backend::TfliteRef, &samples, RunOptions::default()).unwrap();
    r.runs
        .iter()
        .map(|run| {
            run[0]
                .iter()
                .map(|&b| scale * (b as i8 as i32 - zp) as f64)
                .collect()
        })
        .collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn check_common(out: &Path, ds: &Dataset, model: &[u8]) -> Value {
    let labels = std::fs::read_to_string(out.join("labels.txt")).unwrap();
    assert_eq!(labels.lines().collect::<Vec<_>>(), ds.classes);
    let cfg = read_json(&out.join("inference_config.json"));
    let m = kdruntime::Model::from_bytes(model).unwrap();
    assert_eq!(cfg["arena_bytes"], m.arena_size().unwrap());
    assert_eq!(cfg["input"]["shape"], serde_json::json!([1, SIZE, SIZE, 3]));
    assert_eq!(cfg["input"]["dtype"], "uint8");
    assert_eq!(cfg["input"]["channel_order"], "RGB");
    assert_eq!(cfg["letterbox"]["fill"], 0);
    assert_eq!(
        cfg["normalization"]["mean"],
        serde_json::json!([127.0, 127.0, 127.0])
    );
    let files = cfg["models"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "model_qat_int8.tflite",
            "model_qat_int8.onnx",
            "model_data.c",
            "model_data.h",
            "labels.txt",
            "threshold_recommendation.json",
            "metrics.json"
        ]
    );
    for f in files {
        let bytes = std::fs::read(out.join(f["file"].as_str().unwrap())).unwrap();
        assert_eq!(f["sha256"], sha256_hex(&bytes));
        assert_eq!(f["bytes"], bytes.len());
    }
    cfg
}

fn softmax_max(row: &[f64]) -> (f64, usize) {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|x| (x - m).exp()).sum();
    let top = row.iter().position(|&x| x == m).unwrap();
    (1.0 / sum, top)
}

#[test]
fn write_all_multi_class_matches_an_independent_evaluation() {
    let (_d, ds) = data("fm");
    let g = export_net::mobilenet_like(SIZE, 10, 11, &inputs(&ds, Split::Train));
    let out = tempfile::tempdir().unwrap();
    let rep = export::write_all(
        out.path(),
        &g,
        &ds,
        &ExportOptions::new(Normalization::STUDENT),
    )
    .unwrap();
    let model = std::fs::read(out.path().join("model_qat_int8.tflite")).unwrap();
    assert_eq!(model, tflite::write(&g, "kdedge").unwrap());
    check_common(out.path(), &ds, &model);
    let q = g.tensors[g.output].q;
    let (scale, zp) = (f64::from(q.scale), q.zero_point);

    // Test split: top-1 / top-5 from BUILTIN_REF outputs (rank = classes scoring more, plus
    // equal ones with a lower index).
    let logits = reference_logits(&model, &inputs(&ds, Split::Test), scale, zp);
    let truth: Vec<usize> = ds
        .split(Split::Test)
        .iter()
        .map(|e| ds.class_index(&e.labels[0]).unwrap())
        .collect();
    let rank = |r: &[f64], c: usize| {
        (0..r.len())
            .filter(|&j| r[j] > r[c] || (r[j] == r[c] && j < c))
            .count()
    };
    let n = truth.len() as f64;
    let top1 = logits
        .iter()
        .zip(&truth)
        .filter(|(r, &c)| rank(r, c) == 0)
        .count() as f64
        / n;
    let top5 = logits
        .iter()
        .zip(&truth)
        .filter(|(r, &c)| rank(r, c) < 5)
        .count() as f64
        / n;
    let m = read_json(&out.path().join("metrics.json"));
    assert_eq!(m["mode"], "multi-class");
    assert_eq!(m["images"], 40);
    assert_eq!(m["top1"].as_f64().unwrap(), top1);
    assert_eq!(m["top5"].as_f64().unwrap(), top5);
    assert_eq!(rep.metrics.summary()[0].1, top1);
    eprintln!("multi-class: top-1 {top1}, top-5 {top5} (random weights)");

    // Validation: the confidence table, recomputed.
    let val = reference_logits(&model, &inputs(&ds, Split::Val), scale, zp);
    let vtruth: Vec<usize> = ds
        .split(Split::Val)
        .iter()
        .map(|e| ds.class_index(&e.labels[0]).unwrap())
        .collect();
    let t = read_json(&out.path().join("threshold_recommendation.json"));
    assert_eq!(t["applicable"], false);
    let table = t["confidence"].as_array().unwrap();
    assert_eq!(table.len(), 91);
    for (i, row) in table.iter().enumerate() {
        let th = (5 + i) as f64 / 100.0;
        assert!((row["threshold"].as_f64().unwrap() - th).abs() < 1e-6);
        let covered: Vec<bool> = val
            .iter()
            .zip(&vtruth)
            .filter_map(|(r, &c)| {
                let (p, top) = softmax_max(r);
                (p > th).then_some(top == c)
            })
            .collect();
        let cov = covered.len() as f64 / val.len() as f64;
        let acc = if covered.is_empty() {
            0.0
        } else {
            covered.iter().filter(|&&x| x).count() as f64 / covered.len() as f64
        };
        assert!(
            (row["coverage"].as_f64().unwrap() - cov).abs() < 1e-12,
            "t {th}"
        );
        assert!(
            (row["accuracy"].as_f64().unwrap() - acc).abs() < 1e-12,
            "t {th}"
        );
    }
    assert!(read_json(&out.path().join("inference_config.json"))["thresholds"].is_null());
}

/// Per-class (tp, fp, fn) at thresholds `t` (strictly above), and F1 macro.
fn f1_macro(probs: &[Vec<f64>], truth: &[Vec<usize>], t: &[f64]) -> (f64, Vec<f64>) {
    let nc = t.len();
    let f1s: Vec<f64> = (0..nc)
        .map(|c| {
            let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
            for (p, y) in probs.iter().zip(truth) {
                match (p[c] > t[c], y.contains(&c)) {
                    (true, true) => tp += 1.0,
                    (true, false) => fp += 1.0,
                    (false, true) => fn_ += 1.0,
                    _ => {}
                }
            }
            if tp == 0.0 {
                0.0
            } else {
                2.0 * tp / (2.0 * tp + fp + fn_)
            }
        })
        .collect();
    (f1s.iter().sum::<f64>() / nc as f64, f1s)
}

#[test]
fn write_all_multi_label_thresholds_and_metrics_match_an_independent_search() {
    let (_d, ds) = data("mosaic");
    assert_eq!(ds.mode, kdtrainer::data::Mode::MultiLabel);
    let g = export_net::mobilenet_like(SIZE, ds.classes.len(), 13, &inputs(&ds, Split::Train));
    let out = tempfile::tempdir().unwrap();
    export::write_all(
        out.path(),
        &g,
        &ds,
        &ExportOptions::new(Normalization::STUDENT),
    )
    .unwrap();
    let model = std::fs::read(out.path().join("model_qat_int8.tflite")).unwrap();
    let cfg = check_common(out.path(), &ds, &model);
    let q = g.tensors[g.output].q;
    let sig = |rows: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        // kdruntime's probabilities are f32; round the same way before comparing to thresholds.
        rows.into_iter()
            .map(|r| {
                r.iter()
                    .map(|&x| f64::from((1.0 / (1.0 + (-x).exp())) as f32))
                    .collect()
            })
            .collect()
    };
    let labels = |s: Split| -> Vec<Vec<usize>> {
        ds.split(s)
            .iter()
            .map(|e| {
                e.labels
                    .iter()
                    .map(|l| ds.class_index(l).unwrap())
                    .collect()
            })
            .collect()
    };
    let nc = ds.classes.len();
    let grid: Vec<f64> = (5..=95).map(|i| f64::from(i as f32 / 100.0)).collect();
    let val = sig(reference_logits(
        &model,
        &inputs(&ds, Split::Val),
        f64::from(q.scale),
        q.zero_point,
    ));
    let vy = labels(Split::Val);
    // Global: best F1 macro, first on ties. Per class: each class's best F1, first on ties.
    let runs: Vec<(f64, Vec<f64>)> = grid
        .iter()
        .map(|&t| f1_macro(&val, &vy, &vec![t; nc]))
        .collect();
    let mut g_ix = 0;
    for (i, r) in runs.iter().enumerate() {
        if r.0 > runs[g_ix].0 {
            g_ix = i;
        }
    }
    let per_class: Vec<f64> = (0..nc)
        .map(|c| {
            let mut b = 0;
            for i in 0..grid.len() {
                if runs[i].1[c] > runs[b].1[c] {
                    b = i;
                }
            }
            grid[b]
        })
        .collect();
    let (pc_f1, _) = f1_macro(&val, &vy, &per_class);
    let t = read_json(&out.path().join("threshold_recommendation.json"));
    assert_eq!(
        t["global"]["threshold"].as_f64().unwrap() as f32,
        grid[g_ix] as f32
    );
    assert!((t["global"]["f1_macro"].as_f64().unwrap() - runs[g_ix].0).abs() < 1e-12);
    assert!((t["per_class"]["f1_macro"].as_f64().unwrap() - pc_f1).abs() < 1e-12);
    let use_pc = pc_f1 - runs[g_ix].0 > 0.005;
    assert_eq!(t["per_class"]["recommended"], use_pc);
    let shipped: Vec<f64> = if use_pc {
        per_class.clone()
    } else {
        vec![grid[g_ix]; nc]
    };
    // JSON holds the f32 thresholds; compare as f32.
    let got: Vec<f32> = t["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, shipped.iter().map(|&x| x as f32).collect::<Vec<_>>());
    assert_eq!(cfg["thresholds"], t["thresholds"]);
    eprintln!("multi-label: global {} (F1 macro {:.4}), per-class F1 macro {pc_f1:.4}, per-class used: {use_pc}", grid[g_ix], runs[g_ix].0);

    // Test metrics with the shipped thresholds.
    let test = sig(reference_logits(
        &model,
        &inputs(&ds, Split::Test),
        f64::from(q.scale),
        q.zero_point,
    ));
    let ty = labels(Split::Test);
    let (f1m, f1s) = f1_macro(&test, &ty, &shipped);
    let m = read_json(&out.path().join("metrics.json"));
    assert_eq!(m["mode"], "multi-label");
    assert!((m["macro"]["f1"].as_f64().unwrap() - f1m).abs() < 1e-12);
    for (c, f) in f1s.iter().enumerate() {
        assert!(
            (m["per_class"][c]["f1"].as_f64().unwrap() - f).abs() < 1e-12,
            "class {c}"
        );
    }
    let (mut nl, mut ok) = (0, 0);
    for (p, y) in test.iter().zip(&ty) {
        if y.is_empty() {
            nl += 1;
            ok += usize::from((0..nc).all(|c| p[c] <= shipped[c]));
        }
    }
    assert_eq!(m["no_label"]["images"], nl);
    assert_eq!(m["no_label"]["correct"], ok);
}
