//! CLIP (Radford et al. 2021) as Hugging Face transformers implements `CLIPModel`
//! (`transformers/models/clip/modeling_clip.py`): pre-LayerNorm transformer towers, a causal
//! text tower pooled at the end-of-text token, a ViT pooled at the class token, and linear
//! projections into a shared space. Tensor names mirror the checkpoint's.
//!
//! One architecture, two ways to run it ([`Mode`]): inference uses candle's fused LayerNorm
//! and softmax kernels, which are fast but silently detached from the autograd graph (see
//! STACK.md); training uses hqflow's own kernels for them, which carry a backward pass
//! ([`crate::training::fused`]), so that gradients reach every parameter, the embeddings
//! included. The layers themselves are in [`super::blocks`], shared with the refiner.

use std::sync::Arc;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, VarBuilder};

use super::ModelResult;
use super::activation::Epilogue;
use super::bf16_matmul::{Bf16Dense, PackedWeight};
use super::clip_config::{ClipConfig, TextConfig, VisionConfig};

pub use super::blocks::Mode;
use super::blocks::{Dense, EncoderLayer, Norm, TowerShape, causal_mask, layer_norm, pick_rows};

struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    fn new(shape: TowerShape, mode: Mode, vb: VarBuilder) -> candle_core::Result<Self> {
        let vb = vb.pp("layers");
        let layers = (0..shape.depth)
            .map(|i| EncoderLayer::new(shape, mode, vb.pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Encoder { layers })
    }

    /// The hidden states at one token per sequence, [batch, width]: `pooled` gives each
    /// sequence's token as flat indices into [batch·seq] and `pooled_mask` its mask rows.
    fn forward_pooled(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        pooled: &Tensor,
        pooled_mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.forward_picked(xs, mask, pooled, pooled_mask)?
            .squeeze(1)
    }

    /// The hidden states at k tokens of each batch row, [batch, k, width] (`picked`: flat
    /// indices into [batch·seq], k per row in order; `picked_mask`: [batch, 1, k, seq]).
    fn forward_picked(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        picked: &Tensor,
        picked_mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let Some((last, layers)) = self.layers.split_last() else {
            return pick_rows(xs, picked);
        };
        let mut xs = xs.clone();
        for layer in layers {
            xs = layer.forward(&xs, mask)?;
        }
        last.forward_picked(&xs, picked, picked_mask)
    }
}

/// Tokens per packed row of the text tower at inference (at least the longest sequence):
/// long enough that rows hold several alt-texts with little left over, short enough that
/// attention over a row stays a small share of the work.
const PACK_TOKENS: usize = 256;

/// Where sequences of `lengths` go when packed first-fit, longest first, into rows as long
/// as the longest sequence or an even share of PACK_TOKENS-token rows, whichever is more:
/// each sequence's (row, offset), and each row's fill.
fn pack_sequences(lengths: &[usize]) -> (Vec<(usize, usize)>, Vec<usize>) {
    let total: usize = lengths.iter().sum();
    let even = total.div_ceil(total.div_ceil(PACK_TOKENS).max(1));
    let limit = lengths.iter().copied().max().unwrap_or(1).max(even);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut place = vec![(0usize, 0usize); lengths.len()];
    let mut fill: Vec<usize> = Vec::new();
    for i in order {
        let row = match fill.iter().position(|&f| f + lengths[i] <= limit) {
            Some(row) => row,
            None => {
                fill.push(0);
                fill.len() - 1
            }
        };
        place[i] = (row, fill[row]);
        fill[row] += lengths[i];
    }
    (place, fill)
}

/// The text tower (`text_model`).
struct TextTransformer {
    token_embedding: Embedding,
    position_embedding: Tensor,
    encoder: Encoder,
    final_layer_norm: Norm,
    eos_token_id: u32,
    mode: Mode,
}

