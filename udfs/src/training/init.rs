//! Random initialisation of a fresh CLIP, as transformers' `CLIPPreTrainedModel._init_weights`
//! does it (initializer_factor 1): normal(0, 0.02) embeddings, attention and MLP weights scaled
//! by width and depth, unit LayerNorm gains, zero biases, `logit_scale` = ln(1/0.07).
//!
//! Each tensor draws from its own stream keyed by (seed, name), so the result does not depend
//! on the order in which the model asked for its variables.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::models::clip_config::ClipConfig;
use crate::models::vlm_config::VlmConfig;
use crate::models::{ModelError, ModelResult};

/// transformers' `logit_scale_init_value`: ln(1/0.07).
pub const LOGIT_SCALE_INIT: f32 = 2.6592;

/// SplitMix64: a small, good, seedable generator (no dependency needed for init).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn name_key(seed: u64, name: &str) -> u64 {
    // FNV-1a over the name, mixed with the seed.
    let mut h = 0xCBF2_9CE4_8422_2325u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// What a named parameter starts as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    Zeros,
    Ones,
    Normal(f64),
    Value(f32),
}

/// The rule shared by every transformer tower of `width` and `depth`: embeddings, attention
/// and MLP weights, LayerNorms, biases; None for a name it does not know.
fn tower_start(name: &str, width: usize, depth: usize) -> Option<Start> {
    let w = width as f64;
    let in_proj = w.powf(-0.5) * (2.0 * depth.max(1) as f64).powf(-0.5);
    let norm =
        name.contains("layer_norm") || name.contains("layernorm") || name.contains("layrnorm");
    Some(if name.ends_with(".bias") {
        Start::Zeros
    } else if norm {
        Start::Ones
    } else if name.ends_with("token_embedding.weight")
        || name.ends_with("position_embedding.weight")
        || name.ends_with("patch_embedding.weight")
    {
        Start::Normal(0.02)
    } else if name.ends_with("class_embedding") {
        Start::Normal(w.powf(-0.5))
    } else if name.ends_with("q_proj.weight")
        || name.ends_with("k_proj.weight")
        || name.ends_with("v_proj.weight")
        || name.ends_with("fc2.weight")
    {
        Start::Normal(in_proj)
    } else if name.ends_with("out_proj.weight") {
        Start::Normal(w.powf(-0.5))
    } else if name.ends_with("fc1.weight") {
        Start::Normal((2.0 * w).powf(-0.5))
    } else {
        return None;
    })
}

fn no_rule(name: &str) -> ModelError {
    ModelError(format!(
        "no initialisation rule for parameter '{name}' (a bug in hqflow)"
    ))
}

fn start_for(name: &str, c: &ClipConfig) -> ModelResult<Start> {
    let (width, depth) = if name.starts_with("text_model.") {
        (c.text_config.hidden_size, c.text_config.num_hidden_layers)
    } else {
        (
            c.vision_config.hidden_size,
            c.vision_config.num_hidden_layers,
        )
    };
    if name == "logit_scale" {
        return Ok(Start::Value(LOGIT_SCALE_INIT));
    }
    if name == "text_projection.weight" {
        return Ok(Start::Normal((c.text_config.hidden_size as f64).powf(-0.5)));
    }
    if name == "visual_projection.weight" {
        return Ok(Start::Normal(
            (c.vision_config.hidden_size as f64).powf(-0.5),
        ));
    }
    tower_start(name, width, depth).ok_or_else(|| no_rule(name))
}

/// The refiner's rule: its vision tower as CLIP's, its decoder as a tower of the decoder's
/// width, the token, position and task embeddings as CLIP's token embedding.
fn vlm_start_for(name: &str, c: &VlmConfig) -> ModelResult<Start> {
    let v = &c.vision_config;
    let d = &c.decoder_config;
    if name.starts_with("vision_model.") {
        return tower_start(name, v.hidden_size, v.num_hidden_layers).ok_or_else(|| no_rule(name));
    }
    if name == "tagger.weight" {
        return Ok(Start::Normal((v.hidden_size as f64).powf(-0.5)));
    }
    if name == "tagger.bias" {
        // Tags are rare: every one starts at a low probability (about 3%).
        return Ok(Start::Value(-3.5));
    }
    if name == "image_projection.weight" {
        return Ok(Start::Normal((v.hidden_size as f64).powf(-0.5)));
    }
    if name.ends_with("embed_tokens.weight")
        || name.ends_with("embed_positions.weight")
        || name.ends_with("task_embedding.weight")
    {
        return Ok(Start::Normal(0.02));
    }
    tower_start(name, d.hidden_size, d.num_hidden_layers).ok_or_else(|| no_rule(name))
}

