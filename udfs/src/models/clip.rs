//! CLIP (Radford et al. 2021) as Hugging Face transformers implements `CLIPModel`
//! (`transformers/models/clip/modeling_clip.py`): pre-LayerNorm transformer towers, a causal
//! text tower pooled at the end-of-text token, a ViT pooled at the class token, and linear
//! projections into a shared space. Tensor names mirror the checkpoint's.
//!
//! One architecture, two ways to run it ([`Mode`]): inference uses candle's fused LayerNorm
//! and softmax kernels, which are fast but silently detached from the autograd graph (see
//! STACK.md); training uses hqflow's own kernels for them, which carry a backward pass
//! ([`fused`]), so that gradients reach every parameter, the embeddings included.

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use super::ModelResult;
use super::clip_config::{Activation, ClipConfig, TextConfig, VisionConfig};
use crate::training::fused;

/// How a [`Clip`] computes its LayerNorms and attention softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// candle's fused kernels: fastest, but no gradient flows through them.
    #[default]
    Inference,
    /// Kernels with a backward pass ([`fused`]), so `backward` reaches every parameter;
    /// weights are read from their variables at each forward, so optimizer updates are seen.
    Training,
}

/// A LayerNorm that runs candle's kernel or hqflow's by [`Mode`].
struct Norm {
    fused: LayerNorm,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    mode: Mode,
}

impl Norm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self.mode {
            Mode::Inference => self.fused.forward(xs),
            Mode::Training => fused::layer_norm(xs, &self.weight, &self.bias, self.eps),
        }
    }
}

fn layer_norm(size: usize, eps: f64, mode: Mode, vb: VarBuilder) -> candle_core::Result<Norm> {
    let weight = vb.get(size, "weight")?;
    let bias = vb.get(size, "bias")?;
    Ok(Norm {
        fused: LayerNorm::new(weight.clone(), bias.clone(), eps),
        weight,
        bias,
        eps,
        mode,
    })
}

/// A linear layer, `x Wᵀ + b`, as candle's `Linear` computes it (one matrix product over
/// all rows), with the bias added by [`fused::bias_add`] in training.
struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
    mode: Mode,
}

impl Dense {
    fn new(input: usize, output: usize, mode: Mode, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Dense {
            weight: vb.get((output, input), "weight")?,
            bias: Some(vb.get(output, "bias")?),
            mode,
        })
    }

    fn no_bias(
        input: usize,
        output: usize,
        mode: Mode,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Dense {
            weight: vb.get((output, input), "weight")?,
            bias: None,
            mode,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dims = xs.dims().to_vec();
        let input = dims.last().copied().unwrap_or(1);
        let rows = xs.contiguous()?.reshape(((), input))?;
        let ys = rows.matmul(&self.weight.t()?)?;
        let ys = match (&self.bias, self.mode) {
            (None, _) => ys,
            (Some(b), Mode::Training) => fused::bias_add(&ys, b)?,
            (Some(b), Mode::Inference) => ys.broadcast_add(b)?,
        };
        let mut out = dims;
        if let Some(last) = out.last_mut() {
            *last = self.weight.dim(0)?;
        }
        ys.reshape(out)
    }
}

fn activate(act: Activation, xs: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
    match act {
        Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
        Activation::Gelu if mode == Mode::Training => fused::gelu_erf(xs),
        Activation::Gelu => xs.gelu_erf(),
        Activation::GeluTanh => xs.gelu(),
    }
}

struct Attention {
    q_proj: Dense,
    k_proj: Dense,
    v_proj: Dense,
    out_proj: Dense,
    heads: usize,
    head_dim: usize,
    scale: f64,
    mode: Mode,
}

impl Attention {
    fn new(width: usize, heads: usize, mode: Mode, vb: VarBuilder) -> candle_core::Result<Self> {
        let head_dim = width / heads;
        Ok(Attention {
            q_proj: Dense::new(width, width, mode, vb.pp("q_proj"))?,
            k_proj: Dense::new(width, width, mode, vb.pp("k_proj"))?,
            v_proj: Dense::new(width, width, mode, vb.pp("v_proj"))?,
            out_proj: Dense::new(width, width, mode, vb.pp("out_proj"))?,
            heads,
            head_dim,
            scale: (head_dim as f64).powf(-0.5),
            mode,
        })
    }

