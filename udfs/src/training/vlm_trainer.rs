//! [`VlmTrainer`]: the refiner ([`Vlm`]) with its parameters in a `VarMap`, run in training
//! mode, and AdamW: one [`VlmTrainer::step`] per batch of (image, alt-text, task, text).
//!
//! As HQ-CLIP fine-tunes Qwen2-VL on GPT-4o's annotations of a seed set, this fine-tunes the
//! refiner on seed annotations; its vision tower may start from a CLIP checkpoint's
//! (`vision_model.*`), the built-in DFN's for instance, as LLaVA-style models start from CLIP.
//!
//! Optionally a tagging head on the tower's class token trains alongside (Tag2Text's
//! auxiliary image-tagging task): a multi-label logistic regression over a tag vocabulary,
//! on images of their own each step. Learning to see through the decoder's text loss alone
//! is slow; a direct label per image teaches the tower what the tags name much faster. The
//! head is part of the refiner (`VlmConfig::tagger`), which may use it to write its tags.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::adamw::{AdamW, AdamWParams};
use super::init::initialize_vlm;
use super::loss::bce_with_logits;
use super::trainer::named_vars;
use crate::models::blocks::Mode;
use crate::models::vlm::{LossOutput, Prompt, Vlm};
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
    /// Images for the tagging head (normalized CHW, one after another); none to skip it.
    pub tag_pixels: Vec<f32>,
    /// Their tags: one 0/1 value per image and vocabulary tag, image after image.
    pub tag_targets: Vec<f32>,
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
    /// The tagging head's binary cross-entropy, summed over tags, mean over images (0
    /// without tag images).
    pub tag_loss: f32,
    /// F1 of the tags the head predicts (logit > 0) on the batch's tag images.
    pub tag_f1: f32,
}

/// Binary cross-entropy of tag `logits` [images, tags] against 0/1 `targets` (summed over
/// tags, mean over images), and the F1 of the tags predicted (logit > 0).
fn tag_loss(logits: &Tensor, targets: &Tensor) -> ModelResult<(Tensor, f32)> {
    let loss = bce_with_logits(logits, targets)?.sum(1)?.mean_all()?;
    let predicted = logits.gt(0f32)?.to_dtype(DType::F32)?;
    let hits: f32 = (&predicted * targets)?.sum_all()?.to_scalar()?;
    let total: f32 = (predicted.sum_all()? + targets.sum_all()?)?.to_scalar()?;
    let f1 = if total > 0.0 { 2.0 * hits / total } else { 1.0 };
    Ok((loss, f1))
}

/// A refiner being trained.
pub struct VlmTrainer {
    varmap: VarMap,
    model: Vlm,
    /// How much the tagging head's loss counts against the texts' (0: not trained).
    tag_weight: f64,
    optimizer: AdamW,
    device: Device,
}

impl VlmTrainer {
    /// A fresh model initialised from `seed`; its tagging head (if the config has one) is
    /// not trained.
    pub fn from_scratch(
        config: VlmConfig,
        seed: u64,
        params: AdamWParams,
        device: &Device,
    ) -> ModelResult<Self> {
        Self::with_tag_weight(config, seed, params, device, 0.0)
    }