impl TextTransformer {
    fn new(c: &TextConfig, mode: Mode, vb: VarBuilder) -> candle_core::Result<Self> {
        let emb = vb.pp("embeddings");
        Ok(TextTransformer {
            token_embedding: candle_nn::embedding(
                c.vocab_size,
                c.hidden_size,
                emb.pp("token_embedding"),
            )?,
            position_embedding: emb
                .pp("position_embedding")
                .get((c.max_position_embeddings, c.hidden_size), "weight")?,
            encoder: Encoder::new(TowerShape::from(c), mode, vb.pp("encoder"))?,
            final_layer_norm: layer_norm(
                c.hidden_size,
                c.layer_norm_eps,
                mode,
                vb.pp("final_layer_norm"),
            )?,
            eos_token_id: c.eos_token_id,
            mode,
        })
    }

    /// The position each sequence is pooled at, as transformers chooses it: the first
    /// end-of-text token, or for legacy configs (`eos_token_id == 2`) the largest id.
    fn pool_position(&self, ids: &[u32]) -> usize {
        let last = ids.len().saturating_sub(1);
        if self.eos_token_id == 2 {
            let mut best = 0;
            for (i, &id) in ids.iter().enumerate() {
                if id > ids[best] {
                    best = i;
                }
            }
            best
        } else {
            ids.iter()
                .position(|&id| id == self.eos_token_id)
                .unwrap_or(last)
        }
    }

    /// Pooled, final-normalized hidden states for token sequences (each ≤ context length):
    /// packed for inference, padded to the longest for training.
    fn forward(&self, sequences: &[Vec<u32>], device: &Device) -> candle_core::Result<Tensor> {
        match self.mode {
            Mode::Training => self.forward_padded(sequences, device),
            Mode::Inference | Mode::InferenceBf16 => self.forward_packed(sequences, device),
        }
    }

    /// Sequences packed end to end into rows of about [`PACK_TOKENS`] tokens (or the
    /// longest sequence, if longer; [`pack_sequences`]), each token attending only to its
    /// own sequence's earlier tokens (a block-diagonal causal mask) at its own positions: the
    /// same outputs as padding every sequence to the batch's longest, without computing the
    /// padding. Alt-texts vary from a few tokens to the context length, so a padded batch is
    /// mostly padding.
    fn forward_packed(
        &self,
        sequences: &[Vec<u32>],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let b = sequences.len();
        // An empty sequence runs as one padding token, as in the padded layout.
        let lens: Vec<usize> = sequences.iter().map(|s| s.len().max(1)).collect();
        let (place, fill) = pack_sequences(&lens);
        let rows = fill.len();
        // Rows are as long as the fullest one.
        let cap = fill.iter().copied().max().unwrap_or(1);
        // Token ids, positions and segments (a sequence's index; a row's padding is one
        // more segment of its own, so every query row of the mask sees at least itself).
        let mut ids = vec![0u32; rows * cap];
        let mut positions = vec![0u32; rows * cap];
        let mut segment = vec![usize::MAX; rows * cap];
        for (i, s) in sequences.iter().enumerate() {
            let (row, offset) = place[i];
            for t in 0..lens[i] {
                let at = row * cap + offset + t;
                ids[at] = s.get(t).copied().unwrap_or(0);
                positions[at] = t as u32;
                segment[at] = i;
            }
        }
        let mut mask = vec![f32::NEG_INFINITY; rows * cap * cap];
        for row in 0..rows {
            for q in 0..cap {
                for k in 0..=q {
                    if segment[row * cap + q] == segment[row * cap + k] {
                        mask[(row * cap + q) * cap + k] = 0.0;
                    }
                }
            }
        }
        // The pooled tokens, grouped by row (padded to the fullest row by repeating a row's
        // first), with their mask rows; `slot` finds each sequence's among them.
        let mut by_row: Vec<Vec<usize>> = vec![Vec::new(); rows];
        for i in 0..b {
            by_row[place[i].0].push(i);
        }
        let per = by_row.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut picked = Vec::with_capacity(rows * per);
        let mut picked_mask = Vec::with_capacity(rows * per * cap);
        let mut slot = vec![0u32; b];
        for (row, members) in by_row.iter().enumerate() {
            for k in 0..per {
                let i = members.get(k).or(members.first()).copied().unwrap_or(0);
                if members.get(k).is_some() {
                    slot[i] = (row * per + k) as u32;
                }
                let at = row * cap + place[i].1 + self.pool_position(&sequences[i]);
                picked.push(at as u32);
                picked_mask.extend_from_slice(&mask[at * cap..(at + 1) * cap]);
            }
        }
        let ids = Tensor::from_vec(ids, (rows, cap), device)?;
        let positions = Tensor::from_vec(positions, rows * cap, device)?;
        let width = self.position_embedding.dim(1)?;
        let xs = self.token_embedding.forward(&ids)?.broadcast_add(
            &self
                .position_embedding
                .index_select(&positions, 0)?
                .reshape((rows, cap, width))?,
        )?;
        let xs = self.encoder.forward_picked(
            &xs,
            Some(&Tensor::from_vec(mask, (rows, 1, cap, cap), device)?),
            &Tensor::from_vec(picked, rows * per, device)?,
            Some(&Tensor::from_vec(picked_mask, (rows, 1, per, cap), device)?),
        )?;
        let xs = xs
            .reshape((rows * per, width))?
            .index_select(&Tensor::from_vec(slot, b, device)?, 0)?;
        self.final_layer_norm.forward(&xs)
    }

