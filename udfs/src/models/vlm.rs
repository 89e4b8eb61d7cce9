//! hqflow's vision-language refiner: a CLIP vision tower whose tokens, projected to the
//! decoder's width, open a causal transformer decoder that also reads the alt-text and a task
//! token, then writes one of HQ-CLIP's four texts (the LLaVA / PaliGemma layout at a small
//! scale: HQ-CLIP's annotator is Qwen2-VL, a ViT feeding an LLM).
//!
//! The sequence is `[image tokens][alt-text, padded][task] text… EOS`. The prefix before the
//! text attends to all of itself (PaliGemma's prefix-LM; padding slots are masked out); the
//! written text attends causally. The output head shares the token embedding's weights.
//! [`Vlm::loss`] trains with teacher forcing; [`Vlm::generate`] decodes greedily with a cache
//! of each layer's keys and values, many rows and tasks in one batch, and drops sequences
//! from the batch as they end.

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use super::ModelResult;
use super::blocks::{Dense, EncoderLayer, LayerCache, Mode, Norm, TowerShape, layer_norm};
use super::clip::VisionTransformer;
use super::vlm_config::{NEGATIVE_PLAUSIBILITY, Task, VlmConfig};

/// One sequence to write: an image (index into the batch's pixels), its alt-text tokens and
/// the task.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Which image of the batch.
    pub image: usize,
    /// The alt-text's token ids (cut to the config's `alt_text_length`).
    pub alt_text: Vec<u32>,
    /// Which text to write.
    pub task: Task,
}

/// What a teacher-forced batch measured.
#[derive(Debug)]
pub struct LossOutput {
    /// Mean token cross-entropy (a scalar tensor, for `backward`).
    pub loss: Tensor,
    /// Share of target tokens the model ranks first.
    pub token_accuracy: f32,
    /// Target tokens in the batch.
    pub tokens: usize,
}

/// The refiner.
pub struct Vlm {
    vision: VisionTransformer,
    image_projection: Dense,
    embed_tokens: Tensor,
    embed_positions: Tensor,
    task_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: Norm,
    /// The tagging head's weight and bias, if the config has one.
    tagger: Option<(Tensor, Tensor)>,
    config: VlmConfig,
    device: Device,
}

