//! Whole-network latency of kdruntime's reference kernels: `invoke` on MobileNetV2 0.35@96
//! (the small ImageNet configuration) and on the all-ops network, plus `Interpreter::new`
//! (arena planning, operator validation, per-channel multipliers and tables).
//!
//! `cargo bench -p kdtests --bench network`. The networks are built once (float calibration
//! pass) before timing starts.

use criterion::{criterion_group, criterion_main, Criterion};
use kdruntime::{Interpreter, Model};
use kdtests::{allops, nets};

fn bench_model(c: &mut Criterion, name: &str, bytes: &[u8], input: &[u8]) {
    let model = Model::from_bytes(bytes).expect("valid model");
    let mut arena = vec![0u8; model.arena_size().expect("plannable")];
    c.bench_function(&format!("{name}/init"), |b| {
        b.iter(|| {
            let interp = Interpreter::new(&model, &mut arena).expect("init");
            std::hint::black_box(interp.model().num_operators());
        })
    });
    let mut interp = Interpreter::new(&model, &mut arena).expect("init");
    interp.input_mut(0).expect("input").copy_from_slice(input);
    c.bench_function(&format!("{name}/invoke"), |b| {
        b.iter(|| {
            interp.invoke().expect("invoke");
            std::hint::black_box(interp.output(0).expect("output")[0]);
        })
    });
}

fn networks(c: &mut Criterion) {
    let net = nets::mobilenet_v2(0.35, 96, 1000, 1);
    bench_model(c, "mobilenet_v2_0.35_96", &net.model, &net.input);
    let (model, input) = allops::all_ops(1);
    bench_model(c, "all_ops", &model, &input);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = networks
}
criterion_main!(benches);
