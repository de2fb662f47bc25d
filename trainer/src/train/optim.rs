//! Optimisers: AdamW, Adam and SGD (momentum, Nesterov), written on tch tensors.
//!
//! tch's own optimisers keep their moments inside libtorch where they cannot be saved, so a
//! resumed run would restart Adam's moments. These implementations keep every piece of state as
//! named tensors ([`Optimizer::state_tensors`]) that go into the checkpoint, which makes a resumed
//! run continue exactly where the interrupted one stopped.
//!
//! The update rules are PyTorch's (`torch.optim.Adam`, `AdamW`, `SGD` with `dampening = 0`);
//! the unit tests check them step by step against tch's libtorch optimisers.
//!
//! **Weight decay** applies to parameters of two or more dimensions (convolution and linear
//! kernels) only: decaying biases and normalisation scales hurts small networks and is the usual
//! exclusion.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

/// Which optimiser and its hyper-parameters (the learning rate comes from the schedule).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerSpec {
    /// Adam with decoupled weight decay (Loshchilov & Hutter): `p -= lr * wd * p` before the step.
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator epsilon.
        eps: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
    /// Adam with L2 weight decay added to the gradient.
    Adam {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator epsilon.
        eps: f64,
        /// L2 weight decay (added to the gradient).
        weight_decay: f64,
    },
    /// Stochastic gradient descent with optional (Nesterov) momentum.
    Sgd {
        /// Momentum factor (0 = plain SGD).
        momentum: f64,
        /// Nesterov momentum (requires `momentum > 0`).
        nesterov: bool,
        /// L2 weight decay (added to the gradient).
        weight_decay: f64,
    },
}

impl OptimizerSpec {
    /// AdamW with PyTorch's defaults and weight decay 0.01.
    pub fn adamw() -> Self {
        OptimizerSpec::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }

    /// Range checks; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let (wd, betas) = match *self {
            OptimizerSpec::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                if eps <= 0.0 || !eps.is_finite() {
                    bail!("optimizer.eps: must be > 0, got {eps}");
                }
                (weight_decay, Some((beta1, beta2)))
            }
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    bail!("optimizer.momentum: must be in [0, 1), got {momentum}");
                }
                if nesterov && momentum == 0.0 {
                    bail!("optimizer.nesterov: needs momentum > 0");
                }
                (weight_decay, None)
            }
        };
        if !(0.0..1.0).contains(&wd) {
            bail!("optimizer.weight_decay: must be in [0, 1), got {wd}");
        }
        if let Some((b1, b2)) = betas {
            for (k, b) in [("beta1", b1), ("beta2", b2)] {
                if !(0.0..1.0).contains(&b) {
                    bail!("optimizer.{k}: must be in [0, 1), got {b}");
                }
            }
        }
        Ok(())
    }
}

/// Per-parameter state.
#[derive(Default)]
struct ParamState {
    /// Steps taken on this parameter (Adam bias correction).
    step: i64,
    /// Adam's first moment, or SGD's momentum buffer.
    m: Option<Tensor>,
    /// Adam's second moment.
    v: Option<Tensor>,
}

/// An optimiser over a fixed list of named parameters.
pub struct Optimizer {
    spec: OptimizerSpec,
    params: Vec<(String, Tensor)>,
    state: BTreeMap<String, ParamState>,
}

impl Optimizer {
    /// An optimiser updating `params` (name, variable); the tensors are shallow clones of the
    /// var-store's variables, so updates land in the model.
    pub fn new(spec: OptimizerSpec, params: Vec<(String, Tensor)>) -> Result<Optimizer> {
        spec.validate()?;
        Ok(Optimizer {
            spec,
            params,
            state: BTreeMap::new(),
        })
    }