impl Vlm {
    /// Builds the model to run in `mode` from tensors named `vision_model.*` (a CLIP vision
    /// tower's names), `image_projection`, `decoder.*`.
    pub fn new(config: VlmConfig, vb: VarBuilder, mode: Mode) -> ModelResult<Self> {
        let d = &config.decoder_config;
        let v = &config.vision_config;
        let dec = vb.pp("decoder");
        let shape = TowerShape {
            width: d.hidden_size,
            inner: d.intermediate_size,
            heads: d.num_attention_heads,
            depth: d.num_hidden_layers,
            act: d.hidden_act,
            eps: d.layer_norm_eps,
        };
        let layers = (0..d.num_hidden_layers)
            .map(|i| EncoderLayer::new(shape, mode, dec.pp("layers").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let tagger = match &config.tagger {
            Some(t) => {
                let vb = vb.pp("tagger");
                let n = t.tags.len();
                Some((vb.get((n, v.hidden_size), "weight")?, vb.get(n, "bias")?))
            }
            None => None,
        };
        Ok(Vlm {
            tagger,
            vision: VisionTransformer::new(v, mode, vb.pp("vision_model"))?,
            image_projection: Dense::new(
                v.hidden_size,
                d.hidden_size,
                mode,
                vb.pp("image_projection"),
            )?,
            embed_tokens: dec
                .pp("embed_tokens")
                .get((d.vocab_size, d.hidden_size), "weight")?,
            embed_positions: dec
                .pp("embed_positions")
                .get((d.max_position_embeddings, d.hidden_size), "weight")?,
            task_embedding: dec
                .pp("task_embedding")
                .get((Task::ALL.len(), d.hidden_size), "weight")?,
            layers,
            final_layer_norm: layer_norm(
                d.hidden_size,
                d.layer_norm_eps,
                mode,
                dec.pp("final_layer_norm"),
            )?,
            device: vb.device().clone(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VlmConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The vision tower's tokens [images, image_tokens, vision width], class token first:
    /// what both the decoder (through the projection) and the tagging head read.
    pub fn see(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.vision.tokens(pixels)
    }

    /// The tagging head's logits [images, tags] from the tower's tokens (None without a
    /// head).
    pub fn tag_logits(&self, seen: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let Some((weight, bias)) = &self.tagger else {
            return Ok(None);
        };
        let class = seen.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(Some(class.matmul(&weight.t()?)?.broadcast_add(bias)?))
    }

    /// Image tokens in the decoder's width, [images, image_tokens, hidden].
    fn image_tokens(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.image_projection.forward(&self.see(pixels)?)
    }

    /// Token embeddings of `ids` [b, n].
    fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n) = ids.dims2()?;
        let width = self.embed_tokens.dim(1)?;
        self.embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, n, width))
    }

    /// The prefix of each prompt, [prompts, prefix_length, hidden] with positions added, and
    /// how many alt-text slots each fills (the rest are padding).
    fn prefix(
        &self,
        images: &Tensor,
        prompts: &[Prompt],
    ) -> candle_core::Result<(Tensor, Vec<usize>)> {
        let c = &self.config;
        let l = c.alt_text_length;
        let pad = c.decoder_config.pad_token_id;
        let b = prompts.len();
        let picks: Vec<u32> = prompts.iter().map(|p| p.image as u32).collect();
        let image = images.index_select(&Tensor::from_vec(picks, b, &self.device)?, 0)?;
        let mut ids = Vec::with_capacity(b * l);
        let mut padding = Vec::with_capacity(b);
        for p in prompts {
            let kept = p.alt_text.len().min(l);
            ids.extend_from_slice(&p.alt_text[..kept]);
            ids.extend(std::iter::repeat_n(pad, l - kept));
            padding.push(kept);
        }
        let alt = self.embed(&Tensor::from_vec(ids, (b, l), &self.device)?)?;
        let tasks: Vec<u32> = prompts.iter().map(|p| p.task.index() as u32).collect();
        let task = self
            .task_embedding
            .index_select(&Tensor::from_vec(tasks, b, &self.device)?, 0)?
            .unsqueeze(1)?;
        let xs = Tensor::cat(&[&image, &alt, &task], 1)?;
        let n = xs.dim(1)?;
        let xs = xs.broadcast_add(&self.embed_positions.narrow(0, 0, n)?)?;
        Ok((xs, padding))
    }

    /// Additive mask [b, 1, n, n] over a prefix of `p` tokens and `n - p` written tokens:
    /// the prefix sees all of itself, written tokens see the prefix and what precedes them,
    /// nobody sees padding.
    fn mask(&self, filled: &[usize], n: usize) -> candle_core::Result<Tensor> {
        let p = self.config.prefix_length();
        let mut mask = Vec::with_capacity(filled.len() * n * n);
        for &kept in filled {
            for i in 0..n {
                for j in 0..n {
                    let hidden = self.is_padding(kept, j) || (j >= p && j > i);
                    mask.push(if hidden { f32::NEG_INFINITY } else { 0.0 });
                }
            }
        }
        Tensor::from_vec(mask, (filled.len(), 1, n, n), &self.device)
    }

    /// Whether position `j` is an alt-text slot left empty by an alt-text of `kept` tokens.
    fn is_padding(&self, kept: usize, j: usize) -> bool {
        let first = self.config.image_tokens() + kept;
        j >= first && j < self.config.image_tokens() + self.config.alt_text_length
    }

    /// Teacher-forced cross-entropy of writing `targets[i]` (ids ending in EOS) for
    /// `prompts[i]` over images `pixels` [images, 3, side, side].
    pub fn loss(
        &self,
        pixels: &Tensor,
        prompts: &[Prompt],
        targets: &[Vec<u32>],
    ) -> ModelResult<LossOutput> {
        let b = prompts.len();
        let t = targets.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || t == 0 || targets.len() != b {
            return Err(super::ModelError(
                "a refiner batch needs prompts, each with a non-empty target".into(),
            ));
        }
        let p = self.config.prefix_length();
        let images = self.image_tokens(pixels)?;
        let (prefix, padding) = self.prefix(&images, prompts)?;
        // Inputs after the prefix: each target but its last token, padded.
        let pad = self.config.decoder_config.pad_token_id;
        let mut inputs = Vec::with_capacity(b * (t - 1));
        for target in targets {
            let used = target.len() - 1;
            inputs.extend_from_slice(&target[..used]);
            inputs.extend(std::iter::repeat_n(pad, t - 1 - used));
        }
        let xs = if t > 1 {
            let written = self.embed(&Tensor::from_vec(inputs, (b, t - 1), &self.device)?)?;
            let written = written.broadcast_add(&self.embed_positions.narrow(0, p, t - 1)?)?;
            Tensor::cat(&[&prefix, &written], 1)?
        } else {
            prefix
        };
        let n = xs.dim(1)?;
        let mask = self.mask(&padding, n)?;
        let mut xs = xs;
        for layer in &self.layers {
            xs = layer.forward(&xs, Some(&mask))?;
        }
        // Predictions come from the task token and the written tokens, for real targets only.
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            for (k, &id) in target.iter().enumerate() {
                rows.push((i * n + p - 1 + k) as u32);
                labels.push(id);
            }
        }
        let tokens = rows.len();
        let width = xs.dim(2)?;
        let picked = xs
            .reshape((b * n, width))?
            .index_select(&Tensor::from_vec(rows, tokens, &self.device)?, 0)?;
        let hidden = self.final_layer_norm.forward(&picked)?;
        let logits = hidden.matmul(&self.embed_tokens.t()?)?;
        let labels = Tensor::from_vec(labels, tokens, &self.device)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
        let best = logits.argmax(D::Minus1)?;
        let right: f32 = best
            .eq(&labels)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar()?;
        Ok(LossOutput {
            loss,
            token_accuracy: right / tokens as f32,
            tokens,
        })
    }

    /// Greedy texts (token ids, without EOS) for `prompts` over images `pixels`: each stops
    /// at EOS or its task's bound; long negatives are decoded contrastively when the config
    /// asks (see [`NEGATIVE_PLAUSIBILITY`]). Run in [`Mode::Inference`].
    pub fn generate(&self, pixels: &Tensor, prompts: &[Prompt]) -> ModelResult<Vec<Vec<u32>>> {
        self.generate_seen(&self.see(pixels)?, prompts)
    }

    /// [`Vlm::generate`] from the tower's tokens ([`Vlm::see`]).
    pub fn generate_seen(&self, seen: &Tensor, prompts: &[Prompt]) -> ModelResult<Vec<Vec<u32>>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let c = &self.config;
        // Each contrasted negative gets a guide: the same prompt asking for the long
        // description, fed the negative's words instead of its own.
        let mut all: Vec<Prompt> = prompts.to_vec();
        let mut partner: Vec<Option<usize>> = vec![None; prompts.len()];
        let mut guide: Vec<Option<usize>> = vec![None; prompts.len()];
        if c.negative_contrast > 0.0 {
            for (i, prompt) in prompts.iter().enumerate() {
                if prompt.task == Task::LongNeg {
                    guide[i] = Some(all.len());
                    partner.push(Some(i));
                    all.push(Prompt {
                        task: Task::LongPos,
                        ..prompt.clone()
                    });
                }
            }
        }
        guide.resize(all.len(), None);
        let mut written: Vec<Vec<u32>> = vec![Vec::new(); all.len()];
        let eos = c.decoder_config.eos_token_id;
        let p = c.prefix_length();
        let images = self.image_projection.forward(seen)?;
        let (prefix, padding) = self.prefix(&images, &all)?;
        let mask = self.mask(&padding, p)?;
        let mut xs = prefix;
        let mut caches: Vec<LayerCache> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (out, cache) =
                layer.forward_caching(&xs, Some(&mask), p + c.max_new_tokens.max())?;
            xs = out;
            caches.push(cache);
        }
        // Sequences still writing, by prompt index; their rows in the caches, in order.
        let mut active: Vec<usize> = (0..all.len()).collect();
        let mut last = xs.i((.., p - 1, ..))?.contiguous()?;
        let limit = c.max_new_tokens.max();
        for step in 0..limit {
            let hidden = self.final_layer_norm.forward(&last)?;
            let logits = hidden.matmul(&self.embed_tokens.t()?)?;
            let next = if active.iter().any(|&i| guide[i].is_some()) {
                self.contrasted_choices(&logits, &active, &guide)?
            } else {
                logits.argmax(D::Minus1)?.to_vec1()?
            };
            let mut keep = Vec::with_capacity(active.len());
            let mut writing = vec![false; all.len()];
            for (row, &prompt) in active.iter().enumerate() {
                // A guide writes what its negative wrote, and stops with it.
                let (id, bound) = match partner[prompt] {
                    Some(neg) => {
                        if !writing[neg] {
                            continue;
                        }
                        let id = *written[neg].last().unwrap_or(&eos);
                        (id, usize::MAX)
                    }
                    None => (next[row], c.max_new_tokens.of(all[prompt].task)),
                };
                if id == eos {
                    continue;
                }
                written[prompt].push(id);
                if written[prompt].len() < bound {
                    writing[prompt] = true;
                    keep.push((row, id));
                }
            }
            if keep.is_empty() || step + 1 == limit {
                break;
            }
            let ids: Vec<u32> = keep.iter().map(|&(_, id)| id).collect();
            if keep.len() < active.len() {
                let rows = Tensor::from_vec(
                    keep.iter().map(|&(r, _)| r as u32).collect::<Vec<u32>>(),
                    keep.len(),
                    &self.device,
                )?;
                for cache in &mut caches {
                    cache.select(&rows)?;
                }
                active = keep.iter().map(|&(r, _)| active[r]).collect();
            }
            let position = p + step;
            let x = self
                .embed(&Tensor::from_vec(ids, (active.len(), 1), &self.device)?)?
                .broadcast_add(&self.embed_positions.narrow(0, position, 1)?)?;
            // The new token sees every cached token but padding, and itself.
            let n = position + 1;
            let mut step_mask = Vec::with_capacity(active.len() * n);
            for &prompt in &active {
                for j in 0..n {
                    let hidden = self.is_padding(padding[prompt], j);
                    step_mask.push(if hidden { f32::NEG_INFINITY } else { 0.0 });
                }
            }
            let step_mask = Tensor::from_vec(step_mask, (active.len(), 1, 1, n), &self.device)?;
            let mut x = x;
            for (layer, cache) in self.layers.iter().zip(&mut caches) {
                x = layer.forward_cached(&x, cache, Some(&step_mask))?;
            }
            last = x.squeeze(1)?;
        }
        written.truncate(prompts.len());
        Ok(written)
    }

    /// The next token of each active row: greedy, but contrastive for a negative whose
    /// guide is active (a guide's own choice is not used).
    fn contrasted_choices(
        &self,
        logits: &Tensor,
        active: &[usize],
        guide: &[Option<usize>],
    ) -> ModelResult<Vec<u32>> {
        let log_probs: Vec<Vec<f32>> = candle_nn::ops::log_softmax(logits, D::Minus1)?.to_vec2()?;
        let row_of: std::collections::HashMap<usize, usize> =
            active.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        let c = self.config.negative_contrast;
        let floor = NEGATIVE_PLAUSIBILITY.ln();
        let greedy = |lp: &[f32]| {
            lp.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
        };
        Ok(active
            .iter()
            .enumerate()
            .map(|(row, &prompt)| {
                let neg = &log_probs[row];
                let (best, top) = greedy(neg);
                let Some(pos) = guide[prompt].and_then(|g| row_of.get(&g)) else {
                    return best as u32;
                };
                let pos = &log_probs[*pos];
                let mut choice = (best, f32::NEG_INFINITY);
                for (id, (&n, &q)) in neg.iter().zip(pos).enumerate() {
                    if n - top < floor {
                        continue;
                    }
                    let score = (1.0 + c) * n - c * q;
                    if score > choice.1 {
                        choice = (id, score);
                    }
                }
                choice.0 as u32
            })
            .collect())
    }
}