    /// A fresh model initialised from `seed`, whose tagging head (the config's) trains with
    /// its loss counting `tag_weight` times the texts'.
    pub fn with_tag_weight(
        config: VlmConfig,
        seed: u64,
        params: AdamWParams,
        device: &Device,
        tag_weight: f64,
    ) -> ModelResult<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = Vlm::new(config.clone(), vb, Mode::Training)?;
        initialize_vlm(&varmap, &config, seed)?;
        let optimizer = AdamW::new(named_vars(&varmap)?, params)?;
        Ok(VlmTrainer {
            varmap,
            model,
            tag_weight: if config.tagger.is_some() {
                tag_weight.max(0.0)
            } else {
                0.0
            },
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
        // No prompts: a step of the tagging head (and the tower) alone.
        let texts = !batch.prompts.is_empty();
        if (texts && images == 0)
            || (!texts && (self.tag_weight <= 0.0 || batch.tag_pixels.is_empty()))
            || batch.pixels.len() != images * per_image
            || batch.prompts.len() != batch.targets.len()
            || batch.prompts.iter().any(|(i, _, _)| *i >= images)
        {
            return Err(ModelError(format!(
                "a refiner batch needs whole 3x{side}x{side} images and one target per prompt \
                 naming one of them, or tag images for a tagging head (got {} pixel values, {} \
                 prompts, {} targets, {} tag pixel values)",
                batch.pixels.len(),
                batch.prompts.len(),
                batch.targets.len(),
                batch.tag_pixels.len()
            )));
        }
        let out = if texts {
            let pixels =
                Tensor::from_vec(batch.pixels.clone(), (images, 3, side, side), &self.device)?;
            let prompts: Vec<Prompt> = batch
                .prompts
                .iter()
                .map(|(image, alt_text, task)| Prompt {
                    image: *image,
                    alt_text: alt_text.clone(),
                    task: *task,
                })
                .collect();
            self.model.loss(&pixels, &prompts, &batch.targets)?
        } else {
            LossOutput {
                loss: Tensor::zeros((), DType::F32, &self.device)?,
                token_accuracy: 0.0,
                tokens: 0,
            }
        };
        let loss: f32 = out.loss.to_scalar()?;
        let mut total = out.loss;
        let (mut tag_loss_value, mut tag_f1) = (0f32, 0f32);
        let tags = self.config().tagger.as_ref().map_or(0, |t| t.tags.len());
        if self.tag_weight > 0.0 && !batch.tag_pixels.is_empty() {
            let n = batch.tag_pixels.len() / per_image;
            if batch.tag_pixels.len() != n * per_image || batch.tag_targets.len() != n * tags {
                return Err(ModelError(format!(
                    "tag images need whole 3x{side}x{side} images and {tags} targets each \
                     (got {} pixel values, {} targets)",
                    batch.tag_pixels.len(),
                    batch.tag_targets.len()
                )));
            }
            let tag_pixels =
                Tensor::from_vec(batch.tag_pixels.clone(), (n, 3, side, side), &self.device)?;
            let targets = Tensor::from_vec(batch.tag_targets.clone(), (n, tags), &self.device)?;
            let logits = self
                .model
                .tag_logits(&self.model.see(&tag_pixels)?)?
                .ok_or_else(|| ModelError("the refiner has no tagging head".into()))?;
            let (head_loss, f1) = tag_loss(&logits, &targets)?;
            tag_loss_value = head_loss.to_scalar()?;
            tag_f1 = f1;
            total = (total + (head_loss * self.tag_weight)?)?;
        }
        if !loss.is_finite() || !tag_loss_value.is_finite() {
            return Err(ModelError(format!(
                "the loss is {loss} (tags {tag_loss_value}) at step {}: lower the learning rate",
                self.steps() + 1
            )));
        }
        let grads = total.backward()?;
        self.optimizer.step(&grads, lr)?;
        Ok(VlmStepStats {
            loss,
            token_accuracy: out.token_accuracy,
            tokens: out.tokens,
            tag_loss: tag_loss_value,
            tag_f1,
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

    /// Deterministic draws below `n`, from `seed`.
    fn draws(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut state = seed;
        move |n| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % n
        }
    }

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
        let mut next = draws(7);
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

    /// The tagging head learns which of three colors each image is, alongside a text task,
    /// and is saved with the model.
    #[test]
    fn tagging_head_learns_the_images_tags() {
        let params = AdamWParams {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.0,
        };
        let mut config = crate::models::vlm_config::tiny_config(32);
        config.tagger = Some(crate::models::vlm_config::TaggerConfig {
            tags: ["red", "green", "blue"].map(String::from).to_vec(),
            threshold: 0.5,
            writes_short_pos: true,
        });
        let mut trainer = VlmTrainer::with_tag_weight(config.clone(), 1, params, &Device::Cpu, 1.0)
            .expect("trainer");
        let mut next = draws(11);
        let image = |color: usize| {
            let mut pixels = vec![-1f32; 3 * 8 * 8];
            pixels[color * 64..(color + 1) * 64].fill(1.0);
            pixels
        };
        let mut f1 = 0f32;
        for step in 0..150 {
            let mut batch = VlmBatch::default();
            batch.pixels.extend(image(0));
            batch.prompts.push((0, vec![0, 1], Task::LongPos));
            batch.targets.push(vec![5, 1]);
            for _ in 0..16 {
                let color = next(3) as usize;
                batch.tag_pixels.extend(image(color));
                batch
                    .tag_targets
                    .extend((0..3).map(|t| if t == color { 1.0 } else { 0.0 }));
            }
            let stats = trainer.step(&batch, 3e-3).expect("step");
            if step >= 140 {
                f1 += stats.tag_f1 / 10.0;
            }
        }
        assert!(f1 > 0.95, "tags not learned: F1 {f1}");

        // The head is part of the model: its weights are saved with the rest.
        let dir = std::env::temp_dir().join(format!("hqflow-tagger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("model.safetensors");
        trainer.save_weights(&path).expect("save");
        let saved = candle_core::safetensors::load(&path, &Device::Cpu).expect("load");
        assert_eq!(saved["tagger.weight"].dims(), [3, 32]);
        let other = VlmTrainer::from_scratch(config, 2, params, &Device::Cpu).expect("trainer");
        assert_eq!(other.load_weights(&path, "tagger.").expect("load"), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
