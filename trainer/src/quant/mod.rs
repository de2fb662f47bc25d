//! Quantisation: the integer model ([`graph`]) that post-training calibration and
//! quantisation-aware training produce and the exporters write.
//!
//! * [`qnet`]: [`QatNet`], a student rebuilt with fake quantisation at every tensor of the
//!   integer graph (BatchNorm folding simulated, straight-through estimators, observers);
//! * [`ptq`]: post-training quantisation = calibrating a [`QatNet`]'s observers;
//! * [`lower`]: [`QatNet::to_int_graph`], the integer graph of its evaluation pass;
//! * [`fake_quant`], [`observer`], [`fold`]: the arithmetic, ranges and exact float rewrites
//!   they share.

pub mod fake_quant;
pub mod fold;
pub mod graph;
pub mod lower;
pub mod observer;
pub mod ptq;
pub mod qnet;
pub mod stage;

pub use qnet::{QatNet, QatOptions};