#[cfg(test)]
impl Vlm {
    /// Log-probabilities of the next token after `written`, from one uncached forward pass
    /// (what [`Vlm::loss`] computes), to check the cached decoder against.
    fn next_log_probs(
        &self,
        pixels: &Tensor,
        prompt: &Prompt,
        written: &[u32],
    ) -> ModelResult<Vec<f32>> {
        let images = self.image_tokens(pixels)?;
        let (prefix, padding) = self.prefix(&images, std::slice::from_ref(prompt))?;
        let p = self.config.prefix_length();
        let xs = if written.is_empty() {
            prefix
        } else {
            let ids = Tensor::from_vec(written.to_vec(), (1, written.len()), &self.device)?;
            let w = self
                .embed(&ids)?
                .broadcast_add(&self.embed_positions.narrow(0, p, written.len())?)?;
            Tensor::cat(&[&prefix, &w], 1)?
        };
        let n = xs.dim(1)?;
        let mask = self.mask(&padding, n)?;
        let mut xs = xs;
        for layer in &self.layers {
            xs = layer.forward(&xs, Some(&mask))?;
        }
        let last = self.final_layer_norm.forward(&xs.i((.., n - 1, ..))?)?;
        let logits = last.matmul(&self.embed_tokens.t()?)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?
            .squeeze(0)?
            .to_vec1()?)
    }

    /// The greedy choice after `written`, by an uncached forward pass.
    fn greedy_next(&self, pixels: &Tensor, prompt: &Prompt, written: &[u32]) -> ModelResult<u32> {
        let lp = self.next_log_probs(pixels, prompt, written)?;
        Ok(argmax(&lp))
    }
}

