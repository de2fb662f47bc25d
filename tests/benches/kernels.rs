//! Per-kernel throughput of kdruntime on the shapes that dominate MobileNetV2-1.0 at 224x224, so
//! optimisation work can see where time goes. Each case is a one-operator int8 model built with
//! the kdruntime writer and run through the interpreter (`invoke` only), on the plain reference
//! kernels and on the fastest kernels this CPU has (`<case>/reference`, `<case>/fastest`).
//!
//! `cargo bench -p kdtests --bench kernels`. Criterion's throughput is in "elements": for the
//! convolutions and FULLY_CONNECTED an element is one multiply-accumulate, so `Melem/s` reads
//! as millions of MACs per second; for ADD it is one output value.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kdruntime::kernels::simd::Kernels;
use kdruntime::tflite::writer::{Activation, DType, ModelBuilder, Op, Padding, Quant, TensorSpec};
use kdruntime::{Interpreter, Model};
use kdtests::rng::Rng;

const IN_SCALE: f32 = 0.02;

/// A built single-operator model, its input bytes and its work per invoke.
#[derive(Clone)]
struct Case {
    name: &'static str,
    model: Vec<u8>,
    inputs: Vec<Vec<u8>>,
    work: u64,
}

fn act(
    b: &mut ModelBuilder,
    name: &str,
    shape: &[i32],
    scale: f32,
    zp: i64,
) -> kdruntime::tflite::writer::TensorId {
    b.add_tensor(TensorSpec::activation(
        name,
        shape,
        DType::I8,
        Quant::per_tensor(scale, zp),
    ))
}

fn finish(
    b: &mut ModelBuilder,
    ins: &[kdruntime::tflite::writer::TensorId],
    out: kdruntime::tflite::writer::TensorId,
) -> Vec<u8> {
    b.set_inputs(ins);
    b.set_outputs(&[out]);
    b.finish().expect("the kernel model is valid")
}

/// CONV_2D (`depthwise == false`, filter [O,K,K,C]) or DEPTHWISE_CONV_2D (multiplier 1,
/// filter [1,K,K,C]) on an `h x w x c` input, SAME padding, ReLU6 as in MobileNetV2.
fn conv(
    name: &'static str,
    (h, w, c): (usize, usize, usize),
    out_c: usize,
    k: usize,
    stride: usize,
    depthwise: bool,
) -> Case {
    let mut r = Rng::new(name.len() as u64 * 7919);
    let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
    let taps = if depthwise { k * k } else { k * k * c };
    let w_scales: Vec<f32> = (0..out_c)
        .map(|_| r.log_uniform(0.002, 0.01) as f32)
        .collect();
    // Output scale so a typical accumulator (about sqrt(taps) * 40 * 60) lands well inside int8.
    let out_scale = IN_SCALE * 0.006 * (taps as f32).sqrt() * 2400.0 / 100.0;
    let mut b = ModelBuilder::new();
    let x = act(
        &mut b,
        "x",
        &[1, h as i32, w as i32, c as i32],
        IN_SCALE,
        -3,
    );
    let filter_shape = if depthwise {
        [1, k as i32, k as i32, out_c as i32]
    } else {
        [out_c as i32, k as i32, k as i32, c as i32]
    };
    let wt = b.add_tensor(TensorSpec::const_i8(
        "w",
        &filter_shape,
        &r.i8s(out_c * taps, -127, 127),
        Quant::per_channel(
            w_scales.clone(),
            vec![0; out_c],
            if depthwise { 3 } else { 0 },
        ),
    ));
    let bias: Vec<i32> = (0..out_c).map(|_| r.range_i32(-500, 500)).collect();
    let bt = b.add_tensor(TensorSpec::const_i32(
        "b",
        &[out_c as i32],
        &bias,
        Some(Quant::per_channel(
            w_scales.iter().map(|s| s * IN_SCALE).collect(),
            vec![0; out_c],
            0,
        )),
    ));
    let y = act(
        &mut b,
        "y",
        &[1, oh as i32, ow as i32, out_c as i32],
        out_scale,
        -128,
    );
    let (s, d) = (stride as i32, 1);
    let op = if depthwise {
        Op::DepthwiseConv2d {
            padding: Padding::Same,
            stride_w: s,
            stride_h: s,
            dilation_w: d,
            dilation_h: d,
            depth_multiplier: 1,
            activation: Activation::Relu6,
        }
    } else {
        Op::Conv2d {
            padding: Padding::Same,
            stride_w: s,
            stride_h: s,
            dilation_w: d,
            dilation_h: d,
            activation: Activation::Relu6,
        }
    };
    b.add_op(op, &[x, wt, bt], &[y]);
    Case {
        name,
        model: finish(&mut b, &[x], y),
        inputs: vec![r.bytes(h * w * c)],
        work: (oh * ow * out_c * taps) as u64,
    }
}

