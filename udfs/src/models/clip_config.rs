//! `config.json` of a Hugging Face `CLIPModel`, with transformers' defaults for absent fields.

use serde::{Deserialize, Serialize};

/// The activation in the MLP blocks (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI's original CLIP.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact GELU (erf), as `torch.nn.functional.gelu`.
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
}

impl Activation {
    /// The name transformers' configs use (`hidden_act`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::QuickGelu => "quick_gelu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
        }
    }
}

fn quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn eps() -> f64 {
    1e-5
}

/// `text_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Vocabulary size.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Width.
    #[serde(default = "d_512")]
    pub hidden_size: usize,
    /// MLP width.
    #[serde(default = "d_2048")]
    pub intermediate_size: usize,
    /// Layers.
    #[serde(default = "d_12")]
    pub num_hidden_layers: usize,
    /// Attention heads.
    #[serde(default = "d_8")]
    pub num_attention_heads: usize,
    /// Context length.
    #[serde(default = "d_77")]
    pub max_position_embeddings: usize,
    /// MLP activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// End-of-text id. The legacy value 2 means "pool at the largest token id".
    #[serde(default = "d_eos")]
    pub eos_token_id: u32,
}

/// `vision_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    /// Width.
    #[serde(default = "d_768")]
    pub hidden_size: usize,
    /// MLP width.
    #[serde(default = "d_3072")]
    pub intermediate_size: usize,
    /// Layers.
    #[serde(default = "d_12")]
    pub num_hidden_layers: usize,
    /// Attention heads.
    #[serde(default = "d_12")]
    pub num_attention_heads: usize,
    /// Input side in pixels.
    #[serde(default = "d_224")]
    pub image_size: usize,
    /// Patch side in pixels.
    #[serde(default = "d_32")]
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "d_3")]
    pub num_channels: usize,
    /// MLP activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

/// `config.json` of a `CLIPModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    /// Text tower.
    pub text_config: TextConfig,
    /// Vision tower.
    pub vision_config: VisionConfig,
    /// Shared embedding width.
    #[serde(default = "d_512")]
    pub projection_dim: usize,
}

fn d_vocab() -> usize {
    49408
}
fn d_eos() -> u32 {
    49407
}
fn d_3() -> usize {
    3
}
fn d_8() -> usize {
    8
}
fn d_12() -> usize {
    12
}
fn d_32() -> usize {
    32
}
fn d_77() -> usize {
    77
}
fn d_224() -> usize {
    224
}
fn d_512() -> usize {
    512
}
fn d_768() -> usize {
    768
}
fn d_2048() -> usize {
    2048
}
fn d_3072() -> usize {
    3072
}
