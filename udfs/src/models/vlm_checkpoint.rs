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
use super::vlm_config::{TAG_SEPARATOR, TaggerConfig, Task, VlmConfig};
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
    /// in one batch (a sequence per text per row); the positive tags come from the tagging
    /// head instead when the config says so.
    pub fn refine(&self, rows: &[(&[f32], &str)]) -> ModelResult<Vec<Refinement>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let side = self.config().vision_config.image_size;
        let tagger = self.config().tagger.as_ref().filter(|t| t.writes_short_pos);
        let tasks: Vec<Task> = Task::ALL
            .into_iter()
            .filter(|&t| !(t == Task::ShortPos && tagger.is_some()))
            .collect();
        let mut flat = Vec::with_capacity(rows.len() * 3 * side * side);
        let mut prompts = Vec::with_capacity(rows.len() * tasks.len());
        for (image, (pixels, alt_text)) in rows.iter().enumerate() {
            if pixels.len() != 3 * side * side {
                return Err(ModelError(format!(
                    "row {image}: {} pixel values, the refiner reads 3x{side}x{side}",
                    pixels.len()
                )));
            }
            flat.extend_from_slice(pixels);
            let alt_text = self.tokenizer.encode(alt_text)?;
            for &task in &tasks {
                prompts.push(Prompt {
                    image,
                    alt_text: alt_text.clone(),
                    task,
                });
            }
        }
        let pixels = Tensor::from_vec(flat, (rows.len(), 3, side, side), &self.device)?;
        // One pass of the tower serves the decoder and the tagging head.
        let seen = self.model.see(&pixels)?;
        let written = self.model.generate_seen(&seen, &prompts)?;
        let texts = written
            .iter()
            .map(|ids| self.tokenizer.decode(ids).map(|t| t.trim().to_string()))
            .collect::<ModelResult<Vec<String>>>()?;
        let mut found = match (tagger, self.model.tag_logits(&seen)?) {
            (Some(t), Some(logits)) => found_tags(&logits.to_vec2()?, t),
            _ => Vec::new(),
        }
        .into_iter();
        Ok(texts
            .chunks(tasks.len())
            .map(|row| {
                let text = |task: Task| {
                    tasks
                        .iter()
                        .position(|&t| t == task)
                        .map_or("", |i| row[i].as_str())
                };
                Refinement {
                    long_pos: sentence_case(text(Task::LongPos)),
                    long_neg: sentence_case(text(Task::LongNeg)),
                    short_pos: match tagger {
                        Some(_) => found.next().unwrap_or_default(),
                        None => split_tags(text(Task::ShortPos)),
                    },
                    short_neg: split_tags(text(Task::ShortNeg)),
                }
            })
            .collect())
    }
}

/// The tags each image's logits put at or above the threshold, most likely first.
fn found_tags(logits: &[Vec<f32>], tagger: &TaggerConfig) -> Vec<Vec<String>> {
    let floor = (tagger.threshold / (1.0 - tagger.threshold)).ln();
    logits
        .iter()
        .map(|row| {
            let mut found: Vec<(f32, &String)> = row
                .iter()
                .zip(&tagger.tags)
                .filter(|(l, _)| **l >= floor)
                .map(|(l, t)| (*l, t))
                .collect();
            found.sort_by(|a, b| b.0.total_cmp(&a.0));
            found.into_iter().map(|(_, t)| t.clone()).collect()
        })
        .collect()
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

    #[test]
    fn the_tagging_head_finds_tags_above_its_threshold_most_likely_first() {
        let tagger = TaggerConfig {
            tags: ["circle", "red circle", "blue background"]
                .map(String::from)
                .to_vec(),
            threshold: 0.5,
            writes_short_pos: true,
        };
        // Logit 0 is probability 0.5: at the threshold, so found.
        let found = found_tags(&[vec![0.5, 2.0, -0.1], vec![-3.0, -1.0, 0.0]], &tagger);
        assert_eq!(found[0], ["red circle", "circle"]);
        assert_eq!(found[1], ["blue background"]);
    }
}
