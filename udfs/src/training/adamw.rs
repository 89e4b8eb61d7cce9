//! AdamW (Loshchilov & Hutter) as PyTorch's `torch.optim.AdamW` computes it, with decoupled
//! weight decay applied only to matrices (open_clip's rule: gains, biases, the class token and
//! `logit_scale` are not decayed), and state that can be saved and loaded, so that a resumed
//! run continues exactly.
//!
//! candle-nn's own `AdamW` keeps its moments private, hence this small copy.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use crate::models::{ModelError, ModelResult};

/// AdamW's hyper-parameters (the learning rate is given at each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the second moment's square root.
    pub eps: f64,
    /// Decoupled weight decay, for matrices only.
    pub weight_decay: f64,
}

struct Slot {
    name: String,
    var: Var,
    m: Var,
    v: Var,
    decay: bool,
}

/// The optimizer over a fixed, named set of variables.
pub struct AdamW {
    slots: Vec<Slot>,
    params: AdamWParams,
    step: u64,
}

impl AdamW {
    /// An optimizer for `vars` (name, variable), sorted by name for a stable order.
    pub fn new(mut vars: Vec<(String, Var)>, params: AdamWParams) -> ModelResult<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = || Var::zeros(var.shape(), var.dtype(), var.device());
                Ok(Slot {
                    decay: var.rank() >= 2,
                    m: zeros()?,
                    v: zeros()?,
                    name,
                    var,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW {
            slots,
            params,
            step: 0,
        })
    }

    /// The hyper-parameters it was made with.
    pub fn params(&self) -> AdamWParams {
        self.params
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> ModelResult<()> {
        self.step += 1;
        let AdamWParams {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.params;
        let t = i32::try_from(self.step).unwrap_or(i32::MAX);
        let bias1 = 1.0 - beta1.powi(t);
        let bias2 = 1.0 - beta2.powi(t);
        for slot in &self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let m = ((slot.m.as_tensor() * beta1)? + (g * (1.0 - beta1))?)?;
            let v = ((slot.v.as_tensor() * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let theta = if slot.decay {
                (slot.var.as_tensor() * (1.0 - lr * weight_decay))?
            } else {
                slot.var.as_tensor().clone()
            };
            let denom = ((&v / bias2)?.sqrt()? + eps)?;
            let update = ((&m / bias1)? / denom)?;
            let theta = (theta - (update * lr)?)?;
            slot.m.set(&m)?;
            slot.v.set(&v)?;
            slot.var.set(&theta)?;
        }
        Ok(())
    }

    /// Saves the moments (`m.NAME`, `v.NAME`) and the step count to a safetensors file.
    pub fn save(&self, path: &Path) -> ModelResult<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for slot in &self.slots {
            tensors.insert(format!("m.{}", slot.name), slot.m.as_tensor().clone());
            tensors.insert(format!("v.{}", slot.name), slot.v.as_tensor().clone());
        }
        // The step as two u32 halves: exact, and every safetensors reader has u32.
        let step = [(self.step >> 32) as u32, self.step as u32];
        tensors.insert("step".into(), Tensor::new(&step, &Device::Cpu)?);
        candle_core::safetensors::save(&tensors, path).map_err(|e| {
            ModelError(format!(
                "cannot write optimizer state '{}': {e}",
                path.display()
            ))
        })
    }

    /// Loads state written by [`AdamW::save`] for the same variables.
    pub fn load(&mut self, path: &Path) -> ModelResult<()> {
        let bad =
            |what: String| ModelError(format!("optimizer state '{}': {what}", path.display()));
        let device = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(Device::Cpu);
        let tensors = candle_core::safetensors::load(path, &device)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        for slot in &self.slots {
            for (kind, target) in [("m", &slot.m), ("v", &slot.v)] {
                let key = format!("{kind}.{}", slot.name);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| bad(format!("no tensor '{key}'")))?;
                if t.shape() != target.shape() {
                    return Err(bad(format!(
                        "'{key}' has shape {:?}, the model needs {:?}",
                        t.shape(),
                        target.shape()
                    )));
                }
                target.set(&t.to_dtype(target.dtype())?)?;
            }
        }
        let step = tensors
            .get("step")
            .ok_or_else(|| bad("no 'step'".into()))?
            .to_vec1::<u32>()
            .map_err(|e| bad(format!("bad 'step': {e}")))?;
        match step.as_slice() {
            [hi, lo] => self.step = (u64::from(*hi) << 32) | u64::from(*lo),
            _ => return Err(bad("bad 'step'".into())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_adamw_on_one_step() {
        // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
        // with p = [[1, -2]] and grad [[0.5, 0.25]].
        let var = Var::new(&[[1f32, -2.0]], &Device::Cpu).expect("var");
        let params = AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(vec![("p".into(), var.clone())], params).expect("opt");
        let loss = (var.as_tensor() * &Tensor::new(&[[0.5f32, 0.25]], &Device::Cpu).expect("t"))
            .and_then(|x| x.sum_all())
            .expect("loss");
        opt.step(&loss.backward().expect("grads"), 0.1)
            .expect("step");
        let got = var.as_tensor().to_vec2::<f32>().expect("values");
        // First step: m̂/√v̂ = sign(g) = 1 → p·0.99 − 0.1.
        let want = [1.0 * 0.99 - 0.1, -2.0 * 0.99 - 0.1];
        for (g, w) in got[0].iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }
}
