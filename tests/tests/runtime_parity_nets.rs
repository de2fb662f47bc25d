//! Whole networks in kdruntime against TFLite's reference kernels (BUILTIN_REF): every output
//! byte equal, on every kernel family (reference, AVX2, the fastest this CPU has). Also records kdruntime's arena (`Model::arena_size`) next to TFLite Micro's for
//! each network, prints the table and writes it to `target/arena_comparison.json`.

use std::path::PathBuf;

use kdruntime::kernels::simd::Kernels;
use kdtests::nets::{self, Options};
use kdtests::reference::{self, Backend, Case};
use kdtests::{allops, kd, workspace_root};

fn all_ops_fixture() -> PathBuf {
    workspace_root().join("runtime/tests/fixtures/nets/all_ops.tflite")
}

/// The runtime crate's tests read the all-ops network from a file; it must be what the builder
/// makes now. `KD_UPDATE_FIXTURES=1` rewrites it.
#[test]
fn all_ops_fixture_is_current() {
    let (model, input) = allops::all_ops(1);
    let path = all_ops_fixture();
    if std::env::var_os("KD_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &model).unwrap();
        std::fs::write(path.with_extension("in"), &input).unwrap();
    }
    let on_disk = std::fs::read(&path).expect("fixture exists (KD_UPDATE_FIXTURES=1 writes it)");
    assert!(
        on_disk == model,
        "{} is stale: rerun with KD_UPDATE_FIXTURES=1",
        path.display()
    );
    assert_eq!(std::fs::read(path.with_extension("in")).unwrap(), input);
}

struct Subject {
    name: String,
    model: Vec<u8>,
    input: Vec<u8>,
}

fn subjects() -> Vec<Subject> {
    let pad = Options {
        explicit_pad: true,
        ..Options::default()
    };
    let softmax = Options {
        softmax: true,
        ..Options::default()
    };
    let pad_softmax = Options {
        explicit_pad: true,
        softmax: true,
        photo: "flower.jpg".into(),
    };
    // Variant names carry `_pad` / `_softmax` suffixes.
    let mut out: Vec<Subject> = [
        nets::mobilenet_v2(0.35, 96, 1000, 1),
        nets::mobilenet_v2(1.0, 224, 1000, 2),
        nets::efficientnet_lite(0, 224, 1000, 3),
        nets::mobilenet_v2_with(0.35, 96, 1000, 1, &pad).expect("pad variant"),
        nets::mobilenet_v2_with(0.35, 96, 1000, 1, &softmax).expect("softmax variant"),
        nets::efficientnet_lite_with(0, 224, 1000, 3, &pad_softmax).expect("lite0 pad+softmax"),
    ]
    .into_iter()
    .map(|n| Subject {
        name: n.name,
        model: n.model,
        input: n.input,
    })
    .collect();
    let (model, input) = allops::all_ops(1);
    out.push(Subject {
        name: "all_ops (every operator)".into(),
        model,
        input,
    });
    out
}

#[test]
fn networks_match_builtin_ref_bit_for_bit() {
    let subjects = subjects();
    let cases: Vec<Case> = subjects
        .iter()
        .map(|s| Case {
            name: s.name.clone(),
            model: s.model.clone(),
            inputs: vec![s.input.clone()],
        })
        .collect();
    let refs = reference::run_batch(&cases, Backend::TfliteRef).expect("harness ran");
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    println!(
        "{:<36} {:>7} {:>10} {:>13} {:>13} {:>7}",
        "network", "values", "model B", "kdruntime B", "TFLM B", "ratio"
    );
    for (s, r) in subjects.iter().zip(&refs) {
        let (want, info) = r
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("{} failed under BUILTIN_REF: {e}", s.name));
        // Every kernel family must match; the arena figure is the reference kernels' (the
        // packed optimised kernels add rearranged weights to it).
        let mut values = 0;
        let mut reference_arena = 0;
        for kernels in kd::ALL_KERNELS {
            let got = kd::run_with(&s.model, std::slice::from_ref(&s.input), kernels)
                .unwrap_or_else(|e| panic!("{} ({kernels:?}): kdruntime failed: {e}", s.name));
            assert_eq!(got.outputs.len(), want.len(), "{}", s.name);
            for (k, (g, w)) in got.outputs.iter().zip(want).enumerate() {
                let differ = g.iter().zip(w).filter(|(a, b)| a != b).count();
                if g.len() != w.len() || differ > 0 {
                    failures.push(format!(
                        "{} ({kernels:?}) output {k}: {differ} of {} bytes differ (lengths {} / {})",
                        s.name,
                        w.len(),
                        g.len(),
                        w.len()
                    ));
                }
                values += w.len() / info[k].elem_size().unwrap_or(1).max(1);
            }
            if kernels == Kernels::Reference {
                reference_arena = got.arena_bytes;
            }
        }
        // TFLite Micro has no RELU_N1_TO_1, so the all-ops network has no TFLM figure.
        let tflm = match reference::run(&s.model, Backend::Tflm, std::slice::from_ref(&s.input)) {
            Ok(r) => Some(r.tflm_arena_bytes.expect("TFLM reports its arena")),
            Err(e) if s.name.starts_with("all_ops") => {
                println!("{}: TFLite Micro cannot run it: {e}", s.name);
                None
            }
            Err(e) => panic!("{} failed under TFLite Micro: {e}", s.name),
        };
        let ratio = tflm.map(|t| reference_arena as f64 / t as f64);
        println!(
            "{:<36} {values:>7} {:>10} {:>13} {:>13} {:>7}",
            s.name,
            s.model.len(),
            reference_arena,
            tflm.map_or("-".into(), |t| t.to_string()),
            ratio.map_or("-".into(), |r| format!("{r:.3}")),
        );
        if let Some(t) = tflm {
            // Same greedy planning idea; kdruntime keeps no per-tensor structs in the arena.
            assert!(
                reference_arena as u64 <= t,
                "{}: kdruntime's arena ({}) exceeds TFLM's ({t})",
                s.name,
                reference_arena
            );
        }
        rows.push(serde_json::json!({
            "network": s.name,
            "values_compared": values,
            "model_bytes": s.model.len(),
            "kdruntime_arena_bytes": reference_arena,
            "tflm_arena_bytes": tflm,
            "kdruntime_over_tflm": ratio,
        }));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    std::fs::create_dir_all(&target).unwrap();
    let path = target.join("arena_comparison.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    println!("arena table written to {}", path.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
