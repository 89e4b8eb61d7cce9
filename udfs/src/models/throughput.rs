//! Measuring the model itself: image-tower forward throughput in GFLOP/s, against the
//! machine's fp32 matmul rate measured the same way, so the ratio says how much of the
//! hardware the forward pass uses. Used by `hqflow bench clip-forward`.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};

use super::clip_config::VisionConfig;
use super::{ClipCheckpoint, ModelResult};

/// Floating-point operations (2 per multiply-add) of one image through the vision tower
/// and its projection, as hqflow computes it: the last layer only for the class token (its
/// keys and values still for every token), since nothing else of it is pooled.
pub fn vision_flops(c: &VisionConfig, projection_dim: usize) -> f64 {
    let patches = (c.image_size / c.patch_size).pow(2) as f64;
    let n = patches + 1.0;
    let d = c.hidden_size as f64;
    let inner = c.intermediate_size as f64;
    let patch_embed = patches * (c.num_channels * c.patch_size * c.patch_size) as f64 * d;
    let per_layer = 4.0 * n * d * d + 2.0 * n * n * d + 2.0 * n * d * inner;
    let last_layer = 2.0 * n * d * d + 2.0 * d * d + 2.0 * n * d + 2.0 * d * inner;
    let layers = c.num_hidden_layers as f64;
    let encoder = if layers >= 1.0 {
        (layers - 1.0) * per_layer + last_layer
    } else {
        0.0
    };
    2.0 * (patch_embed + encoder + d * projection_dim as f64)
}

/// One measurement: work done per second.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Repetitions timed.
    pub iterations: usize,
    /// Seconds they took.
    pub seconds: f64,
    /// Billions of floating-point operations per second.
    pub gflops: f64,
}

fn time_for(
    budget: Duration,
    flops_per_iteration: f64,
    mut step: impl FnMut() -> ModelResult<()>,
) -> ModelResult<Rate> {
    step()?; // warm-up: first-touch allocation and thread start-up are not the steady state
    let start = Instant::now();
    let mut iterations = 0;
    while iterations == 0 || start.elapsed() < budget {
        step()?;
        iterations += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Rate {
        iterations,
        seconds,
        gflops: flops_per_iteration * iterations as f64 / seconds / 1e9,
    })
}

/// The vision tower's forward rate on batches of `batch` images.
pub fn vision_forward_rate(
    model: &ClipCheckpoint,
    batch: usize,
    budget: Duration,
) -> ModelResult<Rate> {
    let c = &model.model.config().vision_config;
    let pixels = Tensor::randn(
        0f32,
        1.0,
        (batch, c.num_channels, c.image_size, c.image_size),
        model.model.device(),
    )?;
    let flops = vision_flops(c, model.model.config().projection_dim) * batch as f64;
    time_for(budget, flops, || {
        model.model.image_features(&pixels)?;
        // GPU kernels run asynchronously: a step ends when the device is done.
        model.model.device().synchronize()?;
        Ok(())
    })
}

/// The fp32 matmul rate of square `n`×`n` products on `device` (the reference peak).
pub fn matmul_rate(n: usize, device: &Device, budget: Duration) -> ModelResult<Rate> {
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let flops = 2.0 * (n as f64).powi(3);
    time_for(budget, flops, || {
        a.matmul(&b)?;
        device.synchronize()?;
        Ok(())
    })
}
