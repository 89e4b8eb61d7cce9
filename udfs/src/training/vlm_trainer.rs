//! [`VlmTrainer`]: the refiner ([`Vlm`]) with its parameters in a `VarMap`, run in training
//! mode, and AdamW: one [`VlmTrainer::step`] per batch of (image, alt-text, task, text).
//!
//! As HQ-CLIP fine-tunes Qwen2-VL on GPT-4o's annotations of a seed set, this fine-tunes the
//! refiner on seed annotations; its vision tower may start from a CLIP checkpoint's
//! (`vision_model.*`), the built-in DFN's for instance, as LLaVA-style models start from CLIP.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::adamw::{AdamW, AdamWParams};
use super::init::initialize_vlm;
use super::trainer::named_vars;
use crate::models::blocks::Mode;
use crate::models::vlm::{Prompt, Vlm};
use crate::models::vlm_config::{Task, VlmConfig};
use crate::models::{ModelError, ModelResult};

/// One batch: images, and sequences to write about them.
#[derive(Debug, Clone, Default)]
pub struct VlmBatch {
    /// Normalized pixels, CHW per image, images one after another.
    pub pixels: Vec<f32>,
    /// One entry per sequence: which image, its alt-text's token ids, the task.
    pub prompts: Vec<(usize, Vec<u32>, Task)>,
    /// The text to write for each prompt, as token ids ending in EOS.
    pub targets: Vec<Vec<u32>>,
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VlmStepStats {
    /// Mean token cross-entropy.
    pub loss: f32,
    /// Share of target tokens ranked first.
    pub token_accuracy: f32,
    /// Target tokens in the batch.
    pub tokens: usize,
}

/// A refiner being trained.
pub struct VlmTrainer {
    varmap: VarMap,
    model: Vlm,
    optimizer: AdamW,
    device: Device,
}

impl VlmTrainer {
    /// A fresh model initialised from `seed`.
    pub fn from_scratch(
        config: VlmConfig,
        seed: u64,
        params: AdamWParams,
        device: &Device,
    ) -> ModelResult<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = Vlm::new(config.clone(), vb, Mode::Training)?;
        initialize_vlm(&varmap, &config, seed)?;
        let optimizer = AdamW::new(named_vars(&varmap)?, params)?;
        Ok(VlmTrainer {
            varmap,
            model,
            optimizer,
            device: device.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VlmConfig {
        self.model.config()
    }

    /// Optimizer steps taken (including those of a loaded state).
    pub fn steps(&self) -> u64 {
        self.optimizer.steps()
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Overwrites the parameters named in `weights` whose names start with `prefix` (all of
    /// them for ""); every such parameter must be there, with its shape. Returns how many
    /// tensors were loaded.
    pub fn load_weights(&self, weights: &Path, prefix: &str) -> ModelResult<usize> {
        let bad = |e: String| ModelError(format!("weights '{}': {e}", weights.display()));
        let tensors = candle_core::safetensors::load(weights, &self.device)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| ModelError("parameter map lock poisoned".into()))?;
        let mut loaded = 0;
        for (name, var) in data.iter().filter(|(n, _)| n.starts_with(prefix)) {
            let t = tensors
                .get(name)
                .ok_or_else(|| bad(format!("no tensor '{name}'")))?;
            if t.shape() != var.shape() {
                return Err(bad(format!(
                    "'{name}' has shape {:?}, the config needs {:?}",
                    t.shape(),
                    var.shape()
                )));
            }
            var.set(&t.to_dtype(DType::F32)?)?;
            loaded += 1;
        }
        Ok(loaded)
    }

    /// One optimizer step on `batch` at learning rate `lr`.
    pub fn step(&mut self, batch: &VlmBatch, lr: f64) -> ModelResult<VlmStepStats> {
        let side = self.config().vision_config.image_size;
        let per_image = 3 * side * side;
        let images = batch.pixels.len() / per_image.max(1);
        if images == 0
            || batch.pixels.len() != images * per_image
            || batch.prompts.len() != batch.targets.len()
            || batch.prompts.iter().any(|(i, _, _)| *i >= images)
        {
            return Err(ModelError(format!(
                "a refiner batch needs whole 3x{side}x{side} images and one target per prompt \
                 naming one of them (got {} pixel values, {} prompts, {} targets)",
                batch.pixels.len(),
                batch.prompts.len(),
                batch.targets.len()
            )));
        }
        let pixels = Tensor::from_vec(batch.pixels.clone(), (images, 3, side, side), &self.device)?;
        let prompts: Vec<Prompt> = batch
            .prompts
            .iter()
            .map(|(image, alt_text, task)| Prompt {
                image: *image,
                alt_text: alt_text.clone(),
                task: *task,
            })
            .collect();
        let out = self.model.loss(&pixels, &prompts, &batch.targets)?;
        let loss: f32 = out.loss.to_scalar()?;
        if !loss.is_finite() {
            return Err(ModelError(format!(
                "the loss is {loss} at step {}: lower the learning rate",
                self.steps() + 1
            )));
        }
        let grads = out.loss.backward()?;
        self.optimizer.step(&grads, lr)?;
        Ok(VlmStepStats {
            loss,
            token_accuracy: out.token_accuracy,
            tokens: out.tokens,
        })
    }

    /// Saves the weights (`model.safetensors`).
    pub fn save_weights(&self, path: &Path) -> ModelResult<()> {
        self.varmap
            .save(path)
            .map_err(|e| ModelError(format!("cannot write weights '{}': {e}", path.display())))
    }

    /// Saves the optimizer's state.
    pub fn save_optimizer(&self, path: &Path) -> ModelResult<()> {
        self.optimizer.save(path)
    }

    /// Loads the optimizer's state.
    pub fn load_optimizer(&mut self, path: &Path) -> ModelResult<()> {
        self.optimizer.load(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the refiner must learn, in miniature: to copy what the alt-text says (long_pos:
    /// the alt-text's tokens) and to name what the image shows (short_pos: a token that only
    /// the image's color decides). Both reach the decoder only through the prefix, so a
    /// broken mask, position or image path shows as a loss that stays at chance.
    #[test]
    fn learns_to_copy_the_alt_text_and_name_the_image() {
        let mut trainer = VlmTrainer::from_scratch(
            crate::models::vlm_config::tiny_config(32),
            1,
            AdamWParams {
                beta1: 0.9,
                beta2: 0.98,
                eps: 1e-6,
                weight_decay: 0.0,
            },
            &Device::Cpu,
        )
        .expect("trainer");
        let mut state = 7u64;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % n
        };
        let mut last = [0f32; 2];
        for step in 0..400 {
            let task = if step % 2 == 0 {
                Task::LongPos
            } else {
                Task::ShortPos
            };
            let mut batch = VlmBatch::default();
            for i in 0..16 {
                let color = next(3) as usize;
                let mut pixels = vec![-1f32; 3 * 8 * 8];
                pixels[color * 64..(color + 1) * 64].fill(1.0);
                batch.pixels.extend(pixels);
                let alt: Vec<u32> = (0..3).map(|_| 2 + next(6) as u32).collect();
                let target = match task {
                    Task::LongPos => alt.iter().copied().chain([1]).collect(),
                    _ => vec![8 + color as u32, 1],
                };
                let mut prompt = vec![0];
                prompt.extend(&alt);
                prompt.push(1);
                batch.prompts.push((i, prompt, task));
                batch.targets.push(target);
            }
            let stats = trainer.step(&batch, 3e-3).expect("step");
            if step >= 380 {
                last[step % 2] += stats.token_accuracy / 10.0;
            }
        }
        assert!(
            last[0] > 0.9,
            "alt-text not copied: token accuracy {}",
            last[0]
        );
        assert!(last[1] > 0.9, "image not named: token accuracy {}", last[1]);
    }
}