#[cfg(test)]
fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::models::vlm_config::tiny_config;

    /// Deterministic values uniform in [-a, a] with standard deviation `std` (a test that
    /// decodes from unseeded random weights passes or fails by chance).
    fn spread(shape: impl Into<candle_core::Shape>, std: f32, seed: u64) -> Tensor {
        let shape = shape.into();
        let mut state = seed;
        let a = std * 3f32.sqrt();
        let values: Vec<f32> = (0..shape.elem_count())
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).expect("values")
    }

    fn random_model(mode: Mode) -> (Vlm, VarMap) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        // A first build creates the variables; the model is built again once they hold their
        // values, as inference models read (and transpose) their weights when built.
        Vlm::new(tiny_config(16), vb.clone(), mode).expect("model");
        // Unit-scale random weights, so that decoding follows the inputs.
        let data = varmap.data().lock().expect("vars");
        let mut vars: Vec<_> = data.iter().collect();
        vars.sort_by(|a, b| a.0.cmp(b.0));
        for (i, (_, var)) in vars.into_iter().enumerate() {
            var.set(&spread(var.shape(), 0.5, i as u64)).expect("set");
        }
        drop(data);
        (Vlm::new(tiny_config(16), vb, mode).expect("model"), varmap)
    }

    /// Greedy decoding with the cache writes what a full forward pass ranks first at every
    /// step: the cache and its masks change nothing but the cost.
    #[test]
    fn cached_decoding_matches_full_forwards() {
        let (model, _vars) = random_model(Mode::Inference);
        let pixels = spread((2, 3, 8, 8), 1.0, 99);
        let prompts = vec![
            Prompt {
                image: 0,
                alt_text: vec![0, 5, 6, 1],
                task: Task::LongPos,
            },
            Prompt {
                image: 1,
                alt_text: vec![0, 7, 1],
                task: Task::ShortNeg,
            },
            Prompt {
                image: 1,
                alt_text: vec![],
                task: Task::LongNeg,
            },
        ];
        let written = model.generate(&pixels, &prompts).expect("generate");
        assert!(
            written.iter().map(Vec::len).sum::<usize>() > 3,
            "{written:?}"
        );
        for (prompt, text) in prompts.iter().zip(&written) {
            // Re-derive each token with an uncached forward over everything written so far.
            let bound = model.config.max_new_tokens.of(prompt.task);
            assert!(text.len() <= bound);
            for k in 0..text.len() {
                let full = model
                    .greedy_next(&pixels, prompt, &text[..k])
                    .expect("next");
                assert_eq!(full, text[k], "prompt {prompt:?} step {k}");
            }
        }
    }

    /// With a contrast, each token of a long negative is, by full forward passes, the
    /// plausible token the negative task favours most over the long-description task after
    /// the same words; other tasks still decode greedily.
    #[test]
    fn contrastive_negatives_match_full_forwards() {
        let (mut model, _vars) = random_model(Mode::Inference);
        model.config.negative_contrast = 1.5;
        let pixels = spread((3, 3, 8, 8), 1.0, 98);
        let prompts: Vec<Prompt> = (0..3)
            .flat_map(|image| {
                [Task::LongNeg, Task::ShortPos].map(|task| Prompt {
                    image,
                    alt_text: vec![0, 5 + image as u32, 1],
                    task,
                })
            })
            .collect();
        let written = model.generate(&pixels, &prompts).expect("generate");
        let mut changed = 0;
        for (prompt, text) in prompts.iter().zip(&written) {
            for k in 0..text.len() {
                let neg = model
                    .next_log_probs(&pixels, prompt, &text[..k])
                    .expect("log probs");
                let expected = if prompt.task == Task::LongNeg {
                    let as_pos = Prompt {
                        task: Task::LongPos,
                        ..prompt.clone()
                    };
                    let pos = model
                        .next_log_probs(&pixels, &as_pos, &text[..k])
                        .expect("log probs");
                    let top = neg[argmax(&neg) as usize];
                    let scores: Vec<f32> = neg
                        .iter()
                        .zip(&pos)
                        .map(|(&n, &q)| {
                            if n - top < NEGATIVE_PLAUSIBILITY.ln() {
                                f32::NEG_INFINITY
                            } else {
                                2.5 * n - 1.5 * q
                            }
                        })
                        .collect();
                    argmax(&scores)
                } else {
                    argmax(&neg)
                };
                assert_eq!(expected, text[k], "prompt {prompt:?} step {k}");
                changed += usize::from(expected != argmax(&neg));
            }
        }
        assert!(
            changed > 0,
            "the contrast never changed a choice: {written:?}"
        );
    }

    #[test]
    fn gradients_reach_every_parameter() {
        let (model, varmap) = random_model(Mode::Training);
        let pixels = spread((2, 3, 8, 8), 1.0, 99);
        let prompts = vec![
            Prompt {
                image: 0,
                alt_text: vec![0, 5, 1],
                task: Task::LongPos,
            },
            Prompt {
                image: 1,
                alt_text: vec![0, 1],
                task: Task::ShortPos,
            },
        ];
        let out = model
            .loss(&pixels, &prompts, &[vec![3, 4, 1], vec![9, 1]])
            .expect("loss");
        let grads = out.loss.backward().expect("backward");
        for (name, var) in varmap.data().lock().expect("lock").iter() {
            let g = grads.get(var.as_tensor()).expect(name);
            let norm: f32 = g
                .sqr()
                .expect("sqr")
                .sum_all()
                .expect("sum")
                .to_scalar()
                .expect("s");
            assert!(norm > 0.0, "{name} got no gradient");
        }
    }
}
