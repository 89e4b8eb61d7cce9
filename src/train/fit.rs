//! `hqflow-train fit`: the training loop, its checkpoints and its resumption.
//!
//! The output directory is a Hugging Face CLIP checkpoint at every save (`config.json`,
//! `model.safetensors`, `tokenizer.json`, `preprocessor_config.json`), plus what a resumed
//! run needs: `recipe.toml`, `optimizer.safetensors`, `train_state.json` (written last), and
//! `metrics.jsonl`, one line per step.
//!
//! Resumption restores the weights, AdamW's moments and step, the schedule position, and the
//! data position (the reader replays the table past the batches already drawn, with the same
//! shuffle stream; crops and text choices are keyed by batch and row). What is not restored:
//! a table whose files or row order changed since, and `--query`s whose output order is not
//! fixed (e.g. an aggregate without ORDER BY).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::common::{DataFusionError, Result};
use futures::StreamExt;
use hqflow_udfs::models::clip_config::{Activation, ClipConfig, TextConfig, VisionConfig};
use hqflow_udfs::models::preprocess::Preprocessor;
use hqflow_udfs::models::tokenizer::ClipTokenizer;
use hqflow_udfs::models::{Device, DeviceSpec, ModelError};
use hqflow_udfs::training::hf_files::{clip_config_json, preprocessor_json, tokenizer_config_json};
use hqflow_udfs::training::{ClipTrainer, LossWeights, OptimConfig, bpe};
use serde::{Deserialize, Serialize};

use super::augment::Crop;
use super::loader::{Loader, LoaderConfig};
use super::progress::{ProgressBar, StepView};
use super::recipe::Recipe;
use super::schedule::cosine_lr;
use super::source::{self, Columns};
use crate::cli::Status;

/// `hqflow-train fit` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FitArgs {
    /// The training table: a Parquet file, directory, glob or s3:// URL.
    #[arg(long)]
    pub data: String,
    /// SQL over the table (named `data`) selecting the rows to train on.
    #[arg(long)]
    pub query: Option<String>,
    /// Output directory: the checkpoint and the run's state.
    #[arg(long)]
    pub out: PathBuf,
    /// Recipe file (TOML); without it, the small default recipe.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Total steps (overrides the recipe's optim.steps).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Continue the run saved in --out.
    #[arg(long)]
    pub resume: bool,
    /// Stop (with a checkpoint) after this many steps in total, as an interrupted run would,
    /// without changing the schedule; `--resume` continues.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Start from this Hugging Face CLIP checkpoint (its config and tokenizer) instead of
    /// random weights.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// With --init: take the vision tower (`vision_model.*`, its `vision_config` and the
    /// preprocessing) from this checkpoint instead, a CLIP or hqflow's refiner; the visual
    /// projection starts afresh.
    #[arg(long, requires = "init")]
    pub init_vision: Option<PathBuf>,
    /// Where to train: cpu (default), cuda[:N] or metal[:N] (GPUs need a build with the
    /// `cuda` or `metal` feature). A run may be resumed on another device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// What `train_state.json` records.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct TrainState {
    /// Optimizer steps done.
    step: u64,
    /// Batches taken from the data stream (a batch whose images all failed is drawn but
    /// not trained on).
    batches_drawn: u64,
    /// Pairs trained on.
    samples_seen: u64,
}

const STATE: &str = "train_state.json";

/// The tag head's parameters (not part of the CLIP checkpoint).
const TAG_HEAD: &str = "tag_head.safetensors";

/// The tag vocabulary of a run with the tag loss.
const TAG_VOCAB: &str = "tags.json";

/// How transformers' `AutoTokenizer` is to load `tokenizer.json`.
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// The device named by `--device`, opened; a plan error says what is wrong with it.
pub(crate) fn open_device(name: &str) -> Result<Device> {
    DeviceSpec::parse(name)
        .map_err(|e| DataFusionError::Plan(format!("--device: {e}")))?
        .open()
        .map_err(|e| DataFusionError::Plan(format!("--device: {}", e.0)))
}

