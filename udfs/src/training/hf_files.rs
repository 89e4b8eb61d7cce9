//! The JSON files of a Hugging Face CLIP checkpoint that a trained model is saved with:
//! `config.json` (a transformers `CLIPModel` config), `preprocessor_config.json` (a
//! `CLIPImageProcessor`: shortest-edge resize, bicubic, center crop, OpenAI mean/std) and,
//! for a tokenizer trained here, `tokenizer_config.json`.

use crate::models::clip_config::{ClipConfig, VisionConfig};
use crate::models::vlm_config::{MODEL_TYPE, VlmConfig};

/// OpenAI CLIP's normalization, which transformers' CLIP processors default to.
pub const IMAGE_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// See [`IMAGE_MEAN`].
pub const IMAGE_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// `config.json` for `config`, with `bos`/`eos` the tokenizer's start and end ids.
pub fn clip_config_json(config: &ClipConfig, bos: u32) -> String {
    let t = &config.text_config;
    let v = &config.vision_config;
    let value = serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.projection_dim,
        "logit_scale_init_value": super::init::LOGIT_SCALE_INIT,
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "max_position_embeddings": t.max_position_embeddings,
            "hidden_act": t.hidden_act.hf_name(),
            "layer_norm_eps": t.layer_norm_eps,
            "bos_token_id": bos,
            "eos_token_id": t.eos_token_id,
            "pad_token_id": t.eos_token_id,
            "projection_dim": config.projection_dim,
        },
        "vision_config": vision_config_value(v, Some(config.projection_dim)),
    });
    format!("{value:#}\n")
}

/// transformers' `vision_config` of a CLIP vision tower.
fn vision_config_value(v: &VisionConfig, projection_dim: Option<usize>) -> serde_json::Value {
    let mut value = serde_json::json!({
        "model_type": "clip_vision_model",
        "hidden_size": v.hidden_size,
        "intermediate_size": v.intermediate_size,
        "num_hidden_layers": v.num_hidden_layers,
        "num_attention_heads": v.num_attention_heads,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "num_channels": v.num_channels,
        "hidden_act": v.hidden_act.hf_name(),
        "layer_norm_eps": v.layer_norm_eps,
    });
    if let (Some(dim), Some(map)) = (projection_dim, value.as_object_mut()) {
        map.insert("projection_dim".into(), dim.into());
    }
    value
}

/// `config.json` of the refiner (`hqflow_vlm`).
pub fn vlm_config_json(config: &VlmConfig) -> String {
    let mut value = serde_json::json!({
        "architectures": ["HqflowVlm"],
        "model_type": MODEL_TYPE,
        "torch_dtype": "float32",
        "vision_config": vision_config_value(&config.vision_config, None),
        "decoder_config": config.decoder_config,
        "alt_text_length": config.alt_text_length,
        "max_new_tokens": config.max_new_tokens,
        "negative_contrast": config.negative_contrast,
    });
    if let Some(tagger) = &config.tagger {
        value["tagger"] = serde_json::json!(tagger);
    }
    format!("{value:#}\n")
}

/// `preprocessor_config.json` for a model whose input side is `size`.
pub fn preprocessor_json(size: usize) -> String {
    let value = serde_json::json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": true,
        "size": { "shortest_edge": size },
        "resample": 3,
        "do_center_crop": true,
        "crop_size": { "height": size, "width": size },
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
        "do_convert_rgb": true,
    });
    format!("{value:#}\n")
}

/// `tokenizer_config.json` for a tokenizer trained by [`super::bpe`]. Without it,
/// transformers' `AutoTokenizer` goes by the model type and builds OpenAI's `CLIPTokenizer`,
/// whose own pre-tokenization gives other ids than `tokenizer.json`; with it, the generic
/// fast tokenizer runs `tokenizer.json` as written, as hqflow does.
pub fn tokenizer_config_json(max_length: usize) -> String {
    let value = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": super::bpe::BOS,
        "eos_token": super::bpe::EOS,
        "pad_token": super::bpe::EOS,
        "model_max_length": max_length,
    });
    format!("{value:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::preprocess::{Preprocessor, ResizeMode};

    #[test]
    fn written_files_read_back() {
        let config: ClipConfig = serde_json::from_value(serde_json::json!({
            "text_config": {"hidden_size": 32, "eos_token_id": 1, "hidden_act": "gelu"},
            "vision_config": {"hidden_size": 48, "image_size": 32, "patch_size": 8},
            "projection_dim": 16
        }))
        .expect("config");
        let back: ClipConfig =
            serde_json::from_str(&clip_config_json(&config, 0)).expect("reads back");
        assert_eq!(back.text_config.hidden_size, 32);
        assert_eq!(back.text_config.eos_token_id, 1);
        assert_eq!(back.vision_config.patch_size, 8);
        assert_eq!(back.projection_dim, 16);
        let pre = Preprocessor::from_json(&preprocessor_json(32)).expect("reads back");
        assert_eq!(pre.resize, Some(ResizeMode::ShortestEdge(32)));
        assert_eq!(pre.crop, Some((32, 32)));
    }
}
