//! Plain reference int8 kernels, bit-exact with TFLite's reference kernels (`BUILTIN_REF`).
//!
//! Every operator family has the same shape: `prepare` validates plain numbers (scales, zero
//! points, shapes, options) and precomputes everything `eval` needs into a `*Params` value;
//! `eval` computes without allocating and without panicking on any slices whose lengths match
//! what `prepare` accepted. Optimised kernels, when they come, are tested against these.

pub mod activations;
pub mod add;
pub mod broadcast;
pub mod concatenation;
pub mod depthwise_conv;
pub mod float_math;
pub mod hard_swish;
pub mod logistic;
pub mod mul;
pub mod pad;
pub mod pooling;
pub mod softmax;
