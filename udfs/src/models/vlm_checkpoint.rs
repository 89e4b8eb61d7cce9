//! Loading a refiner checkpoint directory (`config.json` with `"model_type": "hqflow_vlm"`,
//! `model.safetensors`, `tokenizer.json`, `preprocessor_config.json`) and writing HQ-CLIP's
//! four texts for a batch of images with their alt-texts.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::blocks::Mode;
use super::checkpoint::{mmap_weights, read};
use super::image_decode::DecodeError;
use super::openai_chat::Refinement;
use super::preprocess::Preprocessor;
use super::tokenizer::ClipTokenizer;
use super::vlm::{Prompt, Vlm};
use super::vlm_config::{TAG_SEPARATOR, Task, VlmConfig};
use super::{ModelError, ModelResult};

/// The files that decide a refiner's outputs (for the output cache's fingerprint).
pub const VLM_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "preprocessor_config.json",
];

/// A loaded refiner.
pub struct VlmCheckpoint {
    model: Vlm,
    tokenizer: ClipTokenizer,
    preprocessor: Preprocessor,
    dir: PathBuf,
    device: Device,
}

/// Capitalizes the first letter of the text and of each sentence: the tokenizer lowercases.
fn sentence_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut start = true;
    for c in text.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
            start = false;
        } else {
            out.push(c);
            if matches!(c, '.' | '!' | '?') {
                start = true;
            }
        }
    }
    out
}

/// The tags of a decoded tag list: split, trimmed, blank and repeated ones dropped.
fn split_tags(text: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in text.split(TAG_SEPARATOR.trim()) {
        let tag = tag.trim();
        if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
    tags
}

impl VlmCheckpoint {
    /// Loads the refiner in `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device) -> ModelResult<Self> {
        let at = |e: String| ModelError(format!("refiner checkpoint '{}': {e}", dir.display()));
        let config = VlmConfig::from_json(&read(dir, "config.json")?)
            .map_err(|e| at(format!("config.json: {e}")))?;
        let preprocessor = Preprocessor::from_json(&read(dir, "preprocessor_config.json")?)
            .map_err(|e| at(e.to_string()))?;
        let tokenizer =
            ClipTokenizer::from_file(&dir.join("tokenizer.json"), config.alt_text_length)?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(at("no model.safetensors".into()));
        }
        let vb = mmap_weights(&weights, device)?;
        let model = Vlm::new(config, vb, Mode::Inference).map_err(|e| at(e.to_string()))?;
        Ok(VlmCheckpoint {
            model,
            tokenizer,
            preprocessor,
            dir: dir.to_path_buf(),
            device: device.clone(),
        })
    }

    /// Where it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &VlmConfig {
        self.model.config()
    }

    /// Decodes and preprocesses one image (CHW f32 at the vision tower's size).
    pub fn pixels(&self, bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
        self.preprocessor.process_bytes(bytes)
    }

    /// The four texts for each (pixels from [`VlmCheckpoint::pixels`], alt-text) row, written
    /// in one batch (4 sequences per row).
    pub fn refine(&self, rows: &[(&[f32], &str)]) -> ModelResult<Vec<Refinement>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let side = self.config().vision_config.image_size;
        let mut flat = Vec::with_capacity(rows.len() * 3 * side * side);
        let mut prompts = Vec::with_capacity(rows.len() * Task::ALL.len());
        for (image, (pixels, alt_text)) in rows.iter().enumerate() {
            if pixels.len() != 3 * side * side {
                return Err(ModelError(format!(
                    "row {image}: {} pixel values, the refiner reads 3x{side}x{side}",
                    pixels.len()
                )));
            }
            flat.extend_from_slice(pixels);
            let alt_text = self.tokenizer.encode(alt_text)?;
            for task in Task::ALL {
                prompts.push(Prompt {
                    image,
                    alt_text: alt_text.clone(),
                    task,
                });
            }
        }
        let pixels = Tensor::from_vec(flat, (rows.len(), 3, side, side), &self.device)?;
        let written = self.model.generate(&pixels, &prompts)?;
        let texts = written
            .iter()
            .map(|ids| self.tokenizer.decode(ids).map(|t| t.trim().to_string()))
            .collect::<ModelResult<Vec<String>>>()?;
        Ok(texts
            .chunks(Task::ALL.len())
            .map(|four| Refinement {
                long_pos: sentence_case(&four[Task::LongPos.index()]),
                long_neg: sentence_case(&four[Task::LongNeg.index()]),
                short_pos: split_tags(&four[Task::ShortPos.index()]),
                short_neg: split_tags(&four[Task::ShortNeg.index()]),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_texts_are_cleaned_up() {
        assert_eq!(
            sentence_case("the image shows one object. it has a red circle."),
            "The image shows one object. It has a red circle."
        );
        assert_eq!(
            split_tags("red circle, circle,, red circle , blue background,"),
            vec!["red circle", "circle", "blue background"]
        );
        assert!(split_tags("").is_empty());
    }
}
