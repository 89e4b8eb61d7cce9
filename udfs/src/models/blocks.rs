//! The transformer pieces CLIP's towers and the built-in VLM's decoder share: pre-LayerNorm
//! encoder layers, attention, dense layers, each run by [`Mode`] with candle's fused kernels
//! (inference) or hqflow's kernels that carry a backward pass (training; see STACK.md on
//! candle's fused kernels dropping gradients).

use std::sync::Arc;

use candle_core::{Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::activation::{self, Epilogue, FusedActivation};
use super::attention_forward::attention_forward;
use super::bf16_matmul::{Bf16Dense, PackedWeight};
use super::clip_config::{Activation, TextConfig, VisionConfig};
use crate::training::{attention, fused, linear};

/// How a model computes its LayerNorms, attention softmax and dense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// candle's fused kernels and one-pass activations ([`super::activation`]): fastest,
    /// but no gradient flows through them.
    #[default]
    Inference,
    /// As [`Mode::Inference`], with the dense layers' products in bfloat16 on the CPU
    /// ([`super::bf16_matmul`]; callers check that the CPU has AVX512-BF16).
    InferenceBf16,
    /// Kernels with a backward pass ([`fused`]), so `backward` reaches every parameter;
    /// weights are read from their variables at each forward, so optimizer updates are seen.
    Training,
}

/// A LayerNorm that runs candle's kernel or hqflow's by [`Mode`].
pub(crate) struct Norm {
    fused: LayerNorm,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    mode: Mode,
}

impl Norm {
    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self.mode {
            Mode::Inference | Mode::InferenceBf16 => self.fused.forward(xs),
            Mode::Training => fused::layer_norm(xs, &self.weight, &self.bias, self.eps),
        }
    }
}

