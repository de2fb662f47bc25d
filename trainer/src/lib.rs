//! kdtrainer: the training side of kdedge (teachers, distillation, QAT, integer export) on tch.
#![deny(missing_docs)]

pub mod config;
pub mod data;
pub mod device;
pub mod distill;
pub mod eval;
pub mod export;
pub mod models;
pub mod pipeline;
pub mod quant;
pub mod stages;
pub mod train;
