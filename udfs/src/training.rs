//! Training a CLIP model (the model side of `hqflow-train`): parameters in a candle
//! `VarMap` initialised as transformers does, the model run in [`Mode::Training`], the
//! contrastive loss with HQ-CLIP's hard negatives, AdamW with state that can be saved and
//! resumed, Hugging Face checkpoints, and a BPE tokenizer trained on the data's texts.
//!
//! Inputs and outputs are plain Rust values (pixels, token ids, numbers), so that callers
//! outside this crate never touch candle.
//!
//! How to add a loss term: compute it in [`loss`] from the features the trainer already
//! has, give it a weight in [`trainer::LossWeights`] and report it in [`trainer::StepStats`].
//!
//! [`Mode::Training`]: crate::models::clip::Mode::Training

pub mod adamw;
pub mod bpe;
pub mod hf_files;
pub mod init;
pub mod loss;
pub mod trainer;
pub mod vlm_trainer;

// The CPU kernels live in their own crate (built optimized in the dev profile).
pub use hqflow_kernels::{attention, fused, linear};
pub use loss::TagLabel;
pub use trainer::{ClipTrainer, LossWeights, OptimConfig, StepStats, TrainBatch};
pub use vlm_trainer::{VlmBatch, VlmStepStats, VlmTrainer};
