//! A training recipe: a TOML file whose every field has a default, so that no recipe at all
//! is the small default run (a tiny ViT on 32 px inputs that trains in minutes on 2 cores).
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::path::Path;

use datafusion::common::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

/// The whole recipe.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    /// Model sizes (ignored with `--init`, which brings its own config).
    pub model: ModelRecipe,
    /// Tokenizer training (ignored with `--init`).
    pub tokenizer: TokenizerRecipe,
    /// Data loading and augmentation.
    pub data: DataRecipe,
    /// Which texts to train on.
    pub text: TextRecipe,
    /// Optimizer and schedule.
    pub optim: OptimRecipe,
    /// Loss weights.
    pub loss: LossRecipe,
    /// Logging and checkpoints.
    pub run: RunRecipe,
}

/// Model sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelRecipe {
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Vision width.
    pub vision_width: usize,
    /// Vision layers.
    pub vision_layers: usize,
    /// Vision attention heads.
    pub vision_heads: usize,
    /// Text width.
    pub text_width: usize,
    /// Text layers.
    pub text_layers: usize,
    /// Text attention heads.
    pub text_heads: usize,
    /// MLP width as a multiple of the tower width.
    pub mlp_ratio: usize,
    /// Context length in tokens (including start and end).
    pub context_length: usize,
    /// Shared embedding width.
    pub projection_dim: usize,
    /// MLP activation: "gelu" or "quick_gelu".
    pub activation: String,
    /// How the vision position embeddings start: "normal" (transformers' normal(0, 0.02))
    /// or "sincos" (a 2-D sine-cosine table that says where each patch is).
    pub position_init: String,
}

impl Default for ModelRecipe {
    fn default() -> Self {
        ModelRecipe {
            image_size: 32,
            patch_size: 8,
            vision_width: 128,
            vision_layers: 3,
            vision_heads: 4,
            text_width: 128,
            text_layers: 3,
            text_heads: 4,
            mlp_ratio: 4,
            context_length: 40,
            projection_dim: 64,
            activation: "gelu".into(),
            position_init: "normal".into(),
        }
    }
}

/// Tokenizer training for from-scratch models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerRecipe {
    /// Vocabulary size (at least 258).
    pub vocab_size: usize,
    /// Rows whose texts it is trained on (the first ones of the table).
    pub max_rows: usize,
}

impl Default for TokenizerRecipe {
    fn default() -> Self {
        TokenizerRecipe {
            vocab_size: 1024,
            max_rows: 20_000,
        }
    }
}

/// Data loading and augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataRecipe {
    /// Pairs per step.
    pub batch_size: usize,
    /// Rows held by the shuffle buffer.
    pub shuffle_buffer: usize,
    /// Decode and augmentation threads.
    pub workers: usize,
    /// Random resized crop: range of the crop's share of the image area.
    pub crop_scale: [f64; 2],
    /// Random resized crop: range of the crop's aspect ratio (width / height).
    pub crop_ratio: [f64; 2],
}

impl Default for DataRecipe {
    fn default() -> Self {
        DataRecipe {
            batch_size: 64,
            shuffle_buffer: 2048,
            workers: 1,
            // open_clip's defaults; no flip (captions say left and right).
            crop_scale: [0.9, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
        }
    }
}

/// Sampling weights of the text sources; each row's caption is drawn among the sources
/// with a weight above zero and a value in that row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextRecipe {
    /// The raw alt-text, column `txt`.
    pub txt: f64,
    /// The long positive description, column `long_pos`.
    pub long_pos: f64,
    /// The positive tags joined with ", ", column `short_pos`.
    pub short_pos: f64,
}

impl Default for TextRecipe {
    fn default() -> Self {
        TextRecipe {
            txt: 1.0,
            long_pos: 0.0,
            short_pos: 0.0,
        }
    }
}

