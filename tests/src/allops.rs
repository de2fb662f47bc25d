//! A small int8 network that uses every operator kdruntime runs (QUANTIZE, PAD with int64
//! paddings, CONV_2D, DEPTHWISE_CONV_2D, HARD_SWISH, AVERAGE_POOL_2D, MAX_POOL_2D, ADD,
//! LOGISTIC, MUL, RELU, RELU6, RELU_N1_TO_1, CONCATENATION, MEAN, RESHAPE, SQUEEZE,
//! FULLY_CONNECTED, SOFTMAX, DEQUANTIZE), for the no-allocation, robustness and parity tests.
//!
//! Quantisation is chosen by hand (not calibrated): the scales keep typical values of random
//! weights inside the int8 range, which is all these tests need. The model is written to
//! `runtime/tests/fixtures/nets/all_ops.tflite` for the runtime crate's own tests (it cannot
//! depend on this crate); `tests/tests/runtime_parity_nets.rs` checks the file is current.

use kdruntime::tflite::writer::{
    Activation, DType, ModelBuilder, Op, Padding, Quant, TensorId, TensorSpec,
};

use crate::rng::Rng;

/// Input shape `[1, 16, 16, 3]`, uint8.
pub const INPUT_SHAPE: [i32; 4] = [1, 16, 16, 3];
/// Classes of the final SOFTMAX.
pub const CLASSES: i32 = 10;

fn q(scale: f32, zp: i64) -> Quant {
    Quant::per_tensor(scale, zp)
}

fn act(b: &mut ModelBuilder, name: &str, shape: &[i32], quant: Quant) -> TensorId {
    b.add_tensor(TensorSpec::activation(name, shape, DType::I8, quant))
}

/// Per-channel int8 weights with symmetric scales around `scale`, and a matching int32 bias.
fn weights(
    b: &mut ModelBuilder,
    r: &mut Rng,
    name: &str,
    shape: &[i32],
    axis: usize,
    scale: f32,
    input_scale: f32,
) -> (TensorId, TensorId) {
    let channels = shape[axis] as usize;
    let n: usize = shape.iter().map(|&d| d as usize).product();
    let values = r.i8s(n, -127, 127);
    let scales: Vec<f32> = (0..channels)
        .map(|c| scale * (0.5 + c as f32 / channels as f32))
        .collect();
    let w = b.add_tensor(TensorSpec::const_i8(
        name,
        shape,
        &values,
        Quant::per_channel(scales.clone(), vec![0; channels], axis as i32),
    ));
    let bias: Vec<i32> = (0..channels).map(|_| r.range(-500, 500) as i32).collect();
    let bias_scales: Vec<f32> = scales.iter().map(|s| s * input_scale).collect();
    let bt = b.add_tensor(TensorSpec::const_i32(
        &format!("{name}_bias"),
        &[channels as i32],
        &bias,
        Some(Quant::per_channel(bias_scales, vec![0; channels], 0)),
    ));
    (w, bt)
}