    /// Names of the optimised parameters.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Global L2 norm of all gradients (as if concatenated); 0 when none is defined.
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| {
            let mut sq = 0.0f64;
            for (_, p) in &self.params {
                let g = p.grad();
                if g.defined() {
                    sq += g
                        .to_kind(Kind::Double)
                        .square()
                        .sum(Kind::Double)
                        .double_value(&[]);
                }
            }
            sq.sqrt()
        })
    }

    /// Multiplies every gradient by `factor` (unscaling mixed-precision gradients, clipping).
    pub fn scale_grads(&self, factor: f64) {
        tch::no_grad(|| {
            for (_, p) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(factor);
                }
            }
        })
    }

    /// Clips the gradients' global norm to `max` (PyTorch's `clip_grad_norm_`); returns the norm
    /// before clipping.
    pub fn clip_grad_norm(&self, max: f64) -> f64 {
        let norm = self.grad_norm();
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            self.scale_grads(coef);
        }
        norm
    }

    /// One update with learning rate `lr`; parameters without a gradient are skipped.
    pub fn step(&mut self, lr: f64) {
        let spec = self.spec.clone();
        tch::no_grad(|| {
            for (name, p) in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let st = self.state.entry(name.clone()).or_default();
                st.step += 1;
                let decays = p.dim() >= 2;
                match spec {
                    OptimizerSpec::AdamW {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    } => {
                        if decays && weight_decay > 0.0 {
                            let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
                        }
                        adam_update(p, &g, st, lr, beta1, beta2, eps);
                    }
                    OptimizerSpec::Adam {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    } => {
                        let g = if decays && weight_decay > 0.0 {
                            &g + &*p * weight_decay
                        } else {
                            g
                        };
                        adam_update(p, &g, st, lr, beta1, beta2, eps);
                    }
                    OptimizerSpec::Sgd {
                        momentum,
                        nesterov,
                        weight_decay,
                    } => {
                        let mut g = if decays && weight_decay > 0.0 {
                            &g + &*p * weight_decay
                        } else {
                            g
                        };
                        if momentum > 0.0 {
                            let buf = match st.m.take() {
                                None => g.detach().copy(),
                                Some(b) => b * momentum + &g,
                            };
                            g = if nesterov {
                                &g + &buf * momentum
                            } else {
                                buf.copy()
                            };
                            st.m = Some(buf);
                        }
                        let _ = p.g_sub_(&(g * lr));
                    }
                }
            }
        })
    }

    /// Every piece of state as named tensors: `<param>/step` (int64 scalar), `<param>/m`,
    /// `<param>/v` (where they exist).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, st) in &self.state {
            out.push((format!("{name}/step"), Tensor::from(st.step)));
            if let Some(m) = &st.m {
                out.push((format!("{name}/m"), m.shallow_clone()));
            }
            if let Some(v) = &st.v {
                out.push((format!("{name}/v"), v.shallow_clone()));
            }
        }
        out
    }

    /// Restores state written by [`Optimizer::state_tensors`]; every entry must name an optimised
    /// parameter and match its shape.
    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let mut state: BTreeMap<String, ParamState> = BTreeMap::new();
        for (key, t) in tensors {
            let Some((name, field)) = key.rsplit_once('/') else {
                bail!("optimizer state: malformed entry name {key:?}");
            };
            let Some((_, p)) = self.params.iter().find(|(n, _)| n == name) else {
                bail!("optimizer state: {key:?} names no optimised parameter");
            };
            let st = state.entry(name.to_string()).or_default();
            match field {
                "step" => st.step = t.int64_value(&[]),
                "m" | "v" => {
                    if t.size() != p.size() {
                        bail!(
                            "optimizer state: {key:?} has shape {:?}, the parameter {:?}",
                            t.size(),
                            p.size()
                        );
                    }
                    let t = t.to_device(p.device()).to_kind(p.kind());
                    if field == "m" {
                        st.m = Some(t);
                    } else {
                        st.v = Some(t);
                    }
                }
                _ => bail!("optimizer state: unknown field in {key:?}"),
            }
        }
        self.state = state;
        Ok(())
    }
}

