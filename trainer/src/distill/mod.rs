//! Knowledge distillation: the teacher / distilled / scratch comparison ([`compare`]).

pub mod compare;