    /// `xs`: [batch, seq, width]; `mask`: additive [seq, seq] (causal) or none.
    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        self.attend(xs, xs, mask)
    }

    /// Attention of the `queries` tokens [batch, m, width] over all tokens of `xs`
    /// [batch, n, width]; `mask` is additive and broadcasts to [batch, heads, m, n].
    fn attend(
        &self,
        queries: &Tensor,
        xs: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, m, width) = queries.dims3()?;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            let n = t.dim(1)?;
            t.reshape((b, n, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split((self.q_proj.forward(queries)? * self.scale)?)?;
        let k = split(self.k_proj.forward(xs)?)?;
        let v = split(self.v_proj.forward(xs)?)?;
        let mut scores = q.matmul(&k.t()?.contiguous()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = match self.mode {
            Mode::Inference => candle_nn::ops::softmax_last_dim(&scores)?,
            Mode::Training => fused::softmax_last_dim(&scores)?,
        };
        let out = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, m, width))?;
        self.out_proj.forward(&out)
    }
}

struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: Norm,
    fc1: Dense,
    fc2: Dense,
    layer_norm2: Norm,
    act: Activation,
}

/// The shape of a transformer tower, common to the text and vision configs.
#[derive(Debug, Clone, Copy)]
struct TowerShape {
    width: usize,
    inner: usize,
    heads: usize,
    depth: usize,
    act: Activation,
    eps: f64,
}

impl From<&TextConfig> for TowerShape {
    fn from(c: &TextConfig) -> Self {
        TowerShape {
            width: c.hidden_size,
            inner: c.intermediate_size,
            heads: c.num_attention_heads,
            depth: c.num_hidden_layers,
            act: c.hidden_act,
            eps: c.layer_norm_eps,
        }
    }
}

impl From<&VisionConfig> for TowerShape {
    fn from(c: &VisionConfig) -> Self {
        TowerShape {
            width: c.hidden_size,
            inner: c.intermediate_size,
            heads: c.num_attention_heads,
            depth: c.num_hidden_layers,
            act: c.hidden_act,
            eps: c.layer_norm_eps,
        }
    }
}

impl EncoderLayer {
    fn new(shape: TowerShape, mode: Mode, vb: VarBuilder) -> candle_core::Result<Self> {
        let TowerShape {
            width,
            inner,
            heads,
            act,
            eps,
            ..
        } = shape;
        Ok(EncoderLayer {
            self_attn: Attention::new(width, heads, mode, vb.pp("self_attn"))?,
            layer_norm1: layer_norm(width, eps, mode, vb.pp("layer_norm1"))?,
            fc1: Dense::new(width, inner, mode, vb.pp("mlp").pp("fc1"))?,
            fc2: Dense::new(inner, width, mode, vb.pp("mlp").pp("fc2"))?,
            layer_norm2: layer_norm(width, eps, mode, vb.pp("layer_norm2"))?,
            act,
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let h = self
            .self_attn
            .forward(&self.layer_norm1.forward(xs)?, mask)?;
        self.mlp_block(&(xs + h)?)
    }

    /// The layer's output at one token per sequence only (`rows`: flat indices into
    /// [batch·seq]; `mask`: those tokens' additive mask rows, [batch, 1, 1, seq]). The keys
    /// and values still come from every token; queries, attention output and MLP are
    /// computed for the picked tokens alone, which is all a pooled tower's last layer needs.
    fn forward_picked(
        &self,
        xs: &Tensor,
        rows: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let normed = self.layer_norm1.forward(xs)?;
        let queries = pick_rows(&normed, rows)?;
        let h = self.self_attn.attend(&queries, &normed, mask)?;
        self.mlp_block(&(pick_rows(xs, rows)? + h)?)
    }

    /// The second residual block: `xs + MLP(LN2(xs))`.
    fn mlp_block(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.fc1.forward(&self.layer_norm2.forward(xs)?)?;
        let h = self.fc2.forward(&activate(self.act, &h, self.fc1.mode)?)?;
        xs + h
    }
}

/// Rows `rows` (flat indices into [batch·seq]) of `xs` [batch, seq, width], one per
/// sequence: [batch, 1, width].
fn pick_rows(xs: &Tensor, rows: &Tensor) -> candle_core::Result<Tensor> {
    let (b, n, width) = xs.dims3()?;
    xs.reshape((b * n, width))?
        .index_select(rows, 0)?
        .reshape((b, 1, width))
}

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
        let Some((last, layers)) = self.layers.split_last() else {
            return pick_rows(xs, pooled)?.squeeze(1);
        };
        let mut xs = xs.clone();
        for layer in layers {
            xs = layer.forward(&xs, mask)?;
        }
        last.forward_picked(&xs, pooled, pooled_mask)?.squeeze(1)
    }
}

