//! [`ClipTrainer`]: a CLIP whose parameters live in a `VarMap`, run in training mode, with
//! `logit_scale`, the loss and the optimizer: one [`ClipTrainer::step`] per batch.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

use super::adamw::{AdamW, AdamWParams};
use super::init::{LOGIT_SCALE_INIT, initialize};
use super::loss::{TagLabel, contrastive, tag_classification};
use crate::models::clip::{Clip, Mode};
use crate::models::clip_config::ClipConfig;
use crate::models::{ModelError, ModelResult};

/// AdamW's hyper-parameters.
pub type OptimConfig = AdamWParams;

/// The name transformers gives the temperature parameter.
const LOGIT_SCALE: &str = "logit_scale";

/// open_clip clamps the learned scale at 100 (so `logit_scale` ≤ ln 100).
const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;

/// The tag head's temperature and bias (see [`super::loss::tag_classification`]): trained
/// with the model, saved apart from it (`tag_head.safetensors`), since a CLIP checkpoint has
/// no place for them.
const TAG_SCALE: &str = "tag_logit_scale";
const TAG_BIAS: &str = "tag_logit_bias";

/// The tag scale starts at 10 (SigLIP's start); the bias at 0, since annotations carry
/// about as many negative tags as positive ones.
const TAG_SCALE_INIT: f64 = std::f64::consts::LN_10;

/// Weights of the loss terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// `w` of the hard negative (see [`super::loss`]): 0 is plain CLIP.
    pub hard_negative: f64,
    /// Weight of the short-tag classification term (0 turns it off).
    pub tags: f64,
}

/// One batch, preprocessed: images and tokenized texts, row i a pair.
#[derive(Debug, Clone, Default)]
pub struct TrainBatch {
    /// Normalized pixels, CHW per image, images one after another.
    pub pixels: Vec<f32>,
    /// Token ids of each image's caption.
    pub texts: Vec<Vec<u32>>,
    /// Token ids of each image's negative description, if it has one.
    pub negatives: Vec<Option<Vec<u32>>>,
    /// Token ids of the batch's distinct tags.
    pub tags: Vec<Vec<u32>>,
    /// Which tags are true or false of which image.
    pub tag_labels: Vec<TagLabel>,
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The total loss.
    pub loss: f32,
    /// Image→text cross-entropy.
    pub image_to_text: f32,
    /// Text→image cross-entropy.
    pub text_to_image: f32,
    /// `exp(logit_scale)` after the update.
    pub scale: f32,
    /// Share of images preferring their caption to their negative, if the batch had any.
    pub negative_accuracy: Option<f32>,
    /// The tag term, if the batch had labelled tags.
    pub tag_loss: Option<f32>,
    /// Share of labelled (image, tag) entries decided right, if any.
    pub tag_accuracy: Option<f32>,
}

/// A CLIP being trained.
pub struct ClipTrainer {
    varmap: VarMap,
    head: VarMap,
    model: Clip,
    logit_scale: Var,
    tag_scale: Var,
    tag_bias: Var,
    optimizer: AdamW,
    vision_locked: bool,
    config: ClipConfig,
    device: Device,
}

/// Names of the vision tower's parameters (not its projection).
const VISION_TOWER: &str = "vision_model.";

