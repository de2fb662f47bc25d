//! Quantisation: the integer model ([`graph`]) that post-training calibration and
//! quantisation-aware training produce and the exporters write.

pub mod graph;