fn fully_connected(name: &'static str, inputs: usize, outputs: usize) -> Case {
    let mut r = Rng::new(31);
    let w_scale = 0.004;
    let mut b = ModelBuilder::new();
    let x = act(&mut b, "x", &[1, inputs as i32], IN_SCALE, 5);
    let wt = b.add_tensor(TensorSpec::const_i8(
        "w",
        &[outputs as i32, inputs as i32],
        &r.i8s(outputs * inputs, -127, 127),
        Quant::per_tensor(w_scale, 0),
    ));
    let bias: Vec<i32> = (0..outputs).map(|_| r.range_i32(-500, 500)).collect();
    let bt = b.add_tensor(TensorSpec::const_i32(
        "b",
        &[outputs as i32],
        &bias,
        Some(Quant::per_tensor(w_scale * IN_SCALE, 0)),
    ));
    let y = act(&mut b, "y", &[1, outputs as i32], 0.05, 2);
    b.add_op(
        Op::FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
        },
        &[x, wt, bt],
        &[y],
    );
    Case {
        name,
        model: finish(&mut b, &[x], y),
        inputs: vec![r.bytes(inputs)],
        work: (inputs * outputs) as u64,
    }
}

/// The residual ADD of two equally shaped tensors with different scales (a rescaling add).
fn add(name: &'static str, (h, w, c): (usize, usize, usize)) -> Case {
    let mut r = Rng::new(97);
    let shape = [1, h as i32, w as i32, c as i32];
    let mut b = ModelBuilder::new();
    let x = act(&mut b, "x", &shape, 0.03, 4);
    let z = act(&mut b, "z", &shape, 0.05, -7);
    let y = act(&mut b, "y", &shape, 0.06, 1);
    b.add_op(
        Op::Add {
            activation: Activation::None,
        },
        &[x, z],
        &[y],
    );
    let n = h * w * c;
    Case {
        name,
        model: finish(&mut b, &[x, z], y),
        inputs: vec![r.bytes(n), r.bytes(n)],
        work: n as u64,
    }
}

fn cases() -> Vec<Case> {
    vec![
        conv("conv1x1_56x56x24_to_144", (56, 56, 24), 144, 1, 1, false),
        conv("conv1x1_7x7x320_to_1280", (7, 7, 320), 1280, 1, 1, false),
        conv("conv3x3_s2_224x224x3_to_32", (224, 224, 3), 32, 3, 2, false),
        conv("depthwise3x3_s1_56x56x144", (56, 56, 144), 144, 3, 1, true),
        conv("depthwise3x3_s2_112x112x96", (112, 112, 96), 96, 3, 2, true),
        fully_connected("fully_connected_1280_to_1000", 1280, 1000),
        add("add_56x56x24", (56, 56, 24)),
    ]
}

fn kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernels");
    for (case, kernels) in cases()
        .into_iter()
        .flat_map(|c| [Kernels::Reference, Kernels::Fastest].map(|k| (c.clone(), k)))
    {
        let model = Model::from_bytes(&case.model).expect("valid model");
        let mut arena = vec![0u8; model.arena_size_for(kernels).expect("plannable")];
        let mut interp = Interpreter::with_kernels(&model, &mut arena, kernels).expect("init");
        for (i, x) in case.inputs.iter().enumerate() {
            interp.input_mut(i).expect("input").copy_from_slice(x);
        }
        group.throughput(Throughput::Elements(case.work));
        let name = match kernels {
            Kernels::Reference => format!("{}/reference", case.name),
            _ => format!("{}/fastest", case.name),
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                interp.invoke().expect("invoke");
                std::hint::black_box(interp.output(0).expect("output")[0]);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = kernels
}
criterion_main!(benches);