/// Overwrites every variable of `varmap` with the value `rule` gives its name, normal draws
/// from `seed`.
fn fill(varmap: &VarMap, seed: u64, rule: impl Fn(&str) -> ModelResult<Start>) -> ModelResult<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ModelError("parameter map lock poisoned".into()))?;
    for (name, var) in data.iter() {
        let shape = var.shape().clone();
        let device: &Device = var.device();
        let n = shape.elem_count();
        let values: Vec<f32> = match rule(name)? {
            Start::Zeros => vec![0.0; n],
            Start::Ones => vec![1.0; n],
            Start::Value(v) => vec![v; n],
            Start::Normal(std) => {
                let mut rng = SplitMix(name_key(seed, name));
                (0..n).map(|_| (rng.normal() * std) as f32).collect()
            }
        };
        let t = Tensor::from_vec(values, shape, device)?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// The vision tower's position embeddings as a 2-D sine-cosine table (MAE's layout): of each
/// patch row's `width` values, the first half encode its grid row and the second its column,
/// as sines and cosines at `width / 4` frequencies; the class token's row is zero. MAE's
/// frequencies (1 down to 1/10000) suit grids of 14 and more: on a 4 x 4 grid most of them
/// barely turn and the top-left and top-right patches stay at cosine 0.90, so here they run
/// from π (wavelength 2 patches) down to π / side (twice the grid). Scaled to a row norm of
/// 2, what trained position embeddings of our small CLIPs reach. Unlike normal(0, 0.02)
/// draws, which training turned into nearly one shared vector (top-left and top-right patch
/// at cosine 0.84 to 0.95), the table says where each patch is from the first step. `rows`
/// is 1 + the number of patches (a square grid); `width` a multiple of 4.
pub fn sincos_positions(rows: usize, width: usize) -> ModelResult<Vec<f32>> {
    let side = ((rows.saturating_sub(1)) as f64).sqrt().round() as usize;
    if rows < 2 || side * side + 1 != rows || !width.is_multiple_of(4) {
        return Err(ModelError(format!(
            "a sine-cosine position table needs 1 + a square number of rows and a width \
             divisible by 4 (got {rows} rows, width {width})"
        )));
    }
    let quarter = width / 4;
    let scale = 2.0 / ((width / 2) as f64).sqrt();
    let mut out = vec![0.0f32; rows * width];
    for patch in 0..side * side {
        let row = &mut out[(patch + 1) * width..(patch + 2) * width];
        for (half, coordinate) in [(0, patch / side), (1, patch % side)] {
            for i in 0..quarter {
                let omega = std::f64::consts::PI * (side as f64).powf(-(i as f64) / quarter as f64);
                let angle = coordinate as f64 * omega;
                row[half * 2 * quarter + i] = (angle.sin() * scale) as f32;
                row[half * 2 * quarter + quarter + i] = (angle.cos() * scale) as f32;
            }
        }
    }
    Ok(out)
}

/// Overwrites every variable of the refiner's `varmap` with its initial value from `seed`.
pub fn initialize_vlm(varmap: &VarMap, config: &VlmConfig, seed: u64) -> ModelResult<()> {
    fill(varmap, seed, |name| vlm_start_for(name, config))
}

/// Overwrites every variable of `varmap` (a CLIP's, plus `logit_scale`) with its
/// transformers-style initial value drawn from `seed`.
pub fn initialize(varmap: &VarMap, config: &ClipConfig, seed: u64) -> ModelResult<()> {
    fill(varmap, seed, |name| start_for(name, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_draws_have_the_asked_spread() {
        let mut rng = SplitMix(7);
        let xs: Vec<f64> = (0..20_000).map(|_| rng.normal() * 0.02).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 1e-3, "{mean}");
        assert!((var.sqrt() - 0.02).abs() < 1e-3, "{}", var.sqrt());
    }

    #[test]
    fn sincos_positions_tell_every_patch_apart() {
        let (rows, width) = (17, 128);
        let table = sincos_positions(rows, width).expect("a table");
        let row = |k: usize| &table[k * width..(k + 1) * width];
        assert!(
            row(0).iter().all(|&v| v == 0.0),
            "the class token has no position"
        );
        let norm = |r: &[f32]| r.iter().map(|v| v * v).sum::<f32>().sqrt();
        let cos = |a: &[f32], b: &[f32]| {
            a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
        };
        for k in 1..rows {
            assert!(
                (norm(row(k)) - 2.0).abs() < 1e-4,
                "row {k}: {}",
                norm(row(k))
            );
        }
        // Top-left against top-right and bottom-right: far less alike than the trained
        // normal-initialised embeddings (0.84 to 0.95).
        assert!(cos(row(1), row(4)) < 0.8, "{}", cos(row(1), row(4)));
        assert!(cos(row(1), row(16)) < cos(row(1), row(2)));
        assert!(sincos_positions(18, 128).is_err());
        assert!(sincos_positions(17, 126).is_err());
    }
}