/// The model bytes and one deterministic input (a gradient with noise).
pub fn all_ops(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut r = Rng::new(seed);
    let mut b = ModelBuilder::new();
    b.set_description("kdedge all-ops test network");
    let x_u8 = b.add_tensor(TensorSpec::activation(
        "image",
        &INPUT_SHAPE,
        DType::U8,
        q(1.0 / 255.0, 0),
    ));
    let x = act(&mut b, "image_i8", &INPUT_SHAPE, q(1.0 / 255.0, -128));
    b.add_op(Op::Quantize, &[x_u8], &[x]);

    let pads = [0i64, 0, 1, 1, 1, 1, 0, 0];
    let paddings = b.add_tensor(TensorSpec {
        name: "paddings".into(),
        shape: vec![4, 2],
        dtype: DType::I64,
        quant: None,
        data: Some(pads.iter().flat_map(|v| v.to_le_bytes()).collect()),
    });
    let xp = act(&mut b, "padded", &[1, 18, 18, 3], q(1.0 / 255.0, -128));
    b.add_op(Op::Pad, &[x, paddings], &[xp]);

    let (w, bias) = weights(&mut b, &mut r, "conv", &[8, 3, 3, 3], 0, 0.01, 1.0 / 255.0);
    let c1 = act(&mut b, "conv", &[1, 16, 16, 8], q(6.0 / 255.0, -128));
    b.add_op(
        Op::Conv2d {
            padding: Padding::Valid,
            stride_w: 1,
            stride_h: 1,
            dilation_w: 1,
            dilation_h: 1,
            activation: Activation::Relu6,
        },
        &[xp, w, bias],
        &[c1],
    );

    let (w, bias) = weights(&mut b, &mut r, "dw", &[1, 3, 3, 16], 3, 0.02, 6.0 / 255.0);
    let d1 = act(&mut b, "depthwise", &[1, 8, 8, 16], q(0.05, 0));
    b.add_op(
        Op::DepthwiseConv2d {
            padding: Padding::Same,
            stride_w: 2,
            stride_h: 2,
            dilation_w: 1,
            dilation_h: 1,
            depth_multiplier: 2,
            activation: Activation::None,
        },
        &[c1, w, bias],
        &[d1],
    );

    let hs = act(&mut b, "hard_swish", &[1, 8, 8, 16], q(0.04, -100));
    b.add_op(Op::HardSwish, &[d1], &[hs]);

    let avg = act(&mut b, "avg_pool", &[1, 4, 4, 16], q(0.04, -100));
    b.add_op(
        Op::AveragePool2d {
            padding: Padding::Valid,
            stride_w: 2,
            stride_h: 2,
            filter_w: 2,
            filter_h: 2,
            activation: Activation::None,
        },
        &[hs],
        &[avg],
    );
    let max = act(&mut b, "max_pool", &[1, 4, 4, 16], q(0.04, -100));
    b.add_op(
        Op::MaxPool2d {
            padding: Padding::Same,
            stride_w: 1,
            stride_h: 1,
            filter_w: 3,
            filter_h: 3,
            activation: Activation::None,
        },
        &[avg],
        &[max],
    );
    let sum = act(&mut b, "add", &[1, 4, 4, 16], q(0.08, -60));
    b.add_op(
        Op::Add {
            activation: Activation::None,
        },
        &[avg, max],
        &[sum],
    );
    let sig = act(&mut b, "logistic", &[1, 4, 4, 16], q(1.0 / 256.0, -128));
    b.add_op(Op::Logistic, &[avg], &[sig]);
    let prod = act(&mut b, "mul", &[1, 4, 4, 16], q(0.05, -40));
    b.add_op(
        Op::Mul {
            activation: Activation::None,
        },
        &[sum, sig],
        &[prod],
    );

    // Three activations with one output quantisation, so CONCATENATION needs no rescaling.
    let cat_q = || q(6.0 / 255.0, -128);
    let relu = act(&mut b, "relu", &[1, 4, 4, 16], cat_q());
    b.add_op(Op::Relu, &[prod], &[relu]);
    let relu6 = act(&mut b, "relu6", &[1, 4, 4, 16], cat_q());
    b.add_op(Op::Relu6, &[prod], &[relu6]);
    let relu1 = act(&mut b, "relu_n1_to_1", &[1, 4, 4, 16], cat_q());
    b.add_op(Op::ReluN1To1, &[prod], &[relu1]);
    let cat = act(&mut b, "concat", &[1, 4, 4, 48], cat_q());
    b.add_op(
        Op::Concatenation {
            axis: -1,
            activation: Activation::None,
        },
        &[relu, relu6, relu1],
        &[cat],
    );

    let axes = b.add_tensor(TensorSpec::const_i32("axes", &[2], &[1, 2], None));
    let pooled = act(&mut b, "mean", &[1, 1, 1, 48], q(0.02, -128));
    b.add_op(Op::Mean { keep_dims: true }, &[cat, axes], &[pooled]);
    let shape = b.add_tensor(TensorSpec::const_i32("shape", &[3], &[1, 1, 48], None));
    let reshaped = act(&mut b, "reshape", &[1, 1, 48], q(0.02, -128));
    b.add_op(
        Op::Reshape {
            new_shape: Some(vec![1, 1, 48]),
        },
        &[pooled, shape],
        &[reshaped],
    );
    let flat = act(&mut b, "squeeze", &[1, 48], q(0.02, -128));
    b.add_op(
        Op::Squeeze {
            squeeze_dims: vec![1],
        },
        &[reshaped],
        &[flat],
    );

    let (w, bias) = weights(&mut b, &mut r, "fc", &[CLASSES, 48], 0, 0.02, 0.02);
    let logits = act(&mut b, "logits", &[1, CLASSES], q(0.25, 0));
    b.add_op(
        Op::FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
        },
        &[flat, w, bias],
        &[logits],
    );
    let probs = act(&mut b, "probs", &[1, CLASSES], q(1.0 / 256.0, -128));
    b.add_op(Op::Softmax { beta: 0.05 }, &[logits], &[probs]);
    let out = b.add_tensor(TensorSpec {
        name: "probs_f32".into(),
        shape: vec![1, CLASSES],
        dtype: DType::F32,
        quant: None,
        data: None,
    });
    b.add_op(Op::Dequantize, &[probs], &[out]);
    b.set_inputs(&[x_u8]);
    b.set_outputs(&[out]);
    let model = b
        .finish()
        .unwrap_or_else(|e| panic!("the all-ops network is invalid (a bug here): {e}"));
    let n = INPUT_SHAPE.iter().product::<i32>() as usize;
    let input = (0..n)
        .map(|i| ((i * 7 % 256) as u8).wrapping_add(r.range(0, 31) as u8))
        .collect();
    (model, input)
}