/// Optimizer and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimRecipe {
    /// Steps in the run (`--steps` overrides).
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps, then cosine decay to 0.
    pub warmup_steps: u64,
    /// Decoupled weight decay (matrices only).
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Keep the vision tower's weights as they start (LiT, "locked-image text tuning"):
    /// only the visual projection, the text tower and the scales train. For a tower that
    /// already sees what the captions say (`--init-vision`).
    pub lock_vision: bool,
}

impl Default for OptimRecipe {
    fn default() -> Self {
        OptimRecipe {
            steps: 300,
            lr: 1e-3,
            warmup_steps: 30,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            seed: 0,
            lock_vision: false,
        }
    }
}

/// Loss weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossRecipe {
    /// Weight of each image's own `long_neg` among its text candidates (0 turns it off;
    /// used only when the table has the column).
    pub hard_negative: f64,
    /// Weight of the short-tag classification term (0 turns it off; used only when the table
    /// has `short_pos` and `short_neg`).
    pub tags: f64,
    /// Tags the term knows: the most frequent ones in the first `tokenizer.max_rows` rows.
    pub tag_vocab: usize,
    /// Share of rows whose hard negative is their own caption with one statement made
    /// false (see `caption_edit`) rather than `long_neg`; rows no edit applies to keep
    /// `long_neg`. Uses the row's tags when the table has `short_pos` and `short_neg`.
    pub edited_negative: f64,
}

impl Default for LossRecipe {
    fn default() -> Self {
        LossRecipe {
            hard_negative: 1.0,
            tags: 1.0,
            tag_vocab: 1000,
            edited_negative: 0.0,
        }
    }
}

/// Logging and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunRecipe {
    /// A status line every this many steps.
    pub log_every: u64,
    /// A checkpoint every this many steps (and always at the end).
    pub save_every: u64,
}

impl Default for RunRecipe {
    fn default() -> Self {
        RunRecipe {
            log_every: 10,
            save_every: 100,
        }
    }
}

fn invalid(origin: &str, what: String) -> DataFusionError {
    DataFusionError::Plan(format!("recipe '{origin}': {what}"))
}

