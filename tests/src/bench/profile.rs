//! Per-operator profile of one model on kdruntime (`bench profile`): where an invoke's time goes,
//! per operator and per operator type, for each kernel family. Times come from
//! `Interpreter::invoke_with`'s hook after every operator; each figure is the median over runs.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use kdruntime::kernels::simd::Kernels;
use kdruntime::{Interpreter, Model};

use super::measure::BenchModel;
use super::median_p90;

/// One operator's median time.
#[derive(Clone, Debug)]
pub struct OpTime {
    /// Operator index in the graph.
    pub index: usize,
    /// Builtin name, e.g. `CONV_2D`.
    pub op: &'static str,
    /// Output shape, e.g. `1x112x112x32`.
    pub output: String,
    /// Median microseconds.
    pub median_us: f64,
}

/// Times every operator of `bm` on `kernels` with `threads` (see `Interpreter::set_threads`)
/// over `runs` invokes (after one warm-up).
pub fn profile(
    bm: &BenchModel,
    kernels: Kernels,
    threads: usize,
    runs: usize,
) -> Result<Vec<OpTime>> {
    let bytes =
        std::fs::read(&bm.tflite).with_context(|| format!("reading {}", bm.tflite.display()))?;
    let m = Model::from_bytes(&bytes)?;
    let mut arena = vec![0u8; m.arena_size_for(kernels)?];
    let mut interp = Interpreter::with_kernels(&m, &mut arena, kernels)?;
    interp.set_threads(threads);
    let n = m.num_operators();
    let mut samples = vec![Vec::with_capacity(runs); n];
    for run in 0..=runs {
        interp.input_mut(0)?.copy_from_slice(&bm.input);
        let mut stamps = Vec::with_capacity(n + 1);
        stamps.push(Instant::now());
        interp.invoke_with(|_| stamps.push(Instant::now()))?;
        if run > 0 {
            for (i, w) in stamps.windows(2).enumerate() {
                samples[i].push((w[1] - w[0]).as_secs_f64() * 1e6);
            }
        }
    }
    (0..n)
        .map(|i| {
            let op = m.operator(i)?;
            let out = op
                .output(0)
                .map(|t| m.tensor(t))
                .transpose()?
                .map(|t| {
                    let d: Vec<String> = t.shape.dims().iter().map(i32::to_string).collect();
                    d.join("x")
                })
                .unwrap_or_default();
            Ok(OpTime {
                index: i,
                op: op.name(),
                output: out,
                median_us: median_p90(&samples[i]).map_or(0.0, |(m, _)| m),
            })
        })
        .collect()
}

/// A text table: totals per operator type, then the `top` slowest operators.
pub fn table(times: &[OpTime], top: usize) -> String {
    let total: f64 = times.iter().map(|t| t.median_us).sum();
    let mut by_type: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for t in times {
        let e = by_type.entry(t.op).or_default();
        e.0 += 1;
        e.1 += t.median_us;
    }
    let mut rows: Vec<_> = by_type.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let mut s = format!("total {:.0} us (sum of per-operator medians)\n", total);
    s += &format!(
        "{:<20} {:>5} {:>10} {:>7}\n",
        "operator", "count", "us", "share"
    );
    for (op, (count, us)) in rows {
        s += &format!(
            "{op:<20} {count:>5} {us:>10.0} {:>6.1}%\n",
            100.0 * us / total
        );
    }
    let mut slow: Vec<&OpTime> = times.iter().collect();
    slow.sort_by(|a, b| b.median_us.total_cmp(&a.median_us));
    s += &format!("slowest {top}:\n");
    for t in slow.into_iter().take(top) {
        s += &format!(
            "  #{:<3} {:<20} {:<16} {:>8.0} us\n",
            t.index, t.op, t.output, t.median_us
        );
    }
    s
}