    /// Every sequence padded to the batch's longest (training: every op has a gradient).
    fn forward_padded(
        &self,
        sequences: &[Vec<u32>],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = sequences.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let b = sequences.len();
        // Padding goes after each sequence's pooled token; the causal mask keeps it unseen.
        let mut flat = Vec::with_capacity(b * n);
        for s in sequences {
            flat.extend_from_slice(s);
            flat.extend(std::iter::repeat_n(0u32, n - s.len()));
        }
        let ids = Tensor::from_vec(flat, (b, n), device)?;
        let positions = self.position_embedding.narrow(0, 0, n)?;
        let xs = self
            .token_embedding
            .forward(&ids)?
            .broadcast_add(&positions)?;
        let mask = causal_mask(n, device)?;
        let pooled: Vec<usize> = sequences.iter().map(|s| self.pool_position(s)).collect();
        let rows: Vec<u32> = pooled
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * n + p) as u32)
            .collect();
        // Each pooled token's row of the causal mask: it sees itself and what precedes it.
        let pooled_mask: Vec<f32> = pooled
            .iter()
            .flat_map(|&p| (0..n).map(move |j| if j > p { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let xs = self.encoder.forward_pooled(
            &xs,
            Some(&mask),
            &Tensor::from_vec(rows, b, device)?,
            Some(&Tensor::from_vec(pooled_mask, (b, 1, 1, n), device)?),
        )?;
        self.final_layer_norm.forward(&xs)
    }
}

/// The vision tower (`vision_model`).
pub(crate) struct VisionTransformer {
    class_embedding: Tensor,
    /// The patch convolution's kernel, [width, channels, patch, patch] as stored.
    patch_kernel: Tensor,
    /// The kernel as a matrix over unfolded patches, made once for inference: with stride
    /// equal to the kernel, the convolution is one matmul over unfolded patches (the same
    /// kernel as every other layer) instead of candle's general CPU conv2d. Training derives
    /// it at each forward from `patch_kernel`, whose updates it must see.
    patch_weight: PatchWeight,
    patch_size: usize,
    position_embedding: Tensor,
    pre_layrnorm: Norm,
    encoder: Encoder,
    post_layernorm: Norm,
}

/// The patch convolution as a matrix product, by [`Mode`].
enum PatchWeight {
    /// Derived from the kernel at each forward (training).
    FromKernel,
    /// [c·p·p, width] (f32 inference).
    Matrix(Tensor),
    /// Packed for the bfloat16 kernel (bf16 inference).
    Bf16(Arc<PackedWeight>),
}

/// A [width, c, p, p] convolution kernel as the [c·p·p, width] matrix unfolded patches meet.
fn kernel_matrix(kernel: &Tensor) -> candle_core::Result<Tensor> {
    let (width, c, p, q) = kernel.dims4()?;
    kernel.reshape((width, c * p * q))?.t()?.contiguous()
}

impl VisionTransformer {
    pub(crate) fn new(c: &VisionConfig, mode: Mode, vb: VarBuilder) -> candle_core::Result<Self> {
        let emb = vb.pp("embeddings");
        let patches = (c.image_size / c.patch_size).pow(2);
        let patch_kernel = emb.pp("patch_embedding").get(
            (c.hidden_size, c.num_channels, c.patch_size, c.patch_size),
            "weight",
        )?;
        let patch_weight = match mode {
            Mode::Inference => PatchWeight::Matrix(kernel_matrix(&patch_kernel)?),
            Mode::InferenceBf16 => {
                let (width, c, p, q) = patch_kernel.dims4()?;
                let rows = patch_kernel.reshape((width, c * p * q))?;
                PatchWeight::Bf16(Arc::new(PackedWeight::new(&rows, None)?))
            }
            Mode::Training => PatchWeight::FromKernel,
        };
        Ok(VisionTransformer {
            class_embedding: emb.get(c.hidden_size, "class_embedding")?,
            patch_kernel,
            patch_weight,
            patch_size: c.patch_size,
            position_embedding: emb
                .pp("position_embedding")
                .get((patches + 1, c.hidden_size), "weight")?,
            // "pre_layrnorm" is transformers' spelling.
            pre_layrnorm: layer_norm(c.hidden_size, c.layer_norm_eps, mode, vb.pp("pre_layrnorm"))?,
            encoder: Encoder::new(TowerShape::from(c), mode, vb.pp("encoder"))?,
            post_layernorm: layer_norm(
                c.hidden_size,
                c.layer_norm_eps,
                mode,
                vb.pp("post_layernorm"),
            )?,
        })
    }

    /// `pixels`: [batch, channels, side, side] → pooled, normalized class tokens.
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.embed(pixels)?;
        let (b, n, _) = xs.dims3()?;
        // Pooled at the class token, the first of each sequence.
        let class_rows: Vec<u32> = (0..b).map(|i| (i * n) as u32).collect();
        let class_rows = Tensor::from_vec(class_rows, b, xs.device())?;
        let xs = self.encoder.forward_pooled(&xs, None, &class_rows, None)?;
        self.post_layernorm.forward(&xs)
    }

    /// `pixels` → every token's final, normalized hidden state, [batch, 1 + patches, width]
    /// (the class token first): the image tokens a vision-language decoder reads.
    pub(crate) fn tokens(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = self.embed(pixels)?;
        for layer in &self.encoder.layers {
            xs = layer.forward(&xs, None)?;
        }
        self.post_layernorm.forward(&xs)
    }

    /// Patch and class embeddings with positions, after the pre-LayerNorm.
    fn embed(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let (b, channels, h, w) = pixels.dims4()?;
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        // [b, c, gh, p, gw, p] → [b, gh, gw, c, p, p] → [b, gh·gw, c·p·p]: row-major patches
        // in the order the convolution visits them, each flattened as its kernel is.
        let unfolded = pixels
            .reshape((b, channels, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, channels * p * p))?;
        let patches = match &self.patch_weight {
            PatchWeight::Matrix(w) => unfolded.matmul(w)?,
            PatchWeight::FromKernel => unfolded.matmul(&kernel_matrix(&self.patch_kernel)?)?,
            PatchWeight::Bf16(w) => {
                unfolded.apply_op1_no_bwd(&Bf16Dense(Arc::clone(w), Epilogue::None))?
            }
        };
        let width = patches.dim(1)?;
        let patches = patches.reshape((b, gh * gw, width))?;
        let class = self
            .class_embedding
            .reshape((1, 1, width))?
            .broadcast_as((b, 1, width))?;
        let xs = Tensor::cat(&[&class.contiguous()?, &patches.contiguous()?], 1)?;
        let xs = xs.broadcast_add(&self.position_embedding)?;
        self.pre_layrnorm.forward(&xs)
    }
}