pub(crate) fn model_err(e: ModelError) -> DataFusionError {
    DataFusionError::Execution(e.0)
}

pub(crate) fn io_err(path: &Path, what: &str, e: std::io::Error) -> DataFusionError {
    DataFusionError::Execution(format!("cannot {what} '{}': {e}", path.display()))
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| io_err(path, "read", e))
}

/// The file's text, or None where there is no such file.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "read", e)),
    }
}

/// Writes through a temporary name and a rename, so a crash never leaves half a file.
pub(crate) fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, "write", e))
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |tmp| {
        std::fs::write(tmp, text).map_err(|e| io_err(tmp, "write", e))
    })
}

/// The files a checkpoint is saved with, besides the weights.
struct CheckpointTexts {
    config: String,
    preprocessor: String,
    tokenizer: String,
    /// `tokenizer_config.json`: ours for a tokenizer trained here, the source checkpoint's
    /// (when it has one) otherwise.
    tokenizer_config: Option<String>,
    recipe: String,
}

fn save(
    out: &Path,
    trainer: &ClipTrainer,
    texts: &CheckpointTexts,
    state: TrainState,
) -> Result<()> {
    write_atomic(&out.join("model.safetensors"), |tmp| {
        trainer.save_weights(tmp).map_err(model_err)
    })?;
    write_atomic(&out.join("optimizer.safetensors"), |tmp| {
        trainer.save_optimizer(tmp).map_err(model_err)
    })?;
    write_atomic(&out.join(TAG_HEAD), |tmp| {
        trainer.save_head(tmp).map_err(model_err)
    })?;
    write_text(&out.join("config.json"), &texts.config)?;
    write_text(&out.join("preprocessor_config.json"), &texts.preprocessor)?;
    write_text(&out.join("tokenizer.json"), &texts.tokenizer)?;
    if let Some(text) = &texts.tokenizer_config {
        write_text(&out.join(TOKENIZER_CONFIG), text)?;
    }
    write_text(&out.join("recipe.toml"), &texts.recipe)?;
    let state_json = serde_json::to_string_pretty(&state)
        .map_err(|e| DataFusionError::Internal(format!("train state: {e}")))?;
    write_text(&out.join(STATE), &format!("{state_json}\n"))
}

/// Drops the lines of steps after `step` (written by an interrupted run after its last save).
pub(crate) fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    write_text(path, &kept)
}

fn activation(name: &str) -> Activation {
    if name == "quick_gelu" {
        Activation::QuickGelu
    } else {
        Activation::Gelu
    }
}

/// The model config a recipe describes, for a tokenizer of `vocab` entries.
fn config_from_recipe(recipe: &Recipe, vocab: usize) -> ClipConfig {
    let m = &recipe.model;
    ClipConfig {
        text_config: TextConfig {
            vocab_size: vocab,
            hidden_size: m.text_width,
            intermediate_size: m.text_width * m.mlp_ratio,
            num_hidden_layers: m.text_layers,
            num_attention_heads: m.text_heads,
            max_position_embeddings: m.context_length,
            hidden_act: activation(&m.activation),
            layer_norm_eps: 1e-5,
            eos_token_id: bpe::EOS_ID,
        },
        vision_config: VisionConfig {
            hidden_size: m.vision_width,
            intermediate_size: m.vision_width * m.mlp_ratio,
            num_hidden_layers: m.vision_layers,
            num_attention_heads: m.vision_heads,
            image_size: m.image_size,
            patch_size: m.patch_size,
            num_channels: 3,
            hidden_act: activation(&m.activation),
            layer_norm_eps: 1e-5,
        },
        projection_dim: m.projection_dim,
    }
}