/// PyTorch's Adam step on `p` with gradient `g` (weight decay already applied by the caller).
fn adam_update(
    p: &mut Tensor,
    g: &Tensor,
    st: &mut ParamState,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
) {
    let m = match st.m.take() {
        None => g * (1.0 - beta1),
        Some(m) => m * beta1 + g * (1.0 - beta1),
    };
    let v = match st.v.take() {
        None => g.square() * (1.0 - beta2),
        Some(v) => v * beta2 + g.square() * (1.0 - beta2),
    };
    let t = st.step as i32;
    let bc1 = 1.0 - beta1.powi(t);
    let bc2 = 1.0 - beta2.powi(t);
    let denom = v.sqrt() / bc2.sqrt() + eps;
    let _ = p.g_sub_(&(&m / denom * (lr / bc1)));
    st.m = Some(m);
    st.v = Some(v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::Device;

    /// Trains the same bias-free linear layer with ours and with tch's libtorch optimiser; the
    /// weights must agree after every step.
    fn compare(ours: OptimizerSpec, theirs: impl OptimizerConfig, lr: f64) {
        tch::manual_seed(7);
        let x = Tensor::randn([16, 5], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([16, 3], (Kind::Float, Device::Cpu));
        let cfg = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let vs_a = nn::VarStore::new(Device::Cpu);
        let lin_a = nn::linear(vs_a.root() / "l", 5, 3, cfg);
        let mut vs_b = nn::VarStore::new(Device::Cpu);
        let lin_b = nn::linear(vs_b.root() / "l", 5, 3, cfg);
        vs_b.copy(&vs_a).unwrap();
        let mut opt_a = Optimizer::new(ours, vs_a.variables().into_iter().collect()).unwrap();
        let mut opt_b = theirs.build(&vs_b, lr).unwrap();
        for step in 0..6 {
            opt_a.zero_grad();
            let loss = (lin_a.forward(&x) - &y).square().mean(Kind::Float);
            loss.backward();
            opt_a.step(lr);
            let loss_b = (lin_b.forward(&x) - &y).square().mean(Kind::Float);
            opt_b.backward_step(&loss_b);
            let diff = (&lin_a.ws - &lin_b.ws).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "step {step}: max weight difference {diff}");
        }
        // Different weights than at the start: the comparison was not of two idle optimisers.
        assert!(opt_a.grad_norm() > 0.0);
    }

    #[test]
    fn adam_matches_libtorch() {
        compare(
            OptimizerSpec::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.05,
            },
            nn::adam(0.9, 0.999, 0.05),
            0.01,
        );
    }

    #[test]
    fn adamw_matches_libtorch() {
        compare(
            OptimizerSpec::AdamW {
                beta1: 0.8,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            nn::adamw(0.8, 0.99, 0.1),
            0.01,
        );
    }

    #[test]
    fn sgd_nesterov_and_plain_momentum_match_libtorch() {
        for nesterov in [false, true] {
            compare(
                OptimizerSpec::Sgd {
                    momentum: 0.9,
                    nesterov,
                    weight_decay: 0.01,
                },
                nn::sgd(0.9, 0.0, 0.01, nesterov),
                0.05,
            );
        }
    }

    #[test]
    fn clipping_scales_the_global_norm_to_the_maximum() {
        let p = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let q = Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        // grads (3, 0) and (4): global norm 5.
        let loss = (&p * Tensor::from_slice(&[3.0f32, 0.0])).sum(Kind::Float)
            + (&q * 4.0).sum(Kind::Float);
        loss.backward();
        let opt = Optimizer::new(
            OptimizerSpec::Sgd {
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            vec![
                ("p".into(), p.shallow_clone()),
                ("q".into(), q.shallow_clone()),
            ],
        )
        .unwrap();
        assert!((opt.clip_grad_norm(1.0) - 5.0).abs() < 1e-9);
        assert!((opt.grad_norm() - 1.0).abs() < 1e-5);
        assert!((q.grad().double_value(&[0]) - 0.8).abs() < 1e-5);
    }

    #[test]
    fn state_round_trips_and_rejects_foreign_entries() {
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "l", 2, 2, Default::default());
        let params: Vec<_> = vs.variables().into_iter().collect();
        let shallow = |ps: &[(String, Tensor)]| {
            ps.iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect::<Vec<_>>()
        };
        let mut opt = Optimizer::new(OptimizerSpec::adamw(), shallow(&params)).unwrap();
        lin.forward(&Tensor::ones([1, 2], (Kind::Float, Device::Cpu)))
            .sum(Kind::Float)
            .backward();
        opt.step(0.1);
        let saved = opt.state_tensors();
        assert_eq!(saved.len(), 6); // weight and bias: step, m, v
        let mut other = Optimizer::new(OptimizerSpec::adamw(), params).unwrap();
        other.load_state(saved).unwrap();
        assert_eq!(other.state["l.weight"].step, 1);
        let e = other
            .load_state(vec![("nope/step".into(), Tensor::from(1i64))])
            .unwrap_err();
        assert!(e.to_string().contains("nope/step"), "{e}");
    }
}
