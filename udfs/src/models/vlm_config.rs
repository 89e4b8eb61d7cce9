//! `config.json` of hqflow's vision-language refiner (`"model_type": "hqflow_vlm"`): a CLIP
//! vision tower (transformers' `vision_config`), the causal decoder that reads its tokens,
//! and how the four HQ-CLIP texts are asked for and bounded.

use serde::{Deserialize, Serialize};

use super::clip_config::{Activation, VisionConfig};

/// The four texts a refiner writes, in the order of their task embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// A long description of what the image shows.
    LongPos,
    /// A long description in the same style that contradicts the image.
    LongNeg,
    /// Short tags of what is present.
    ShortPos,
    /// Short, plausible tags of what is absent.
    ShortNeg,
}

impl Task {
    /// Every task, in task-embedding order.
    pub const ALL: [Task; 4] = [Task::LongPos, Task::LongNeg, Task::ShortPos, Task::ShortNeg];

    /// The column name of the task's text (the refined contract's).
    pub fn name(self) -> &'static str {
        match self {
            Task::LongPos => "long_pos",
            Task::LongNeg => "long_neg",
            Task::ShortPos => "short_pos",
            Task::ShortNeg => "short_neg",
        }
    }

    /// Row of the task embedding.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the task writes a list of tags (joined by [`TAG_SEPARATOR`]).
    pub fn is_tags(self) -> bool {
        matches!(self, Task::ShortPos | Task::ShortNeg)
    }
}

/// How tags are joined into one decoded text, and split back.
pub const TAG_SEPARATOR: &str = ", ";

/// `decoder_config`: the causal transformer that writes the texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// Vocabulary size (the tokenizer's).
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Positions: image tokens, alt-text, task token and the written text.
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Start-of-text id (the tokenizer's).
    pub bos_token_id: u32,
    /// End-of-text id: ends a written text.
    pub eos_token_id: u32,
    /// Padding id of the alt-text slots (masked out).
    pub pad_token_id: u32,
}

/// The longest text, in tokens, each task may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxNewTokens {
    /// For `long_pos`.
    pub long_pos: usize,
    /// For `long_neg`.
    pub long_neg: usize,
    /// For `short_pos`.
    pub short_pos: usize,
    /// For `short_neg`.
    pub short_neg: usize,
}

impl MaxNewTokens {
    /// The bound of `task`.
    pub fn of(&self, task: Task) -> usize {
        match task {
            Task::LongPos => self.long_pos,
            Task::LongNeg => self.long_neg,
            Task::ShortPos => self.short_pos,
            Task::ShortNeg => self.short_neg,
        }
    }

    /// The largest bound.
    pub fn max(&self) -> usize {
        Task::ALL.iter().map(|&t| self.of(t)).max().unwrap_or(0)
    }
}

/// `tagger`: an image-tagging head on the vision tower's class token (the recognition head
/// of Tag2Text and RAM): one logistic output per tag, trained on the seed rows' positive
/// tags alongside the texts (`tagger.weight` [tags, vision width], `tagger.bias` [tags]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaggerConfig {
    /// The tags it scores, in weight-row order.
    pub tags: Vec<String>,
    /// Probability from which a tag counts as present.
    pub threshold: f32,
    /// Whether `short_pos` is the tags it finds, most likely first, instead of the
    /// decoder's (the decoder then writes the other three texts).
    pub writes_short_pos: bool,
}

/// `config.json` of an `hqflow_vlm` checkpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct VlmConfig {
    /// Must be `hqflow_vlm`.
    pub model_type: String,
    /// The CLIP vision tower.
    pub vision_config: VisionConfig,
    /// The decoder.
    pub decoder_config: DecoderConfig,
    /// Alt-text tokens the decoder reads (longer alt-texts are cut).
    pub alt_text_length: usize,
    /// Bounds on the written texts.
    pub max_new_tokens: MaxNewTokens,
    /// How strongly the long negative is steered away from what the long description would
    /// say (contrastive decoding; 0: plain greedy). See [`NEGATIVE_PLAUSIBILITY`].
    #[serde(default)]
    pub negative_contrast: f32,
    /// The tagging head, if the refiner has one.
    #[serde(default)]
    pub tagger: Option<TaggerConfig>,
}