pub(crate) fn layer_norm(
    size: usize,
    eps: f64,
    mode: Mode,
    vb: VarBuilder,
) -> candle_core::Result<Norm> {
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
/// all rows); in f32 on the CPU one gemm onto the bias, a node with its own backward pass
/// ([`linear::linear`]). Inference models read their weights once, when built: in
/// [`Mode::Inference`] each weight is kept transposed, in [`Mode::InferenceBf16`] packed for
/// the bfloat16 kernel, which adds the bias itself; later changes to the variables they came
/// from are not seen (training reads them at each forward).
pub(crate) struct Dense {
    weights: Weights,
    mode: Mode,
}

enum Weights {
    /// Training: [out, in], the variable itself, so optimizer updates are seen.
    F32 {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// f32 inference: transposed once at load to [in, out], the layout matrix products
    /// read without gathering ([`linear::linear_transposed`]).
    F32Transposed {
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
    Bf16(Arc<PackedWeight>),
}

impl Weights {
    fn new(weight: Tensor, bias: Option<Tensor>, mode: Mode) -> candle_core::Result<Self> {
        Ok(match mode {
            Mode::InferenceBf16 => {
                Weights::Bf16(Arc::new(PackedWeight::new(&weight, bias.as_ref())?))
            }
            Mode::Inference => Weights::F32Transposed {
                weight_t: linear::transposed(&weight)?,
                bias,
            },
            Mode::Training => Weights::F32 { weight, bias },
        })
    }
}

impl Dense {
    pub(crate) fn new(
        input: usize,
        output: usize,
        mode: Mode,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let weight = vb.get((output, input), "weight")?;
        let bias = vb.get(output, "bias")?;
        Ok(Dense {
            weights: Weights::new(weight, Some(bias), mode)?,
            mode,
        })
    }

    pub(crate) fn no_bias(
        input: usize,
        output: usize,
        mode: Mode,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let weight = vb.get((output, input), "weight")?;
        Ok(Dense {
            weights: Weights::new(weight, None, mode)?,
            mode,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_then(xs, Epilogue::None)
    }

    /// `act(x Wᵀ + b)`; the bf16 kernel applies GELU and quick GELU as it stores each tile,
    /// saving the passes over the layer's output that separate activation ops make.
    pub(crate) fn forward_activated(
        &self,
        xs: &Tensor,
        act: Activation,
    ) -> candle_core::Result<Tensor> {
        match &self.weights {
            Weights::Bf16(_) if epilogue(act) != Epilogue::None => {
                self.forward_then(xs, epilogue(act))
            }
            _ => activate(act, self.forward(xs)?, self.mode),
        }
    }

    /// `x Wᵀ + b`, then `epilogue` (bf16 weights only; f32 callers pass `None`).
    fn forward_then(&self, xs: &Tensor, epilogue: Epilogue) -> candle_core::Result<Tensor> {
        // One gemm onto rows pre-filled with the bias where it applies (CPU, f32): no
        // zero-filled product and separate bias pass; in training also one graph node with
        // its own backward pass.
        let fused = match &self.weights {
            Weights::F32 { weight, bias } => linear::linear(xs, weight, bias.as_ref())?,
            Weights::F32Transposed { weight_t, bias } => {
                linear::linear_transposed(xs, weight_t, bias.as_ref())?
            }
            Weights::Bf16(_) => None,
        };
        if let Some(ys) = fused {
            return Ok(ys);
        }
        let dims = xs.dims().to_vec();
        let input = dims.last().copied().unwrap_or(1);
        let rows = xs.contiguous()?.reshape(((), input))?;
        let ys = match &self.weights {
            Weights::Bf16(packed) => {
                rows.apply_op1_no_bwd(&Bf16Dense(Arc::clone(packed), epilogue))?
            }
            Weights::F32 { weight, bias } => add_bias(rows.matmul(&weight.t()?)?, bias)?,
            Weights::F32Transposed { weight_t, bias } => add_bias(rows.matmul(weight_t)?, bias)?,
        };
        let mut out = dims;
        if let Some(last) = out.last_mut() {
            *last = ys.dim(1)?;
        }
        ys.reshape(out)
    }
}

fn add_bias(ys: Tensor, bias: &Option<Tensor>) -> candle_core::Result<Tensor> {
    match bias {
        None => Ok(ys),
        Some(b) => ys.broadcast_add(b),
    }
}

/// The one-pass kernel for `act`, where there is one.
fn epilogue(act: Activation) -> Epilogue {
    match act {
        Activation::QuickGelu => Epilogue::QuickGelu,
        Activation::Gelu => Epilogue::Gelu,
        Activation::GeluTanh => Epilogue::None,
    }
}

/// `act(xs)`; `xs` is the caller's own (a dense layer's fresh output): inference on the CPU
/// overwrites it.
fn activate(act: Activation, xs: Tensor, mode: Mode) -> candle_core::Result<Tensor> {
    // Inference on the CPU: one vectorized pass in place instead of candle's ops.
    let one_pass = mode != Mode::Training
        && epilogue(act) != Epilogue::None
        && xs.device().is_cpu()
        && xs.dtype() == candle_core::DType::F32
        && xs.is_contiguous()
        && activation::available();
    if one_pass {
        xs.inplace_op1(&FusedActivation(epilogue(act)))?;
        // Like the other fused kernels, no gradient through it (the dense layer's op that
        // made `xs` would otherwise pass gradients as if there were no activation).
        return Ok(xs.detach());
    }
    let xs = &xs;
    match act {
        Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
        Activation::Gelu if mode == Mode::Training => fused::gelu_erf(xs),
        Activation::Gelu => xs.gelu_erf(),
        Activation::GeluTanh => xs.gelu(),
    }
}

pub(crate) struct Attention {
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
    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.attend(xs, xs, mask)
    }

    /// Attention of the `queries` tokens [batch, m, width] over all tokens of `xs`
    /// [batch, n, width]; `mask` is additive and broadcasts to [batch, heads, m, n].
    pub(crate) fn attend(
        &self,
        queries: &Tensor,
        xs: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let q = self.q_proj.forward(queries)?;
        let (k, v) = (self.k_proj.forward(xs)?, self.v_proj.forward(xs)?);
        // One kernel where it applies (CPU, f32), reading the heads in place: in training
        // with its own backward pass, in inference register-tiled.
        let scale = self.scale as f32;
        let fused = match self.mode {
            Mode::Training => attention::attention(&q, &k, &v, self.heads, scale, mask)?,
            Mode::Inference | Mode::InferenceBf16 => {
                attention_forward(&q, &k, &v, self.heads, scale, mask)?
            }
        };
        if let Some(out) = fused {
            return self.out_proj.forward(&out);
        }
        self.attend_projected(&q, &self.split_heads(&k)?, &self.split_heads(&v)?, mask)
    }

    /// [batch, n, width] → [batch, heads, n, head_dim].
    fn split_heads(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, _) = t.dims3()?;
        t.reshape((b, n, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// The keys and values of `xs` [batch, n, width], each [batch, heads, n, head_dim]: what
    /// a decoder's cache keeps for the tokens it has seen.
    pub(crate) fn keys_values(&self, xs: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((
            self.split_heads(&self.k_proj.forward(xs)?)?,
            self.split_heads(&self.v_proj.forward(xs)?)?,
        ))
    }

    /// Attention of `queries` [batch, m, width] over keys and values from
    /// [`Attention::keys_values`] ([batch, heads, n, head_dim]).
    pub(crate) fn attend_kv(
        &self,
        queries: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.attend_projected(&self.q_proj.forward(queries)?, k, v, mask)
    }

    /// As [`Attention::attend_kv`], from the queries' projections `q` [batch, m, width].
    fn attend_projected(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, m, width) = q.dims3()?;
        let q = self.split_heads(&(q * self.scale)?)?;
        let mut scores = q.matmul(&k.t()?.contiguous()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = match self.mode {
            Mode::Inference | Mode::InferenceBf16 => candle_nn::ops::softmax_last_dim(&scores)?,
            Mode::Training => fused::softmax_last_dim(&scores)?,
        };
        let out = weights.matmul(v)?.transpose(1, 2)?.reshape((b, m, width))?;
        self.out_proj.forward(&out)
    }
}

impl Attention {
    /// Attention of one query per sequence, `query` [batch, 1, width], over keys and values
    /// [batch, heads, n, head_dim] that may be views into a larger cache (`mask`
    /// [batch, 1, 1, n]): the matrix products read the views in place, transposed keys
    /// included, so nothing of the cache is copied. For decoding, with candle's fused
    /// softmax (no gradient).
    pub(crate) fn attend_one(
        &self,
        query: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, _, width) = query.dims3()?;
        let q = (self.q_proj.forward(query)? * self.scale)?.reshape((
            b,
            self.heads,
            1,
            self.head_dim,
        ))?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = weights.matmul(v)?;
        self.out_proj.forward(&out.reshape((b, 1, width))?)
    }
}

/// One decoder layer's keys and values for the tokens seen so far: buffers of
/// [batch, heads, capacity, head_dim] filled up to `len`, so that a new token's keys are
/// written in place instead of copying the cache at every step.
pub(crate) struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerCache {
    /// A cache of `capacity` tokens holding `k` and `v` ([batch, heads, n, head_dim]).
    fn new(k: &Tensor, v: &Tensor, capacity: usize) -> candle_core::Result<Self> {
        let (b, h, n, d) = k.dims4()?;
        let buffer = || Tensor::zeros((b, h, capacity.max(n), d), k.dtype(), k.device());
        let cache = LayerCache {
            k: buffer()?,
            v: buffer()?,
            len: n,
        };
        cache.k.slice_set(&k.contiguous()?, 2, 0)?;
        cache.v.slice_set(&v.contiguous()?, 2, 0)?;
        Ok(cache)
    }

    /// Appends one token's keys and values ([batch, heads, 1, head_dim]).
    fn push(&mut self, k: &Tensor, v: &Tensor) -> candle_core::Result<()> {
        if self.len >= self.k.dim(2)? {
            candle_core::bail!("the decoder cache is full ({} tokens)", self.len);
        }
        self.k.slice_set(&k.contiguous()?, 2, self.len)?;
        self.v.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len += 1;
        Ok(())
    }

    /// The keys and values held, [batch, heads, len, head_dim] (views of the buffers).
    fn held(&self) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((
            self.k.narrow(2, 0, self.len)?,
            self.v.narrow(2, 0, self.len)?,
        ))
    }

    /// Keeps the sequences at `rows` (indices into the batch), in that order.
    pub(crate) fn select(&mut self, rows: &Tensor) -> candle_core::Result<()> {
        self.k = self.k.index_select(rows, 0)?;
        self.v = self.v.index_select(rows, 0)?;
        Ok(())
    }
}

pub(crate) struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: Norm,
    fc1: Dense,
    fc2: Dense,
    layer_norm2: Norm,
    act: Activation,
}

/// The shape of a transformer tower, common to the text and vision configs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TowerShape {
    pub(crate) width: usize,
    pub(crate) inner: usize,
    pub(crate) heads: usize,
    pub(crate) depth: usize,
    pub(crate) act: Activation,
    pub(crate) eps: f64,
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
    pub(crate) fn new(shape: TowerShape, mode: Mode, vb: VarBuilder) -> candle_core::Result<Self> {
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

    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let h = self
            .self_attn
            .forward(&self.layer_norm1.forward(xs)?, mask)?;
        self.mlp_block(&(xs + h)?)
    }

    /// The layer's output at one token per sequence only (`rows`: flat indices into
    /// [batch·seq]; `mask`: those tokens' additive mask rows, [batch, 1, 1, seq]). The keys
    /// and values still come from every token; queries, attention output and MLP are
    /// computed for the picked tokens alone, which is all a pooled tower's last layer needs.
    pub(crate) fn forward_picked(
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

    /// The layer over `xs` [batch, n, width] that also returns its keys and values in a
    /// cache with room for `capacity` tokens, to start a decoder.
    pub(crate) fn forward_caching(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        capacity: usize,
    ) -> candle_core::Result<(Tensor, LayerCache)> {
        let normed = self.layer_norm1.forward(xs)?;
        let (k, v) = self.self_attn.keys_values(&normed)?;
        let h = self.self_attn.attend_kv(&normed, &k, &v, mask)?;
        Ok((
            self.mlp_block(&(xs + h)?)?,
            LayerCache::new(&k, &v, capacity)?,
        ))
    }

    /// The layer over one new token per sequence, `xs` [batch, 1, width], attending to the
    /// cached tokens and itself (`mask` [batch, 1, 1, cached + 1]); the cache grows by its
    /// keys and values.
    pub(crate) fn forward_cached(
        &self,
        xs: &Tensor,
        cache: &mut LayerCache,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let normed = self.layer_norm1.forward(xs)?;
        let (k, v) = self.self_attn.keys_values(&normed)?;
        cache.push(&k, &v)?;
        let (k, v) = cache.held()?;
        let h = self.self_attn.attend_one(&normed, &k, &v, mask)?;
        self.mlp_block(&(xs + h)?)
    }

    /// The second residual block: `xs + MLP(LN2(xs))`.
    pub(crate) fn mlp_block(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let h = self
            .fc1
            .forward_activated(&self.layer_norm2.forward(xs)?, self.act)?;
        xs + self.fc2.forward(&h)?
    }
}

/// Rows `rows` (flat indices into [batch·seq]) of `xs` [batch, seq, width], the same
/// number k from each batch row: [batch, k, width].
pub(crate) fn pick_rows(xs: &Tensor, rows: &Tensor) -> candle_core::Result<Tensor> {
    let (b, n, width) = xs.dims3()?;
    // The same number of rows from each sequence (one, except for packed sequences).
    let per = rows.dim(0)? / b.max(1);
    xs.reshape((b * n, width))?
        .index_select(rows, 0)?
        .reshape((b, per, width))
}

pub(crate) fn causal_mask(n: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (n, n), device)
}
