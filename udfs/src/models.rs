//! Models behind hqflow's SQL functions (no SQL here): CLIP in Hugging Face layout, its
//! tokenizer and image preprocessing.
//!
//! How to add a model family: its config (serde, HF field names and defaults), its modules
//! built from a `VarBuilder` whose names mirror the checkpoint's tensors, and a loader in
//! `checkpoint` that reads a local directory; then conformance fixtures from the reference
//! implementation under `tests/data/`.

pub mod batcher;
pub mod blocks;
pub mod checkpoint;
pub mod clip;
pub mod clip_config;
pub mod device;
pub mod embedded;
pub mod fingerprint;
pub mod image_decode;
pub mod openai_chat;
pub mod precision;
pub mod preprocess;
pub mod registry;
pub mod resize;
pub mod throughput;
pub mod tokenizer;
pub mod vlm;
pub mod vlm_checkpoint;
pub mod vlm_config;

pub use candle_core::Device;
pub use checkpoint::ClipCheckpoint;
pub use device::DeviceSpec;
// The CPU kernels live in their own crate (built optimized in the dev profile).
pub use hqflow_kernels::{activation, attention_forward, bf16_matmul};
pub use precision::Precision;

/// An error while loading or running a model, with what it concerns.
#[derive(Debug)]
pub struct ModelError(pub String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError(e.to_string())
    }
}

/// Results of model code.
pub type ModelResult<T> = std::result::Result<T, ModelError>;
