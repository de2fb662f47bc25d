//! Every check happens before `invoke`, and already at `Model::arena_size`: per-channel
//! requantisation multipliers (computed when the interpreter prepares CONV_2D and
//! DEPTHWISE_CONV_2D) are validated in the sizing pass too, so a model `arena_size` accepts is
//! never refused by `Interpreter::new`.

use kdruntime::tflite::writer::{Activation, DType, ModelBuilder, Op, Padding, Quant, TensorSpec};
use kdruntime::{Interpreter, Model};

/// One 1x1 (depthwise) convolution over `[1, 2, 2, 2]` with per-channel filter scales
/// `filter_scales`; input and output scale 1, so the multiplier of channel c is
/// `filter_scales[c]`.
fn conv_model(depthwise: bool, filter_scales: [f32; 2]) -> Vec<u8> {
    let mut b = ModelBuilder::new();
    let q = |s: f32| Quant::per_tensor(s, 0);
    let x = b.add_tensor(TensorSpec::activation(
        "x",
        &[1, 2, 2, 2],
        DType::I8,
        q(1.0),
    ));
    let (shape, axis) = if depthwise {
        ([1, 1, 1, 2], 3)
    } else {
        ([2, 1, 1, 2], 0)
    };
    let w = b.add_tensor(TensorSpec::const_i8(
        "w",
        &shape,
        &[1, 2, 3, 4][..if depthwise { 2 } else { 4 }],
        Quant::per_channel(filter_scales.to_vec(), vec![0, 0], axis),
    ));
    let y = b.add_tensor(TensorSpec::activation(
        "y",
        &[1, 2, 2, 2],
        DType::I8,
        q(1.0),
    ));
    let op = if depthwise {
        Op::DepthwiseConv2d {
            padding: Padding::Valid,
            stride_w: 1,
            stride_h: 1,
            dilation_w: 1,
            dilation_h: 1,
            depth_multiplier: 1,
            activation: Activation::None,
        }
    } else {
        Op::Conv2d {
            padding: Padding::Valid,
            stride_w: 1,
            stride_h: 1,
            dilation_w: 1,
            dilation_h: 1,
            activation: Activation::None,
        }
    };
    b.add_op(op, &[x, w], &[y]);
    b.set_inputs(&[x]);
    b.set_outputs(&[y]);
    b.finish().unwrap()
}

#[test]
fn oversized_per_channel_multipliers_are_rejected_by_arena_size() {
    for depthwise in [false, true] {
        // Channel 0 is fine (0.5); channel 1's multiplier 2^31 needs a left shift of 32,
        // beyond TFLite's limit of 30 (QuantizeMultiplier would overflow the int32 product).
        let bytes = conv_model(depthwise, [0.5, 2f32.powi(31)]);
        let model = Model::from_bytes(&bytes).unwrap();
        let e = model.arena_size().unwrap_err();
        let name = if depthwise {
            "DEPTHWISE_CONV_2D"
        } else {
            "CONV_2D"
        };
        assert!(
            e.to_string().contains(name) && e.to_string().contains("2^30 or more"),
            "{e}"
        );
        // `new` reports the same error for any arena (it never gets to sizing).
        let mut arena = vec![0u8; 1 << 16];
        assert_eq!(Interpreter::new(&model, &mut arena).err(), Some(e));
    }
}

#[test]
fn valid_multipliers_run_and_match_a_hand_calculation() {
    for depthwise in [false, true] {
        let bytes = conv_model(depthwise, [0.5, 0.25]);
        let model = Model::from_bytes(&bytes).unwrap();
        let mut arena = vec![0u8; model.arena_size().unwrap()];
        let mut interp = Interpreter::new(&model, &mut arena).unwrap();
        interp
            .input_mut(0)
            .unwrap()
            .copy_from_slice(&[10, 20, 30, 40, 50, 60, 70, 80u8]);
        interp.invoke().unwrap();
        let out: Vec<i8> = interp.output(0).unwrap().iter().map(|&b| b as i8).collect();
        // Depthwise: out[c] = w[c] * x[c] * scale[c] with w = [1, 2], scales [0.5, 0.25]:
        // pixel (10, 20) -> (5, 10). Conv: out[o] = sum_i w[o][i] x[i] * scale[o] with
        // w = [[1, 2], [3, 4]]: (10, 20) -> (50 * 0.5, 110 * 0.25) = (25, 27.5 -> 28: 0.25 is
        // multiplier 2^30 with shift -1, the high-mul gives 55 exactly and RoundingDivideByPOT
        // rounds the half away from zero); (70, 80) -> (115, 132.5 -> 133, saturated to 127).
        let expected: [i8; 8] = if depthwise {
            [5, 10, 15, 20, 25, 30, 35, 40]
        } else {
            [25, 28, 55, 63, 85, 98, 115, 127]
        };
        assert_eq!(out, expected, "depthwise {depthwise}");
    }
}