impl Recipe {
    /// Parses and checks a recipe; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Recipe> {
        let recipe: Recipe =
            toml::from_str(text).map_err(|e| invalid(origin, e.to_string().trim().to_string()))?;
        recipe.check(origin)?;
        Ok(recipe)
    }

    /// Reads a recipe file.
    pub fn load(path: &Path) -> Result<Recipe> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(&origin, format!("cannot read: {e}")))?;
        Recipe::from_toml(&text, &origin)
    }

    /// The recipe as TOML (saved next to each checkpoint).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| DataFusionError::Internal(format!("recipe to TOML: {e}")))
    }

    /// Rejects values no run can use.
    pub fn check(&self, origin: &str) -> Result<()> {
        let m = &self.model;
        let mut problems = Vec::new();
        if m.patch_size == 0 || m.image_size == 0 || !m.image_size.is_multiple_of(m.patch_size) {
            problems.push(format!(
                "model.image_size ({}) must be a positive multiple of model.patch_size ({})",
                m.image_size, m.patch_size
            ));
        }
        for (name, width, heads) in [
            ("vision", m.vision_width, m.vision_heads),
            ("text", m.text_width, m.text_heads),
        ] {
            if heads == 0 || width == 0 || width % heads != 0 {
                problems.push(format!(
                    "model.{name}_width ({width}) must be a positive multiple of model.{name}_heads ({heads})"
                ));
            }
        }
        if m.context_length < 3 {
            problems.push("model.context_length must be at least 3".into());
        }
        if m.mlp_ratio == 0 || m.projection_dim == 0 {
            problems.push("model.mlp_ratio and model.projection_dim must be positive".into());
        }
        if !matches!(m.activation.as_str(), "gelu" | "quick_gelu") {
            problems.push(format!(
                "model.activation '{}' is not \"gelu\" or \"quick_gelu\"",
                m.activation
            ));
        }
        if !matches!(m.position_init.as_str(), "normal" | "sincos") {
            problems.push(format!(
                "model.position_init '{}' is not \"normal\" or \"sincos\"",
                m.position_init
            ));
        }
        if m.position_init == "sincos" && !m.vision_width.is_multiple_of(4) {
            problems
                .push("model.position_init \"sincos\" needs vision_width divisible by 4".into());
        }
        if self.tokenizer.vocab_size < hqflow_udfs::training::bpe::MIN_VOCAB {
            problems.push(format!(
                "tokenizer.vocab_size must be at least {}",
                hqflow_udfs::training::bpe::MIN_VOCAB
            ));
        }
        let d = &self.data;
        if d.batch_size < 2 {
            problems.push("data.batch_size must be at least 2 (contrastive loss)".into());
        }
        if d.workers == 0 {
            problems.push("data.workers must be at least 1".into());
        }
        let range_ok = |r: [f64; 2], hi: f64| r[0] > 0.0 && r[0] <= r[1] && r[1] <= hi;
        if !range_ok(d.crop_scale, 1.0) {
            problems.push("data.crop_scale must be [lo, hi] with 0 < lo ≤ hi ≤ 1".into());
        }
        if !range_ok(d.crop_ratio, f64::INFINITY) {
            problems.push("data.crop_ratio must be [lo, hi] with 0 < lo ≤ hi".into());
        }
        let t = &self.text;
        let weights = [t.txt, t.long_pos, t.short_pos];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || weights.iter().sum::<f64>() <= 0.0
        {
            problems.push("text weights must be ≥ 0 with at least one above 0".into());
        }
        let o = &self.optim;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            problems.push("optim.lr must be positive".into());
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) || o.eps <= 0.0 {
            problems.push("optim.beta1/beta2 must be in [0, 1) and optim.eps positive".into());
        }
        if o.weight_decay.is_nan() || o.weight_decay < 0.0 {
            problems.push("optim.weight_decay must be ≥ 0".into());
        }
        if !(self.loss.hard_negative.is_finite() && self.loss.hard_negative >= 0.0) {
            problems.push("loss.hard_negative must be ≥ 0".into());
        }
        if !(0.0..=1.0).contains(&self.loss.edited_negative) {
            problems.push("loss.edited_negative must be in [0, 1]".into());
        }
        if !(self.loss.tags.is_finite() && self.loss.tags >= 0.0) {
            problems.push("loss.tags must be ≥ 0".into());
        }
        if self.loss.tag_vocab == 0 {
            problems.push("loss.tag_vocab must be positive".into());
        }
        if self.run.log_every == 0 || self.run.save_every == 0 {
            problems.push("run.log_every and run.save_every must be positive".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(invalid(origin, problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_the_default_recipe() {
        assert_eq!(
            Recipe::from_toml("", "t").expect("parses"),
            Recipe::default()
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let mut r = Recipe::default();
        r.optim.steps = 7;
        r.text.long_pos = 0.5;
        let back = Recipe::from_toml(&r.to_toml().expect("toml"), "t").expect("parses");
        assert_eq!(back, r);
    }

    #[test]
    fn typos_and_bad_values_are_errors_naming_the_field() {
        let e = Recipe::from_toml("[optim]\nlrr = 1.0\n", "x.toml").expect_err("unknown key");
        assert!(e.to_string().contains("lrr"), "{e}");
        let e = Recipe::from_toml("[model]\npatch_size = 5\n", "x.toml").expect_err("bad");
        assert!(e.to_string().contains("model.image_size"), "{e}");
        let e = Recipe::from_toml("[data]\nbatch_size = \"x\"\n", "x.toml").expect_err("type");
        assert!(e.to_string().contains("x.toml"), "{e}");
        let e = Recipe::from_toml("[loss]\nedited_negative = 1.5\n", "x.toml").expect_err("share");
        assert!(e.to_string().contains("loss.edited_negative"), "{e}");
        let e =
            Recipe::from_toml("[model]\nposition_init = \"rope\"\n", "x.toml").expect_err("init");
        assert!(e.to_string().contains("model.position_init 'rope'"), "{e}");
    }
}
