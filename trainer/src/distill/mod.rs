//! Knowledge distillation: the teacher set (ensembles, gate, EMA self-distillation), the
//! teacher-logit cache that scales out over shards, and its NumPy `.npz` exchange format.

pub mod cache;
pub mod npz;
pub mod teachers;