/// A CLIP model: both towers and their projections.
pub struct Clip {
    text: TextTransformer,
    vision: VisionTransformer,
    text_projection: Dense,
    visual_projection: Dense,
    config: ClipConfig,
    device: Device,
}

fn l2_normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norm = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    // An all-zero embedding stays zero instead of becoming NaN.
    xs.broadcast_div(&norm.maximum(1e-12)?)
}

impl Clip {
    /// Builds the model for inference from tensors named as in a transformers `CLIPModel`
    /// checkpoint.
    pub fn new(config: ClipConfig, vb: VarBuilder) -> ModelResult<Self> {
        Self::with_mode(config, vb, Mode::Inference)
    }

    /// Builds the model to run in `mode`; for training, `vb` is backed by a `VarMap`.
    pub fn with_mode(config: ClipConfig, vb: VarBuilder, mode: Mode) -> ModelResult<Self> {
        let device = vb.device().clone();
        Ok(Clip {
            text: TextTransformer::new(&config.text_config, mode, vb.pp("text_model"))?,
            vision: VisionTransformer::new(&config.vision_config, mode, vb.pp("vision_model"))?,
            text_projection: Dense::no_bias(
                config.text_config.hidden_size,
                config.projection_dim,
                mode,
                vb.pp("text_projection"),
            )?,
            visual_projection: Dense::no_bias(
                config.vision_config.hidden_size,
                config.projection_dim,
                mode,
                vb.pp("visual_projection"),
            )?,
            config,
            device,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Projected text features (not normalized), [batch, projection_dim], f32.
    pub fn text_features(&self, sequences: &[Vec<u32>]) -> ModelResult<Tensor> {
        let pooled = self.text.forward(sequences, &self.device)?;
        Ok(self
            .text_projection
            .forward(&pooled)?
            .to_dtype(DType::F32)?)
    }

    /// Projected image features (not normalized), [batch, projection_dim], f32.
    pub fn image_features(&self, pixels: &Tensor) -> ModelResult<Tensor> {
        self.project_image(&self.vision.forward(pixels)?)
    }

    /// [`Clip::image_features`] with the vision tower's output detached: gradients reach the
    /// visual projection but not the tower (a locked tower, as in LiT).
    pub fn image_features_locked_tower(&self, pixels: &Tensor) -> ModelResult<Tensor> {
        self.project_image(&self.vision.forward(pixels)?.detach())
    }

    fn project_image(&self, pooled: &Tensor) -> ModelResult<Tensor> {
        Ok(self
            .visual_projection
            .forward(pooled)?
            .to_dtype(DType::F32)?)
    }

    /// L2-normalized text embeddings, one row per sequence.
    pub fn embed_text(&self, sequences: &[Vec<u32>]) -> ModelResult<Vec<Vec<f32>>> {
        Ok(l2_normalize(&self.text_features(sequences)?)?.to_vec2()?)
    }

    /// L2-normalized image embeddings, one row per image of `pixels` [batch, 3, side, side].
    pub fn embed_images(&self, pixels: &Tensor) -> ModelResult<Vec<Vec<f32>>> {
        Ok(l2_normalize(&self.image_features(pixels)?)?.to_vec2()?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    use super::{Clip, Mode, PACK_TOKENS};
    use crate::models::clip_config::ClipConfig;
    use crate::training::init::initialize;

    fn tiny_config() -> ClipConfig {
        serde_json::from_value(serde_json::json!({
            "projection_dim": 8,
            "text_config": {
                "vocab_size": 20, "hidden_size": 16, "intermediate_size": 32,
                "num_hidden_layers": 2, "num_attention_heads": 2,
                "max_position_embeddings": 8, "eos_token_id": 1, "hidden_act": "gelu"
            },
            "vision_config": {
                "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 2, "image_size": 8, "patch_size": 4
            }
        }))
        .expect("a valid config")
    }

    /// A scalar that depends on every parameter: the summed products of text and image
    /// features, run in `mode`, with the variables it was built from.
    fn grads(mode: Mode) -> (candle_core::backprop::GradStore, VarMap) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        // Built once to create the variables, then again once they are initialized: an
        // inference model reads (and transposes) its weights when built.
        Clip::with_mode(tiny_config(), vb.clone(), mode).expect("model builds");
        initialize(&varmap, &tiny_config(), 3).expect("init");
        let model = Clip::with_mode(tiny_config(), vb, mode).expect("model builds");
        let pixels = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).expect("pixels");
        let image = model.image_features(&pixels).expect("image forward");
        let text = model
            .text_features(&[vec![0, 5, 7, 1], vec![0, 9, 1]])
            .expect("text forward");
        let loss = (image * text)
            .and_then(|p| p.sqr())
            .and_then(|p| p.sum_all())
            .expect("loss");
        (loss.backward().expect("backward"), varmap)
    }

    fn grad_norm(grads: &candle_core::backprop::GradStore, varmap: &VarMap, name: &str) -> f32 {
        let data = varmap.data().lock().expect("varmap lock");
        let var = data
            .get(name)
            .unwrap_or_else(|| panic!("no variable {name}"));
        grads
            .get(var.as_tensor())
            .map(|g| {
                g.sqr()
                    .and_then(|g| g.sum_all())
                    .and_then(|g| g.to_scalar::<f32>())
                    .expect("norm")
            })
            .unwrap_or(0.0)
    }

    #[test]
    fn training_mode_gradients_reach_every_parameter() {
        let (grads, varmap) = grads(Mode::Training);
        let mut names: Vec<String> = varmap
            .data()
            .lock()
            .expect("varmap lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        assert!(names.len() > 40, "{names:?}");
        for name in &names {
            assert!(
                grad_norm(&grads, &varmap, name) > 0.0,
                "{name} gets no gradient in training mode"
            );
        }
    }

    #[test]
    fn inference_mode_drops_gradients_before_fused_ops() {
        // Why training mode exists: the fused kernels detach their output, so nothing
        // before the last LayerNorm learns, and the dense layers compute with transposed
        // copies of their weights made when the model is built.
        let (grads, varmap) = grads(Mode::Inference);
        for name in [
            "vision_model.embeddings.patch_embedding.weight",
            "text_model.embeddings.token_embedding.weight",
            "visual_projection.weight",
        ] {
            assert_eq!(grad_norm(&grads, &varmap, name), 0.0, "{name}");
        }
    }

    #[test]
    fn both_modes_compute_the_same_features() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let train = Clip::with_mode(tiny_config(), vb.clone(), Mode::Training).expect("model");
        initialize(&varmap, &tiny_config(), 3).expect("init");
        let infer = Clip::with_mode(tiny_config(), vb, Mode::Inference).expect("model");
        let pixels = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).expect("pixels");
        let seqs = [vec![0, 5, 7, 1], vec![0, 9, 1]];
        let pairs = [
            (
                train.image_features(&pixels).expect("f"),
                infer.image_features(&pixels).expect("f"),
            ),
            (
                train.text_features(&seqs).expect("f"),
                infer.text_features(&seqs).expect("f"),
            ),
        ];
        for (a, b) in pairs {
            let diff = (a - b)
                .and_then(|d| d.abs())
                .and_then(|d| d.max_all())
                .and_then(|d| d.to_scalar::<f32>())
                .expect("diff");
            assert!(diff < 1e-4, "modes differ by {diff}");
        }
    }

    /// Inference packs sequences into shared rows (here several, with an empty sequence and
    /// full-length ones); training pads each to the longest: the same features per sequence.
    #[test]
    fn packed_text_matches_padded_text() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let padded = Clip::with_mode(tiny_config(), vb.clone(), Mode::Training).expect("model");
        initialize(&varmap, &tiny_config(), 5).expect("init");
        let packed = Clip::with_mode(tiny_config(), vb, Mode::Inference).expect("model");
        let mut state = 9u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let seqs: Vec<Vec<u32>> = (0..160)
            .map(|i| {
                let len = if i % 10 == 0 { 8 } else { next(9) as usize };
                (0..len).map(|_| next(20) as u32).collect()
            })
            .collect();
        assert!(
            seqs.iter().map(Vec::len).sum::<usize>() > 2 * PACK_TOKENS,
            "three rows or more"
        );
        let a: Vec<Vec<f32>> = padded
            .text_features(&seqs)
            .expect("f")
            .to_vec2()
            .expect("v");
        let b: Vec<Vec<f32>> = packed
            .text_features(&seqs)
            .expect("f")
            .to_vec2()
            .expect("v");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let diff = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(
                diff < 1e-4,
                "sequence {i} ({:?}) differs by {diff}",
                seqs[i]
            );
        }
    }
}