/// The CLIP config `text` (read from `origin`) with the vision tower's config of the
/// checkpoint in `vision`: its `vision_config`, keeping the CLIP's projection width.
fn with_vision_config(text: &str, origin: &Path, vision: &Path) -> Result<String> {
    let vision_path = vision.join("config.json");
    let not_json = |path: &Path, e: serde_json::Error| {
        DataFusionError::Plan(format!("'{}' is not a JSON config: {e}", path.display()))
    };
    let mut config: serde_json::Value =
        serde_json::from_str(text).map_err(|e| not_json(origin, e))?;
    let other: serde_json::Value =
        serde_json::from_str(&read_text(&vision_path)?).map_err(|e| not_json(&vision_path, e))?;
    let Some(mut tower) = other.get("vision_config").cloned() else {
        return Err(DataFusionError::Plan(format!(
            "'{}' has no vision_config: --init-vision needs a checkpoint with a CLIP vision tower",
            vision_path.display()
        )));
    };
    if let (Some(tower), Some(width)) = (tower.as_object_mut(), config.get("projection_dim")) {
        tower.insert("projection_dim".into(), width.clone());
    }
    config["vision_config"] = tower;
    serde_json::to_string_pretty(&config)
        .map(|t| format!("{t}\n"))
        .map_err(|e| DataFusionError::Internal(format!("config: {e}")))
}

fn parse_config(text: &str, origin: &Path) -> Result<ClipConfig> {
    serde_json::from_str(text).map_err(|e| {
        DataFusionError::Plan(format!(
            "'{}' is not a CLIPModel config: {e}",
            origin.display()
        ))
    })
}

/// What the first rows of the table give a fresh run: every text the run reads (the
/// tokenizer's corpus) and how often each tag occurs.
struct FirstRows {
    corpus: Vec<String>,
    tag_counts: HashMap<String, u64>,
}