pub(crate) fn named_vars(map: &VarMap) -> ModelResult<Vec<(String, Var)>> {
    Ok(map
        .data()
        .lock()
        .map_err(|_| ModelError("parameter map lock poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

impl ClipTrainer {
    fn build(config: ClipConfig, params: OptimConfig, device: &Device) -> ModelResult<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = Clip::with_mode(config.clone(), vb, Mode::Training)?;
        varmap.get(
            (),
            LOGIT_SCALE,
            Init::Const(f64::from(LOGIT_SCALE_INIT)),
            DType::F32,
            device,
        )?;
        let head = VarMap::new();
        for (name, init) in [(TAG_SCALE, TAG_SCALE_INIT), (TAG_BIAS, 0.0)] {
            head.get((), name, Init::Const(init), DType::F32, device)?;
        }
        let mut vars = named_vars(&varmap)?;
        vars.extend(named_vars(&head)?);
        let find = |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| ModelError(format!("{name} was not created")))
        };
        let (logit_scale, tag_scale, tag_bias) =
            (find(LOGIT_SCALE)?, find(TAG_SCALE)?, find(TAG_BIAS)?);
        let optimizer = AdamW::new(vars, params)?;
        Ok(ClipTrainer {
            varmap,
            head,
            model,
            logit_scale,
            tag_scale,
            tag_bias,
            optimizer,
            vision_locked: false,
            config,
            device: device.clone(),
        })
    }

    /// A fresh model, initialised as transformers does from `seed`.
    pub fn from_scratch(
        config: ClipConfig,
        seed: u64,
        params: OptimConfig,
        device: &Device,
    ) -> ModelResult<Self> {
        let trainer = Self::build(config, params, device)?;
        initialize(&trainer.varmap, &trainer.config, seed)?;
        Ok(trainer)
    }

    /// Locks the vision tower (LiT, Zhai et al. 2022): from now on its weights stay as they
    /// are and only the visual projection, the text tower and the scales train. Before the
    /// first step or loading an optimizer state, whose slots it replaces.
    pub fn lock_vision(&mut self) -> ModelResult<()> {
        if self.steps() > 0 {
            return Err(ModelError(
                "the vision tower can only be locked before the first step".into(),
            ));
        }
        let mut vars = named_vars(&self.varmap)?;
        vars.retain(|(name, _)| !name.starts_with(VISION_TOWER));
        vars.extend(named_vars(&self.head)?);
        self.optimizer = AdamW::new(vars, self.optimizer.params())?;
        self.vision_locked = true;
        Ok(())
    }

    /// Replaces the vision tower's position embeddings with a 2-D sine-cosine table
    /// ([`super::init::sincos_positions`]); for a fresh model, before the first step.
    pub fn use_sincos_positions(&mut self) -> ModelResult<()> {
        let name = "vision_model.embeddings.position_embedding.weight";
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| ModelError("parameter map lock poisoned".into()))?;
        let var = data
            .get(name)
            .ok_or_else(|| ModelError(format!("no parameter '{name}'")))?;
        let (rows, width) = var.dims2()?;
        let table = super::init::sincos_positions(rows, width)?;
        var.set(&Tensor::from_vec(table, (rows, width), &self.device)?)?;
        Ok(())
    }

    /// A model with weights from a transformers-named safetensors file (any float dtype);
    /// a file without `logit_scale` starts it at ln(1/0.07).
    pub fn from_weights(
        config: ClipConfig,
        weights: &Path,
        params: OptimConfig,
        device: &Device,
    ) -> ModelResult<Self> {
        let trainer = Self::build(config, params, device)?;
        trainer.load_weights(weights)?;
        Ok(trainer)
    }

    /// Overwrites every parameter from `weights`.
    pub fn load_weights(&self, weights: &Path) -> ModelResult<()> {
        self.load_weights_where(weights, |_| true)
    }

    /// A model whose vision tower (`vision_model.*`) comes from `vision_weights` and every
    /// other parameter from `weights`, except the visual projection, which starts afresh
    /// (drawn from `seed`): it mapped another tower's features.
    pub fn with_vision_from(
        config: ClipConfig,
        weights: &Path,
        vision_weights: &Path,
        seed: u64,
        params: OptimConfig,
        device: &Device,
    ) -> ModelResult<Self> {
        let trainer = Self::from_scratch(config, seed, params, device)?;
        trainer.load_weights_where(weights, |name| {
            !name.starts_with(VISION_TOWER) && !name.starts_with("visual_projection.")
        })?;
        trainer.load_weights_where(vision_weights, |name| name.starts_with(VISION_TOWER))?;
        Ok(trainer)
    }

    /// Overwrites the parameters whose names pass `wanted` from `weights`.
    fn load_weights_where(&self, weights: &Path, wanted: impl Fn(&str) -> bool) -> ModelResult<()> {
        let bad = |e: String| ModelError(format!("weights '{}': {e}", weights.display()));
        let tensors = candle_core::safetensors::load(weights, &self.device)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| ModelError("parameter map lock poisoned".into()))?;
        for (name, var) in data.iter().filter(|(name, _)| wanted(name)) {
            match tensors.get(name) {
                Some(t) => {
                    let t = if t.shape() == var.shape() {
                        t.clone()
                    } else if t.elem_count() == 1 && var.elem_count() == 1 {
                        t.reshape(var.shape())?
                    } else {
                        return Err(bad(format!(
                            "'{name}' has shape {:?}, the config needs {:?}",
                            t.shape(),
                            var.shape()
                        )));
                    };
                    var.set(&t.to_dtype(DType::F32)?)?;
                }
                None if name == LOGIT_SCALE => {}
                None => return Err(bad(format!("no tensor '{name}'"))),
            }
        }
        Ok(())
    }

    /// The model's configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Optimizer steps taken (including those of a loaded state).
    pub fn steps(&self) -> u64 {
        self.optimizer.steps()
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// One optimizer step on `batch` at learning rate `lr`.
    pub fn step(
        &mut self,
        batch: &TrainBatch,
        lr: f64,
        weights: LossWeights,
    ) -> ModelResult<StepStats> {
        let n = batch.texts.len();
        let side = self.config.vision_config.image_size;
        if n < 2 || batch.pixels.len() != n * 3 * side * side || batch.negatives.len() != n {
            return Err(ModelError(format!(
                "a training batch needs at least 2 pairs of 3x{side}x{side} pixels, texts and \
                 negative slots (got {n} texts, {} pixel values, {} negative slots)",
                batch.pixels.len(),
                batch.negatives.len()
            )));
        }
        let pixels = Tensor::from_vec(batch.pixels.clone(), (n, 3, side, side), &self.device)?;
        let images = if self.vision_locked {
            self.model.image_features_locked_tower(&pixels)?
        } else {
            self.model.image_features(&pixels)?
        };
        let has: Vec<bool> = batch.negatives.iter().map(Option::is_some).collect();
        let use_negatives = weights.hard_negative > 0.0 && has.iter().any(|&h| h);
        // Captions and negatives share one text forward; rows without a negative repeat
        // their caption there, and the loss masks them out.
        let mut sequences = batch.texts.clone();
        if use_negatives {
            sequences.extend(
                batch
                    .negatives
                    .iter()
                    .zip(&batch.texts)
                    .map(|(neg, txt)| neg.as_ref().unwrap_or(txt).clone()),
            );
        }
        let text_all = self.model.text_features(&sequences)?;
        let texts = text_all.narrow(0, 0, n)?;
        let negatives = if use_negatives {
            Some(text_all.narrow(0, n, n)?)
        } else {
            None
        };
        let loss = contrastive(
            &images,
            &texts,
            negatives.as_ref().map(|t| (t, has.as_slice())),
            weights.hard_negative,
            self.logit_scale.as_tensor(),
        )?;
        let use_tags = weights.tags > 0.0 && !batch.tags.is_empty() && !batch.tag_labels.is_empty();
        let (objective, tag_loss, tag_accuracy) = if use_tags {
            let tag_features = self.model.text_features(&batch.tags)?;
            let tags = tag_classification(
                &images,
                &tag_features,
                &batch.tag_labels,
                self.tag_scale.as_tensor(),
                self.tag_bias.as_tensor(),
            )?;
            let value: f32 = tags.total.to_scalar()?;
            let objective = (&loss.total + (&tags.total * weights.tags)?)?;
            (objective, Some(value), Some(tags.accuracy))
        } else {
            (loss.total.clone(), None, None)
        };
        let total: f32 = objective.to_scalar()?;
        if !total.is_finite() {
            return Err(ModelError(format!(
                "the loss is {total} at step {}: lower the learning rate",
                self.steps() + 1
            )));
        }
        let grads = objective.backward()?;
        self.optimizer.step(&grads, lr)?;
        for scale in [&self.logit_scale, &self.tag_scale] {
            scale.set(&scale.as_tensor().clamp(0.0, MAX_LOGIT_SCALE)?)?;
        }
        let scale = self.logit_scale.as_tensor().exp()?.to_scalar::<f32>()?;
        Ok(StepStats {
            loss: total,
            image_to_text: loss.image_to_text,
            text_to_image: loss.text_to_image,
            scale,
            negative_accuracy: loss.negative_accuracy,
            tag_loss,
            tag_accuracy,
        })
    }

    /// Saves the weights under transformers' names (`model.safetensors`).
    pub fn save_weights(&self, path: &Path) -> ModelResult<()> {
        self.varmap
            .save(path)
            .map_err(|e| ModelError(format!("cannot write weights '{}': {e}", path.display())))
    }

    /// Saves the tag head's parameters.
    pub fn save_head(&self, path: &Path) -> ModelResult<()> {
        self.head
            .save(path)
            .map_err(|e| ModelError(format!("cannot write tag head '{}': {e}", path.display())))
    }

    /// Loads the tag head's parameters saved by [`ClipTrainer::save_head`].
    pub fn load_head(&mut self, path: &Path) -> ModelResult<()> {
        self.head
            .load(path)
            .map_err(|e| ModelError(format!("tag head '{}': {e}", path.display())))
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