/// The text tower (`text_model`).
struct TextTransformer {
    token_embedding: Embedding,
    position_embedding: Tensor,
    encoder: Encoder,
    final_layer_norm: Norm,
    eos_token_id: u32,
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

    /// Pooled, final-normalized hidden states for token sequences (each ≤ context length).
    fn forward(&self, sequences: &[Vec<u32>], device: &Device) -> candle_core::Result<Tensor> {
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

fn causal_mask(n: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (n, n), device)
}

/// The vision tower (`vision_model`).
struct VisionTransformer {
    class_embedding: Tensor,
    /// The patch convolution's kernel, [width, channels, patch, patch] as stored.
    patch_kernel: Tensor,
    /// The kernel as a [channels·patch·patch, width] matrix, computed once for inference:
    /// with stride equal to the kernel, the convolution is one matmul over unfolded patches
    /// (the same kernel as every other layer) instead of candle's general CPU conv2d.
    /// Training derives it at each forward from `patch_kernel`, whose updates it must see.
    patch_weight: Option<Tensor>,
    patch_size: usize,
    position_embedding: Tensor,
    pre_layrnorm: Norm,
    encoder: Encoder,
    post_layernorm: Norm,
}

/// A [width, c, p, p] convolution kernel as the [c·p·p, width] matrix unfolded patches meet.
fn kernel_matrix(kernel: &Tensor) -> candle_core::Result<Tensor> {
    let (width, c, p, q) = kernel.dims4()?;
    kernel.reshape((width, c * p * q))?.t()?.contiguous()
}

impl VisionTransformer {
    fn new(c: &VisionConfig, mode: Mode, vb: VarBuilder) -> candle_core::Result<Self> {
        let emb = vb.pp("embeddings");
        let patches = (c.image_size / c.patch_size).pow(2);
        let patch_kernel = emb.pp("patch_embedding").get(
            (c.hidden_size, c.num_channels, c.patch_size, c.patch_size),
            "weight",
        )?;
        let patch_weight = match mode {
            Mode::Inference => Some(kernel_matrix(&patch_kernel)?),
            Mode::Training => None,
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
        let weight = match &self.patch_weight {
            Some(w) => w.clone(),
            None => kernel_matrix(&self.patch_kernel)?,
        };
        let width = weight.dim(1)?;
        let patches = unfolded.matmul(&weight)?.reshape((b, gh * gw, width))?;
        let class = self
            .class_embedding
            .reshape((1, 1, width))?
            .broadcast_as((b, 1, width))?;
        let xs = Tensor::cat(&[&class.contiguous()?, &patches.contiguous()?], 1)?;
        let xs = xs.broadcast_add(&self.position_embedding)?;
        let xs = self.pre_layrnorm.forward(&xs)?;
        let n = xs.dim(1)?;
        // Pooled at the class token, the first of each sequence.
        let class_rows: Vec<u32> = (0..b).map(|i| (i * n) as u32).collect();
        let class_rows = Tensor::from_vec(class_rows, b, xs.device())?;
        let xs = self.encoder.forward_pooled(&xs, None, &class_rows, None)?;
        self.post_layernorm.forward(&xs)
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
        let pooled = self.vision.forward(pixels)?;
        Ok(self
            .visual_projection
            .forward(&pooled)?
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

    use super::{Clip, Mode};
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
        let model = Clip::with_mode(tiny_config(), vb, mode).expect("model builds");
        initialize(&varmap, &tiny_config(), 3).expect("init");
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
        // before the last LayerNorm learns.
        let (grads, varmap) = grads(Mode::Inference);
        for name in [
            "vision_model.embeddings.patch_embedding.weight",
            "text_model.embeddings.token_embedding.weight",
        ] {
            assert_eq!(grad_norm(&grads, &varmap, name), 0.0, "{name}");
        }
        assert!(grad_norm(&grads, &varmap, "visual_projection.weight") > 0.0);
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
}
