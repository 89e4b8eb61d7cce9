//! Loading a CLIP checkpoint directory in Hugging Face layout: `config.json`,
//! `model.safetensors` (memory-mapped, any float dtype, computed in f32), `tokenizer.json`,
//! `preprocessor_config.json`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::clip::{Clip, Mode};
use super::clip_config::ClipConfig;
use super::image_decode::DecodeError;
use super::preprocess::Preprocessor;
use super::tokenizer::ClipTokenizer;
use super::{ModelError, ModelResult};

/// A loaded CLIP checkpoint: model, tokenizer and preprocessing, ready to embed.
pub struct ClipCheckpoint {
    /// The model.
    pub model: Clip,
    /// Its tokenizer.
    pub tokenizer: ClipTokenizer,
    /// Its image preprocessing.
    pub preprocessor: Preprocessor,
    /// Where it was loaded from.
    pub dir: PathBuf,
}

pub(crate) fn read(dir: &Path, name: &str) -> ModelResult<String> {
    std::fs::read_to_string(dir.join(name)).map_err(|e| {
        ModelError(format!(
            "checkpoint '{}': cannot read {name}: {e}",
            dir.display()
        ))
    })
}

/// Memory-maps the weights.
#[allow(unsafe_code)]
pub(crate) fn mmap_weights(path: &Path, device: &Device) -> ModelResult<VarBuilder<'static>> {
    // SAFETY: the mapping is read-only and hqflow never writes checkpoint files; as with
    // every mmap-based loader (safetensors, transformers), a file truncated by another
    // process while mapped is outside what we can defend against.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
        .map_err(|e| ModelError(format!("cannot load weights '{}': {e}", path.display())))
}

impl ClipCheckpoint {
    /// Loads the checkpoint in `dir` onto `device`, to compute in f32.
    pub fn load(dir: &Path, device: &Device) -> ModelResult<Self> {
        Self::load_in(dir, device, Mode::Inference)
    }

    /// Loads the checkpoint in `dir` onto `device`, to run in `mode` (an inference mode).
    pub fn load_in(dir: &Path, device: &Device, mode: Mode) -> ModelResult<Self> {
        let config: ClipConfig = serde_json::from_str(&read(dir, "config.json")?).map_err(|e| {
            ModelError(format!(
                "checkpoint '{}': config.json is not a CLIPModel config: {e}",
                dir.display()
            ))
        })?;
        let preprocessor = Preprocessor::from_json(&read(dir, "preprocessor_config.json")?)
            .map_err(|e| ModelError(format!("checkpoint '{}': {e}", dir.display())))?;
        let tokenizer = ClipTokenizer::from_file(
            &dir.join("tokenizer.json"),
            config.text_config.max_position_embeddings,
        )?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(ModelError(format!(
                "checkpoint '{}' has no model.safetensors (convert .bin or open_clip weights first)",
                dir.display()
            )));
        }
        let vb = mmap_weights(&weights, device)?;
        let model = Clip::with_mode(config, vb, mode)
            .map_err(|e| ModelError(format!("checkpoint '{}': {e}", dir.display())))?;
        Ok(ClipCheckpoint {
            model,
            tokenizer,
            preprocessor,
            dir: dir.to_path_buf(),
        })
    }

    /// The input side the vision tower expects.
    pub fn image_size(&self) -> usize {
        self.model.config().vision_config.image_size
    }

    /// Token ids for each text.
    pub fn tokenize(&self, texts: &[&str]) -> ModelResult<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.tokenizer.encode(t)).collect()
    }

    /// L2-normalized text embeddings.
    pub fn embed_texts(&self, texts: &[&str]) -> ModelResult<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.model.embed_text(&self.tokenize(texts)?)
    }

    /// The model's input for encoded image bytes: decoded, resized and cropped, as 8-bit CHW
    /// planes (rescaling and normalizing happen on the device, in [`Self::embed_image_inputs`]).
    pub fn image_input(&self, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        self.preprocessor.crop_bytes(bytes)
    }

    /// Fully preprocessed pixels (CHW f32) for encoded image bytes, computed on the CPU: what
    /// the model reads, for comparing with a reference implementation's.
    pub fn pixels(&self, bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
        self.preprocessor.process_bytes(bytes)
    }

    /// Images (each CHW at the model's size) as one [batch, 3, side, side] tensor on the
    /// model's device.
    fn batch_tensor<T: candle_core::WithDType>(&self, images: &[Vec<T>]) -> ModelResult<Tensor> {
        let shape = self.batch_shape(images)?;
        Ok(Tensor::from_vec(
            images.concat(),
            shape,
            self.model.device(),
        )?)
    }

    /// The shape of a batch of `images` (each CHW at the model's size), checked.
    fn batch_shape<T>(&self, images: &[Vec<T>]) -> ModelResult<(usize, usize, usize, usize)> {
        let side = self.image_size();
        let expected = 3 * side * side;
        if let Some(bad) = images.iter().find(|i| i.len() != expected) {
            return Err(ModelError(format!(
                "preprocessing gives {} values per image but the vision tower needs \
                 3x{side}x{side}; preprocessor_config.json and config.json disagree",
                bad.len()
            )));
        }
        Ok((images.len(), 3, side, side))
    }

    /// L2-normalized embeddings of images given as [`Self::image_input`] makes them. On the
    /// CPU each image is normalized straight into the batch's buffer; the tensor steps
    /// (to f32, scale, − mean, ÷ std) made four batch-sized buffers, and each forward thread
    /// held up to three of them at once. A GPU gets the 8-bit batch (a quarter of the bytes
    /// to copy) and normalizes it there. Both are the same f32 operations.
    pub fn embed_image_inputs(&self, images: &[Vec<u8>]) -> ModelResult<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let device = self.model.device();
        let pixels = if device.is_cpu() {
            let shape = self.batch_shape(images)?;
            let mut values = Vec::with_capacity(shape.0 * shape.1 * shape.2 * shape.3);
            for image in images {
                self.preprocessor.normalize_planes_into(image, &mut values);
            }
            Tensor::from_vec(values, shape, device)?
        } else {
            self.preprocessor
                .normalize_tensor(&self.batch_tensor(images)?)?
        };
        self.model.embed_images(&pixels)
    }

    /// L2-normalized embeddings of preprocessed images (each CHW f32, the model's size).
    pub fn embed_pixels(&self, images: &[Vec<f32>]) -> ModelResult<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        self.model.embed_images(&self.batch_tensor(images)?)
    }
}