/// Contrastive decoding of the long negative picks, among the tokens the negative task finds
/// plausible (at least this share of its most likely token's probability), the one that
/// maximizes `(1 + c)·log p_neg − c·log p_pos`, where `p_pos` is the long-description task's
/// prediction after the same words and `c` is [`VlmConfig::negative_contrast`]. Greedy
/// decoding alone keeps every statement as it is when each one is more likely kept than
/// changed, and so writes the truth; the contrast changes the statements the negative task
/// would change at all, and the threshold keeps it from writing what neither would.
pub const NEGATIVE_PLAUSIBILITY: f32 = 0.1;

/// The model type this config describes.
pub const MODEL_TYPE: &str = "hqflow_vlm";

impl VlmConfig {
    /// Image tokens the decoder reads: the class token and one per patch.
    pub fn image_tokens(&self) -> usize {
        let v = &self.vision_config;
        1 + (v.image_size / v.patch_size).pow(2)
    }

    /// Tokens before the first written one: image, alt-text, task.
    pub fn prefix_length(&self) -> usize {
        self.image_tokens() + self.alt_text_length + 1
    }

    /// Parses and checks `config.json`.
    pub fn from_json(text: &str) -> Result<VlmConfig, String> {
        let config: VlmConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// The sizes must fit together.
    pub fn check(&self) -> Result<(), String> {
        if self.model_type != MODEL_TYPE {
            return Err(format!(
                "model_type is '{}', not '{MODEL_TYPE}'",
                self.model_type
            ));
        }
        let d = &self.decoder_config;
        let v = &self.vision_config;
        if d.num_attention_heads == 0 || !d.hidden_size.is_multiple_of(d.num_attention_heads) {
            return Err(format!(
                "decoder hidden_size {} is not a multiple of its {} heads",
                d.hidden_size, d.num_attention_heads
            ));
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "vision image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        let needed = self.prefix_length() + self.max_new_tokens.max();
        if d.max_position_embeddings < needed {
            return Err(format!(
                "decoder max_position_embeddings {} < {needed} (image, alt-text, task and the \
                 longest text)",
                d.max_position_embeddings
            ));
        }
        if let Some(t) = &self.tagger
            && (t.tags.is_empty() || !(t.threshold > 0.0 && t.threshold < 1.0))
        {
            return Err(format!(
                "tagger needs tags and a threshold between 0 and 1 (has {} tags, threshold {})",
                t.tags.len(),
                t.threshold
            ));
        }
        for id in [d.bos_token_id, d.eos_token_id, d.pad_token_id] {
            if id as usize >= d.vocab_size {
                return Err(format!(
                    "token id {id} is outside the vocabulary ({})",
                    d.vocab_size
                ));
            }
        }
        Ok(())
    }
}

/// A tiny refiner config for tests: 8 px images in 4 px patches, a 12-token vocabulary,
/// two decoder layers of `width`.
#[cfg(test)]
pub(crate) fn tiny_config(width: usize) -> VlmConfig {
    VlmConfig::from_json(
        &serde_json::json!({
            "model_type": "hqflow_vlm",
            "vision_config": {"hidden_size": width, "intermediate_size": 2 * width,
                "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 8,
                "patch_size": 4, "hidden_act": "gelu"},
            "decoder_config": {"vocab_size": 12, "hidden_size": width,
                "intermediate_size": 2 * width, "num_hidden_layers": 2,
                "num_attention_heads": 2, "max_position_embeddings": 24, "hidden_act": "gelu",
                "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 1,
                "pad_token_id": 1},
            "alt_text_length": 5,
            "max_new_tokens": {"long_pos": 8, "long_neg": 8, "short_pos": 4, "short_neg": 3}
        })
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("tiny config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_do_not_fit_are_refused() {
        let mut config = tiny_config(16);
        assert_eq!(config.prefix_length(), 5 + 5 + 1);
        config.decoder_config.max_position_embeddings = 18;
        let e = config.check().expect_err("19 positions needed");
        assert!(e.contains("max_position_embeddings 18 < 19"), "{e}");
        config.decoder_config.max_position_embeddings = 24;
        config.decoder_config.num_attention_heads = 3;
        assert!(config.check().is_err());
        config.decoder_config.num_attention_heads = 2;
        config.model_type = "clip".into();
        assert!(
            config
                .check()
                .expect_err("a CLIP")
                .contains("not 'hqflow_vlm'")
        );
    }
}
