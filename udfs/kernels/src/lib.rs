//! hqflow's CPU kernels, as candle custom ops: what candle's own ops do in several passes
//! (or without a gradient), done in one.
//!
//! Their own crate so that the dev profile (the tests, the demo's `cargo run`) can build
//! them optimized like candle itself while hqflow's other crates stay quick to rebuild:
//! unoptimized, the training kernels' loops ran the demo's fine-tune at 17 pairs/s.
//!
//! - [`activation`]: GELU and quick GELU in one AVX-512 pass (inference, the bf16 kernel's
//!   epilogue, training's GELU and its gradient).
//! - [`bf16_matmul`]: the bfloat16 dense layer for `hqflow.precision = 'bf16'`.
//! - [`aligned`]: cache-line-aligned buffers for its tile loads.
//! - [`fused`]: training's layer norm, softmax and GELU with their backward passes, and the
//!   helpers the training kernels share.
//! - [`linear`], [`attention`]: training's dense layer and multi-head attention as single
//!   graph nodes with their own backward passes (the dense layer also runs inference's f32
//!   products).
//! - [`attention_forward`]: multi-head attention for inference, register-tiled.

pub mod activation;
pub mod aligned;
pub mod attention;
pub mod attention_forward;
pub mod bf16_matmul;
pub mod fused;
pub mod linear;