impl FirstRows {
    /// The `k` most frequent tags, ties broken by the tag, most frequent first.
    fn top_tags(&self, k: usize) -> Vec<String> {
        let mut counted: Vec<(&String, &u64)> = self.tag_counts.iter().collect();
        counted.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        counted
            .into_iter()
            .take(k)
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// Reads the first `max_rows` rows' texts and tags.
async fn first_rows(args: &FitArgs, columns: Columns, max_rows: usize) -> Result<FirstRows> {
    let ctx = source::open(&args.data).await?;
    let frame = source::frame(&ctx, args.query.as_deref()).await?;
    let texts_only = Columns {
        img: false,
        ..columns
    };
    let frame = source::project(frame, texts_only)?.limit(0, Some(max_rows))?;
    let mut stream = frame.execute_stream().await?;
    let mut first = FirstRows {
        corpus: Vec::new(),
        tag_counts: HashMap::new(),
    };
    while let Some(batch) = stream.next().await {
        for row in source::rows(&batch?)? {
            first.corpus.extend(row.texts.into_iter().flatten());
            first.corpus.extend(row.negative);
            for tag in row.tags.into_iter().flatten() {
                *first.tag_counts.entry(tag).or_default() += 1;
            }
        }
    }
    Ok(first)
}

/// `tags.json`: the tag vocabulary of a run.
#[derive(Debug, Serialize, Deserialize)]
struct TagVocab {
    tags: Vec<String>,
}

fn read_tag_vocab(path: &Path) -> Result<Vec<String>> {
    let vocab: TagVocab = serde_json::from_str(&read_text(path)?)
        .map_err(|e| DataFusionError::Plan(format!("'{}' is corrupt: {e}", path.display())))?;
    Ok(vocab.tags)
}

async fn checked_columns(args: &FitArgs, recipe: &Recipe) -> Result<Columns> {
    let ctx = source::open(&args.data).await?;
    let frame = source::frame(&ctx, args.query.as_deref()).await?;
    let mut columns = Columns {
        img: true,
        txt: recipe.text.txt > 0.0,
        long_pos: recipe.text.long_pos > 0.0,
        short_pos: recipe.text.short_pos > 0.0,
        long_neg: recipe.loss.hard_negative > 0.0,
        tags: recipe.loss.tags > 0.0 || recipe.loss.edited_negative > 0.0,
    };
    let what = match &args.query {
        Some(_) => "the --query result".to_string(),
        None => format!("table '{}'", args.data),
    };
    source::check_columns(frame.schema().as_arrow(), &mut columns, &what)?;
    Ok(columns)
}

fn load_recipe(args: &FitArgs) -> Result<Recipe> {
    let mut recipe = if args.resume {
        if args.recipe.is_some() {
            return Err(DataFusionError::Plan(format!(
                "--resume continues with the run's own recipe ('{}'); edit that file instead of passing --recipe",
                args.out.join("recipe.toml").display()
            )));
        }
        Recipe::load(&args.out.join("recipe.toml"))?
    } else {
        match &args.recipe {
            Some(path) => Recipe::load(path)?,
            None => Recipe::default(),
        }
    };
    if let Some(steps) = args.steps {
        recipe.optim.steps = steps;
    }
    Ok(recipe)
}

/// Runs `fit`.
pub async fn run(args: &FitArgs, status: Status) -> Result<()> {
    if args.resume && args.init.is_some() {
        return Err(DataFusionError::Plan(
            "--resume and --init do not go together: a resumed run has its weights".into(),
        ));
    }
    let state_path = args.out.join(STATE);
    if args.resume && !state_path.is_file() {
        return Err(DataFusionError::Plan(format!(
            "--resume: '{}' holds no run to continue (no {STATE})",
            args.out.display()
        )));
    }
    if !args.resume && state_path.exists() {
        return Err(DataFusionError::Plan(format!(
            "'{}' already holds a run: pass --resume to continue it, or another --out",
            args.out.display()
        )));
    }
    let device = open_device(&args.device)?;
    let recipe = load_recipe(args)?;
    std::fs::create_dir_all(&args.out).map_err(|e| io_err(&args.out, "create", e))?;
    let columns = checked_columns(args, &recipe).await?;
    let optim = OptimConfig {
        beta1: recipe.optim.beta1,
        beta2: recipe.optim.beta2,
        eps: recipe.optim.eps,
        weight_decay: recipe.optim.weight_decay,
    };
    let recipe_text = recipe.to_toml()?;
    // Tag lists are read for the tag loss, for caption edits, or both.
    let tag_loss = columns.tags && recipe.loss.tags > 0.0;
    let (mut trainer, texts, mut state, tags) = if args.resume {
        let out = &args.out;
        let config_path = out.join("config.json");
        let config_text = read_text(&config_path)?;
        let config = parse_config(&config_text, &config_path)?;
        let mut trainer =
            ClipTrainer::from_weights(config, &out.join("model.safetensors"), optim, &device)
                .map_err(model_err)?;
        trainer.load_head(&out.join(TAG_HEAD)).map_err(model_err)?;
        let state: TrainState = serde_json::from_str(&read_text(&state_path)?).map_err(|e| {
            DataFusionError::Plan(format!("'{}' is corrupt: {e}", state_path.display()))
        })?;
        let texts = CheckpointTexts {
            config: config_text,
            preprocessor: read_text(&out.join("preprocessor_config.json"))?,
            tokenizer: read_text(&out.join("tokenizer.json"))?,
            tokenizer_config: read_optional(&out.join(TOKENIZER_CONFIG))?,
            recipe: recipe_text,
        };
        let tags = if tag_loss {
            read_tag_vocab(&out.join(TAG_VOCAB))?
        } else {
            Vec::new()
        };
        (trainer, texts, state, tags)
    } else if let Some(init) = &args.init {
        let config_path = init.join("config.json");
        let mut config_text = read_text(&config_path)?;
        let mut preprocessor_dir = init;
        let trainer = if let Some(vision) = &args.init_vision {
            config_text = with_vision_config(&config_text, &config_path, vision)?;
            preprocessor_dir = vision;
            let config = parse_config(&config_text, &config_path)?;
            ClipTrainer::with_vision_from(
                config,
                &init.join("model.safetensors"),
                &vision.join("model.safetensors"),
                recipe.optim.seed,
                optim,
                &device,
            )
            .map_err(model_err)?
        } else {
            let config = parse_config(&config_text, &config_path)?;
            ClipTrainer::from_weights(config, &init.join("model.safetensors"), optim, &device)
                .map_err(model_err)?
        };
        let texts = CheckpointTexts {
            config: config_text,
            preprocessor: read_text(&preprocessor_dir.join("preprocessor_config.json"))?,
            tokenizer: read_text(&init.join("tokenizer.json"))?,
            tokenizer_config: read_optional(&init.join(TOKENIZER_CONFIG))?,
            recipe: recipe_text,
        };
        let tags = if tag_loss {
            first_rows(args, columns, recipe.tokenizer.max_rows)
                .await?
                .top_tags(recipe.loss.tag_vocab)
        } else {
            Vec::new()
        };
        (trainer, texts, TrainState::default(), tags)
    } else {
        let started = Instant::now();
        let first = first_rows(args, columns, recipe.tokenizer.max_rows).await?;
        let tags = if tag_loss {
            first.top_tags(recipe.loss.tag_vocab)
        } else {
            Vec::new()
        };
        let corpus = first.corpus;
        if corpus.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "no text to train a tokenizer on in the first {} rows of '{}'",
                recipe.tokenizer.max_rows, args.data
            )));
        }
        let n = corpus.len();
        let (tokenizer, vocab) =
            bpe::train(corpus.into_iter(), recipe.tokenizer.vocab_size).map_err(model_err)?;
        status.line(&format!(
            "tokenizer: {vocab} entries from {n} texts in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        let config = config_from_recipe(&recipe, vocab);
        let texts = CheckpointTexts {
            config: clip_config_json(&config, bpe::BOS_ID),
            preprocessor: preprocessor_json(recipe.model.image_size),
            tokenizer,
            tokenizer_config: Some(tokenizer_config_json(recipe.model.context_length)),
            recipe: recipe_text,
        };
        let mut trainer = ClipTrainer::from_scratch(config, recipe.optim.seed, optim, &device)
            .map_err(model_err)?;
        if recipe.model.position_init == "sincos" {
            trainer.use_sincos_positions().map_err(model_err)?;
        }
        (trainer, texts, TrainState::default(), tags)
    };
    // Locking sets which parameters the optimizer holds, so it comes before a resumed run's
    // optimizer state is loaded.
    if recipe.optim.lock_vision {
        trainer.lock_vision().map_err(model_err)?;
    }
    if args.resume {
        trainer
            .load_optimizer(&args.out.join("optimizer.safetensors"))
            .map_err(model_err)?;
    }
    if tag_loss {
        let vocab = serde_json::to_string_pretty(&TagVocab { tags: tags.clone() })
            .map_err(|e| DataFusionError::Internal(format!("tag vocabulary: {e}")))?;
        write_text(&args.out.join(TAG_VOCAB), &format!("{vocab}\n"))?;
    }
    // The tokenizer and preprocessing the checkpoint will be loaded with.
    write_text(&args.out.join("tokenizer.json"), &texts.tokenizer)?;
    let tokenizer = ClipTokenizer::from_file(
        &args.out.join("tokenizer.json"),
        trainer.config().text_config.max_position_embeddings,
    )
    .map_err(model_err)?;
    let norm = Preprocessor::from_json(&texts.preprocessor).map_err(model_err)?;
    let total = recipe.optim.steps;
    status.line(&format!(
        "model: {} parameters{}; {} steps of {} pairs{}",
        trainer.parameter_count(),
        if recipe.optim.lock_vision {
            " (vision tower locked)"
        } else {
            ""
        },
        total,
        recipe.data.batch_size,
        if state.step > 0 {
            format!(", resuming after step {}", state.step)
        } else {
            String::new()
        }
    ));
    let mut loader = Loader::start(LoaderConfig {
        location: args.data.clone(),
        query: args.query.clone(),
        columns,
        batch_size: recipe.data.batch_size,
        shuffle_buffer: recipe.data.shuffle_buffer,
        workers: recipe.data.workers,
        seed: recipe.optim.seed,
        skip_batches: state.batches_drawn,
        text_weights: [recipe.text.txt, recipe.text.long_pos, recipe.text.short_pos],
        crop: Crop {
            size: trainer.config().vision_config.image_size as u32,
            scale: recipe.data.crop_scale,
            ratio: recipe.data.crop_ratio,
        },
        norm,
        tokenizer: Arc::new(tokenizer),
        tag_vocab: Arc::new(tags.iter().cloned().collect()),
        edited_negative: recipe.loss.edited_negative,
    })?;
    let metrics_path = args.out.join("metrics.jsonl");
    if args.resume {
        truncate_metrics(&metrics_path, state.step)?;
    }
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| io_err(&metrics_path, "open", e))?;
    let weights = LossWeights {
        hard_negative: if columns.long_neg || recipe.loss.edited_negative > 0.0 {
            recipe.loss.hard_negative
        } else {
            0.0
        },
        tags: if tag_loss { recipe.loss.tags } else { 0.0 },
    };
    let mut progress = ProgressBar::new(!status.is_quiet() && std::io::stderr().is_terminal());
    let started = Instant::now();
    let first_step = state.step;
    let mut samples_here = 0u64;
    let (mut first_loss, mut last_loss) = (None, None);
    let stop = args.stop_after.map_or(total, |s| s.min(total));
    while state.step < stop {
        let prepared = loader.next_batch()?;
        state.batches_drawn = prepared.index + 1;
        let n = prepared.batch.texts.len();
        if n < 2 {
            continue;
        }
        let lr = cosine_lr(
            recipe.optim.lr,
            recipe.optim.warmup_steps,
            total,
            state.step,
        );
        let stats = trainer
            .step(&prepared.batch, lr, weights)
            .map_err(model_err)?;
        state.step += 1;
        state.samples_seen += n as u64;
        samples_here += n as u64;
        first_loss.get_or_insert(stats.loss);
        last_loss = Some(stats.loss);
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let rate = samples_here as f64 / elapsed;
        let line = serde_json::json!({
            "step": state.step,
            "loss": stats.loss,
            "loss_contrastive": (stats.image_to_text + stats.text_to_image) / 2.0,
            "loss_i2t": stats.image_to_text,
            "loss_t2i": stats.text_to_image,
            "negative_accuracy": stats.negative_accuracy,
            "loss_tags": stats.tag_loss,
            "tag_accuracy": stats.tag_accuracy,
            "scale": stats.scale,
            "lr": lr,
            "pairs": n,
            "epoch": prepared.epoch,
            "samples_seen": state.samples_seen,
            "samples_per_s": rate,
        });
        writeln!(metrics, "{line}").map_err(|e| io_err(&metrics_path, "write", e))?;
        let done = (state.step - first_step) as f64;
        let eta = elapsed / done * (stop - state.step) as f64;
        progress.update(StepView {
            step: state.step,
            total: stop,
            loss: stats.loss,
            lr,
            pairs_per_s: rate,
            eta,
        });
        let logged = state.step.is_multiple_of(recipe.run.log_every) || state.step == total;
        if logged && !status.is_quiet() {
            progress.line(&format!(
                "step {}/{total}  loss {:.4}  lr {lr:.2e}  scale {:.1}  {rate:.0} pairs/s  ETA {eta:.0}s",
                state.step, stats.loss, stats.scale
            ));
        }
        if state.step.is_multiple_of(recipe.run.save_every) && state.step < stop {
            save(&args.out, &trainer, &texts, state)?;
        }
    }
    save(&args.out, &trainer, &texts, state)?;
    progress.clear();
    let elapsed = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "out": args.out.display().to_string(),
        "steps": state.step,
        "steps_this_run": state.step - first_step,
        "samples_seen": state.samples_seen,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "seconds": elapsed,
        "samples_per_s": samples_here as f64 / elapsed.max(1e-9),
        "data": loader.counts().to_json(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{summary}").map_err(|e| io_err(Path::new("stdout"), "write", e))?;
    Ok(())
}
