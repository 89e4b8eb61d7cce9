//! `hqflow-train refiner`: fine-tunes hqflow's vision-language refiner on seed annotations
//! (a table with `img`, `txt` and the four HQ-CLIP texts, e.g. `hqflow world seed`), as
//! HQ-CLIP fine-tunes Qwen2-VL on GPT-4o's annotations of a seed set.
//!
//! The vision tower, image preprocessing and tokenizer come from a CLIP checkpoint (`--clip`,
//! default the built-in DFN); the decoder starts from random weights. Each step trains one
//! task on a batch of rows drawn at random (a stream keyed by the seed and the step, so a
//! resumed run draws the same batches): long texts on 6 steps in 10, tags on 4.
//!
//! The output directory is the refiner's checkpoint at every save (`config.json`,
//! `model.safetensors`, `tokenizer.json`, `preprocessor_config.json`), plus `optimizer.safetensors`,
//! `refiner_args.json`, `metrics.jsonl` and `train_state.json` (written last) for `--resume`.
//! Seed sets are small (HQ-CLIP's is a few percent of the refined set), so the table is read
//! into memory once: decoded 8-bit pixels and token ids.
//!
//! With `--tag-weight` above 0 (the default), a tagging head on the vision tower learns the
//! seed rows' positive tags alongside the texts, on `--tag-batch` images of its own each step
//! (see `VlmTrainer`); the tag vocabulary is every positive tag seen at least
//! [`MIN_TAG_ROWS`] times, kept in the refiner's config (`tagger`), its weights in the
//! refiner's. `--from` starts from a refiner checkpoint instead of a fresh decoder, to go on
//! training one with another schedule or objective.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::common::{DataFusionError, Result};
use futures::StreamExt;
use hqflow_udfs::models::clip_config::ClipConfig;
use hqflow_udfs::models::preprocess::Preprocessor;
use hqflow_udfs::models::tokenizer::ClipTokenizer;
use hqflow_udfs::models::vlm_config::{
    DecoderConfig, MODEL_TYPE, MaxNewTokens, TAG_SEPARATOR, TaggerConfig, Task, VlmConfig,
};
use hqflow_udfs::training::hf_files::vlm_config_json;
use hqflow_udfs::training::{OptimConfig, VlmBatch, VlmTrainer};
use serde::{Deserialize, Serialize};

use super::fit::{
    io_err, model_err, open_device, read_optional, read_text, truncate_metrics, write_atomic,
    write_text,
};
use super::progress::{ProgressBar, StepView};
use super::schedule::cosine_lr;
use super::source::{self, Columns};
use crate::cli::Status;
use crate::world::rng::Rng;

/// `hqflow-train refiner` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RefinerArgs {
    /// The seed annotations: a Parquet file, directory, glob or s3:// URL with `img`, `txt`,
    /// `long_pos`, `long_neg`, `short_pos`, `short_neg`.
    #[arg(long)]
    pub data: String,
    /// SQL over the table (named `data`) selecting the rows to train on.
    #[arg(long)]
    pub query: Option<String>,
    /// Output directory: the checkpoint and the run's state.
    #[arg(long)]
    pub out: PathBuf,
    /// CLIP checkpoint whose vision tower, preprocessing and tokenizer the refiner starts
    /// from (default: the built-in DFN).
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// Total optimizer steps.
    #[arg(long, default_value_t = 3000)]
    pub steps: u64,
    /// Rows per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Peak learning rate (AdamW; warmup, then cosine decay).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// Seed of the decoder's initialisation and of the batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Decoder width.
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Decoder attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Alt-text tokens the refiner reads.
    #[arg(long, default_value_t = 32)]
    pub alt_text_length: usize,
    /// Rows of the table to read at most.
    #[arg(long)]
    pub rows: Option<usize>,
    /// Save every this many steps.
    #[arg(long, default_value_t = 250)]
    pub save_every: u64,
    /// Print a status line every this many steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Continue the run saved in --out (its settings are kept; --steps may extend it).
    #[arg(long)]
    pub resume: bool,
    /// Stop (with a checkpoint) after this many steps in total, without changing the
    /// schedule; `--resume` continues.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Where to train: cpu (default), cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Start from this refiner checkpoint (its config and weights; the decoder shape
    /// options are ignored) instead of a fresh decoder on --clip's tower.
    #[arg(long, conflicts_with = "clip")]
    pub from: Option<PathBuf>,
    /// Weight of the tagging head's loss (binary cross-entropy summed over tags, mean over
    /// images) against the texts' token cross-entropy; 0 trains no tagging head.
    #[arg(long, default_value_t = 0.25)]
    pub tag_weight: f64,
    /// Images the tagging head sees per step.
    #[arg(long, default_value_t = 128)]
    pub tag_batch: usize,
    /// Mirror each tagging image left to right with probability 1/2: for tags that name no
    /// direction (the world's do not), twice the images to learn from.
    #[arg(long)]
    pub tag_mirror: bool,
    /// Make the tagging head write `short_pos` (the tags it finds, most likely first) instead
    /// of the decoder.
    #[arg(long)]
    pub tagger_writes_short_pos: bool,
    /// Train the tagging head and the tower alone for this many steps first (the decoder
    /// waits): cheap steps that teach the tower to see before the decoder reads it.
    #[arg(long, default_value_t = 0)]
    pub tag_only_steps: u64,
    /// The refiner's `negative_contrast` (contrastive decoding of long negatives; 0 is plain
    /// greedy). Default: the --from checkpoint's, else 1.
    #[arg(long)]
    pub negative_contrast: Option<f32>,
}

/// The settings a resumed run keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    steps: u64,
    batch: usize,
    lr: f64,
    warmup: u64,
    seed: u64,
    /// 0 in runs saved before the tagging head existed.
    #[serde(default)]
    tag_weight: f64,
    #[serde(default)]
    tag_batch: usize,
    #[serde(default)]
    tag_only_steps: u64,
    #[serde(default)]
    tag_mirror: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct TrainState {
    step: u64,
}

const STATE: &str = "train_state.json";
const SETTINGS: &str = "refiner_args.json";

/// Seed rows a positive tag must appear in to join the tagging head's vocabulary.
pub const MIN_TAG_ROWS: usize = 5;

/// One seed row, ready to batch.
struct Example {
    /// 8-bit CHW pixels at the vision tower's size.
    pixels: Vec<u8>,
    /// The alt-text's token ids.
    alt_text: Vec<u32>,
    /// Each task's text as token ids ending in EOS (no start token), in [`Task::ALL`] order.
    targets: [Vec<u32>; 4],
    /// The positive tags.
    short_pos: Vec<String>,
    /// Their indices in the tag vocabulary (filled once it is known).
    tags: Vec<usize>,
}

/// The task of 0-based step `step`: long texts on 6 steps in 10, tags on 4.
fn task_of(step: u64) -> Task {
    match step % 10 {
        0 | 2 | 4 => Task::LongPos,
        1 | 3 | 5 => Task::LongNeg,
        6 | 8 => Task::ShortPos,
        _ => Task::ShortNeg,
    }
}

/// What 0-based step `step` trains, as metrics.jsonl names it: a task, or `tags`.
fn step_name(settings: &Settings, step: u64) -> &'static str {
    if step < settings.tag_only_steps {
        "tags"
    } else {
        task_of(step).name()
    }
}

/// Longest tokenized text the tokenizer for targets keeps.
const TARGET_CONTEXT: usize = 512;

/// Room left above the longest seed text of each task.
const BOUND_MARGIN: usize = 8;

async fn read_examples(
    args: &RefinerArgs,
    pre: &Preprocessor,
    alt_tokenizer: &ClipTokenizer,
    target_tokenizer: &ClipTokenizer,
    status: Status,
) -> Result<Vec<Example>> {
    let ctx = source::open(&args.data).await?;
    let frame = source::frame(&ctx, args.query.as_deref()).await?;
    let mut want = Columns {
        txt: true,
        long_pos: true,
        long_neg: true,
        tags: true,
        img: true,
        short_pos: false,
    };
    source::check_columns(frame.schema().as_arrow(), &mut want, "--data")?;
    if !want.long_neg || !want.tags {
        return Err(DataFusionError::Plan(
            "--data needs long_neg, short_pos and short_neg columns (the four HQ-CLIP texts)"
                .into(),
        ));
    }
    let mut stream = source::project(frame, want)?.execute_stream().await?;
    let limit = args.rows.unwrap_or(usize::MAX);
    let mut examples = Vec::new();
    let (mut bad_images, mut incomplete) = (0u64, 0u64);
    let encode = |t: &ClipTokenizer, text: &str| t.encode(text).map_err(model_err);
    'read: while let Some(batch) = stream.next().await {
        for row in source::rows(&batch?)? {
            if examples.len() >= limit {
                break 'read;
            }
            let (Some(img), Some(long_pos), Some(long_neg)) =
                (&row.img, &row.texts[1], &row.negative)
            else {
                incomplete += 1;
                continue;
            };
            if row.tags[0].is_empty() || row.tags[1].is_empty() {
                incomplete += 1;
                continue;
            }
            let Ok(pixels) = pre.crop_bytes(img) else {
                bad_images += 1;
                continue;
            };
            let target = |text: &str| -> Result<Vec<u32>> {
                // Drop the start token: the task token opens the text.
                Ok(encode(target_tokenizer, text)?.split_off(1))
            };
            examples.push(Example {
                pixels,
                alt_text: encode(alt_tokenizer, row.texts[0].as_deref().unwrap_or(""))?,
                targets: [
                    target(long_pos)?,
                    target(long_neg)?,
                    target(&row.tags[0].join(TAG_SEPARATOR))?,
                    target(&row.tags[1].join(TAG_SEPARATOR))?,
                ],
                short_pos: row.tags[0].clone(),
                tags: Vec::new(),
            });
        }
    }
    status.line(&format!(
        "read {} seed rows from {} ({bad_images} undecodable images and {incomplete} rows \
         without all four texts skipped)",
        examples.len(),
        args.data
    ));
    if examples.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "--data '{}' has no row with an image and all four texts",
            args.data
        )));
    }
    Ok(examples)
}

/// The refiner's config for a CLIP's vision tower and the seed texts' lengths.
fn new_config(
    args: &RefinerArgs,
    clip: &ClipConfig,
    vocab: usize,
    bos: u32,
    examples: &[Example],
) -> Result<VlmConfig> {
    let longest = |task: Task| {
        examples
            .iter()
            .map(|e| e.targets[task.index()].len())
            .max()
            .unwrap_or(0)
            + BOUND_MARGIN
    };
    let max_new_tokens = MaxNewTokens {
        long_pos: longest(Task::LongPos),
        long_neg: longest(Task::LongNeg),
        short_pos: longest(Task::ShortPos),
        short_neg: longest(Task::ShortNeg),
    };
    let v = &clip.vision_config;
    let image_tokens = 1 + (v.image_size / v.patch_size.max(1)).pow(2);
    let config = VlmConfig {
        model_type: MODEL_TYPE.into(),
        vision_config: clip.vision_config.clone(),
        decoder_config: DecoderConfig {
            vocab_size: vocab,
            hidden_size: args.width,
            intermediate_size: 4 * args.width,
            num_hidden_layers: args.layers,
            num_attention_heads: args.heads,
            max_position_embeddings: image_tokens + args.alt_text_length + 1 + max_new_tokens.max(),
            hidden_act: hqflow_udfs::models::clip_config::Activation::Gelu,
            layer_norm_eps: 1e-5,
            bos_token_id: bos,
            eos_token_id: clip.text_config.eos_token_id,
            pad_token_id: clip.text_config.eos_token_id,
        },
        alt_text_length: args.alt_text_length,
        max_new_tokens,
        negative_contrast: 1.0,
        tagger: None,
    };
    config
        .check()
        .map_err(|e| DataFusionError::Plan(format!("refiner config: {e}")))?;
    Ok(config)
}

/// The tags whose head trains in this run: the config's, when the run trains tags.
fn trained_tags(config: &VlmConfig, settings: &Settings) -> Vec<String> {
    match &config.tagger {
        Some(t) if settings.tag_weight > 0.0 && settings.tag_batch > 0 => t.tags.clone(),
        _ => Vec::new(),
    }
}

/// The tagging head's vocabulary: positive tags in at least [`MIN_TAG_ROWS`] rows, sorted.
fn tag_vocabulary(examples: &[Example]) -> Vec<String> {
    let mut rows: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in examples {
        for tag in &e.short_pos {
            *rows.entry(tag.as_str()).or_default() += 1;
        }
    }
    rows.into_iter()
        .filter(|&(_, n)| n >= MIN_TAG_ROWS)
        .map(|(tag, _)| tag.to_string())
        .collect()
}

/// Fills each example's tag indices (tags outside `vocabulary` are left out).
fn index_tags(examples: &mut [Example], vocabulary: &[String]) {
    let index: std::collections::HashMap<&str, usize> = vocabulary
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    for e in examples {
        e.tags = e
            .short_pos
            .iter()
            .filter_map(|t| index.get(t.as_str()).copied())
            .collect();
    }
}

/// Mirrors square CHW planes (3 channels) left to right.
fn mirror(planes: &mut [f32]) {
    let side = ((planes.len() / 3) as f64).sqrt().round() as usize;
    planes.chunks_mut(side.max(1)).for_each(|row| row.reverse());
}

/// The batch of 0-based step `step`.
fn batch_of(
    step: u64,
    settings: &Settings,
    tags: usize,
    examples: &[Example],
    pre: &Preprocessor,
) -> VlmBatch {
    let mut rng = Rng::stream(settings.seed, &[0x7265_6669_6e65, step]);
    let task = task_of(step);
    let mut batch = VlmBatch::default();
    let texts = if step < settings.tag_only_steps {
        0
    } else {
        settings.batch
    };
    for i in 0..texts {
        let e = &examples[rng.below(examples.len())];
        pre.normalize_planes_into(&e.pixels, &mut batch.pixels);
        batch.prompts.push((i, e.alt_text.clone(), task));
        batch.targets.push(e.targets[task.index()].clone());
    }
    if tags > 0 && settings.tag_weight > 0.0 {
        // A stream of its own, so that the text batches are those of a run without tags.
        let mut rng = Rng::stream(settings.seed, &[0x7461_6773, step]);
        for _ in 0..settings.tag_batch {
            let e = &examples[rng.below(examples.len())];
            let mut pixels = pre.normalize_planes(&e.pixels);
            if settings.tag_mirror && rng.chance(0.5) {
                mirror(&mut pixels);
            }
            batch.tag_pixels.extend(pixels);
            let mut hot = vec![0f32; tags];
            for &t in &e.tags {
                hot[t] = 1.0;
            }
            batch.tag_targets.extend(hot);
        }
    }
    batch
}

fn save(
    out: &Path,
    trainer: &VlmTrainer,
    files: &[(&str, String)],
    state: TrainState,
) -> Result<()> {
    write_atomic(&out.join("model.safetensors"), |tmp| {
        trainer.save_weights(tmp).map_err(model_err)
    })?;
    write_atomic(&out.join("optimizer.safetensors"), |tmp| {
        trainer.save_optimizer(tmp).map_err(model_err)
    })?;
    for (name, text) in files {
        write_text(&out.join(name), text)?;
    }
    let state_json = serde_json::to_string_pretty(&state)
        .map_err(|e| DataFusionError::Internal(format!("train state: {e}")))?;
    write_text(&out.join(STATE), &format!("{state_json}\n"))
}

fn json_err(what: &str, e: serde_json::Error) -> DataFusionError {
    DataFusionError::Plan(format!("{what}: {e}"))
}

/// Trains the refiner.
pub async fn run(args: &RefinerArgs, status: Status) -> Result<()> {
    let device = open_device(&args.device)?;
    // Where the tower (or the whole refiner), the preprocessing and the tokenizer come from.
    let clip_dir = match (&args.from, &args.clip) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => hqflow_udfs::models::embedded::directory().map_err(model_err)?,
    };
    let preprocessor_text = read_text(&clip_dir.join("preprocessor_config.json"))?;
    let pre = Preprocessor::from_json(&preprocessor_text).map_err(model_err)?;
    let tokenizer_path = clip_dir.join("tokenizer.json");
    let tokenizer_text = read_text(&tokenizer_path)?;
    let tokenizer_config = read_optional(&clip_dir.join("tokenizer_config.json"))?;
    let alt_tokenizer =
        ClipTokenizer::from_file(&tokenizer_path, args.alt_text_length).map_err(model_err)?;
    let target_tokenizer =
        ClipTokenizer::from_file(&tokenizer_path, TARGET_CONTEXT).map_err(model_err)?;
    std::fs::create_dir_all(&args.out).map_err(|e| io_err(&args.out, "create", e))?;

    let mut examples = read_examples(args, &pre, &alt_tokenizer, &target_tokenizer, status).await?;
    let optim = OptimConfig {
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-6,
        weight_decay: 0.1,
    };
    let (mut trainer, settings, config_text, mut state, vocabulary) = if args.resume {
        let config_text = read_text(&args.out.join("config.json"))?;
        let config = VlmConfig::from_json(&config_text).map_err(|e| {
            DataFusionError::Plan(format!("{}/config.json: {e}", args.out.display()))
        })?;
        let mut settings: Settings = serde_json::from_str(&read_text(&args.out.join(SETTINGS))?)
            .map_err(|e| json_err(SETTINGS, e))?;
        settings.steps = settings.steps.max(args.steps);
        let state: TrainState = serde_json::from_str(&read_text(&args.out.join(STATE))?)
            .map_err(|e| json_err(STATE, e))?;
        let vocabulary = trained_tags(&config, &settings);
        let mut trainer =
            VlmTrainer::with_tag_weight(config, settings.seed, optim, &device, settings.tag_weight)
                .map_err(model_err)?;
        trainer
            .load_weights(&args.out.join("model.safetensors"), "")
            .map_err(model_err)?;
        trainer
            .load_optimizer(&args.out.join("optimizer.safetensors"))
            .map_err(model_err)?;
        truncate_metrics(&args.out.join("metrics.jsonl"), state.step)?;
        status.line(&format!(
            "resuming {} at step {} of {}",
            args.out.display(),
            state.step,
            settings.steps
        ));
        (trainer, settings, config_text, state, vocabulary)
    } else {
        if args.out.join(STATE).exists() {
            return Err(DataFusionError::Plan(format!(
                "'{}' holds a run already: pass --resume to continue it, or choose another --out",
                args.out.display()
            )));
        }
        let source_config = read_text(&clip_dir.join("config.json"))?;
        let config_err = |e| json_err(&format!("{}/config.json", clip_dir.display()), e);
        let config = if args.from.is_some() {
            VlmConfig::from_json(&source_config)
                .map_err(|e| DataFusionError::Plan(format!("--from {}: {e}", clip_dir.display())))?
        } else {
            let clip: ClipConfig = serde_json::from_str(&source_config).map_err(config_err)?;
            // The tokenizer's start token: the first id of any encoding.
            let bos = target_tokenizer
                .encode("")
                .map_err(model_err)?
                .first()
                .copied()
                .unwrap_or(0);
            new_config(args, &clip, clip.text_config.vocab_size, bos, &examples)?
        };
        let mut config = config;
        if let Some(contrast) = args.negative_contrast {
            config.negative_contrast = contrast.max(0.0);
        }
        let settings = Settings {
            steps: args.steps,
            batch: args.batch.max(1),
            lr: args.lr,
            warmup: args.warmup,
            seed: args.seed,
            tag_weight: args.tag_weight.max(0.0),
            tag_batch: args.tag_batch,
            tag_only_steps: args.tag_only_steps,
            tag_mirror: args.tag_mirror,
        };
        if settings.tag_only_steps > 0 && (settings.tag_weight <= 0.0 || settings.tag_batch == 0) {
            return Err(DataFusionError::Plan(
                "--tag-only-steps needs a tagging head (--tag-weight and --tag-batch above 0)"
                    .into(),
            ));
        }
        // A head over the seed rows' tags, unless the refiner continued has one already.
        let had_tagger = config.tagger.is_some();
        if settings.tag_weight > 0.0 && settings.tag_batch > 0 && !had_tagger {
            config.tagger = Some(TaggerConfig {
                tags: tag_vocabulary(&examples),
                threshold: 0.5,
                writes_short_pos: false,
            });
        }
        if let Some(tagger) = &mut config.tagger {
            tagger.writes_short_pos |= args.tagger_writes_short_pos;
        } else if args.tagger_writes_short_pos {
            return Err(DataFusionError::Plan(
                "--tagger-writes-short-pos needs a tagging head (--tag-weight above 0)".into(),
            ));
        }
        config
            .check()
            .map_err(|e| DataFusionError::Plan(format!("refiner config: {e}")))?;
        let config_text = vlm_config_json(&config);
        let vocabulary = trained_tags(&config, &settings);
        let trainer =
            VlmTrainer::with_tag_weight(config, settings.seed, optim, &device, settings.tag_weight)
                .map_err(model_err)?;
        let (prefixes, what): (&[&str], _) = match args.from {
            Some(_) if had_tagger => (&[""], "refiner"),
            Some(_) => (
                &["vision_model.", "image_projection.", "decoder."],
                "refiner",
            ),
            None => (&["vision_model."], "vision tower"),
        };
        let mut loaded = 0;
        for prefix in prefixes {
            loaded += trainer
                .load_weights(&clip_dir.join("model.safetensors"), prefix)
                .map_err(model_err)?;
        }
        let head = match (&trainer.config().tagger, vocabulary.is_empty()) {
            (Some(t), false) => format!("a tagging head over {} tags, trained", t.tags.len()),
            (Some(t), true) => format!("a tagging head over {} tags, not trained", t.tags.len()),
            (None, _) => "no tagging head".into(),
        };
        status.line(&format!(
            "refiner: {} parameters; {what} ({loaded} tensors) from {}; {head}",
            trainer.parameter_count(),
            clip_dir.display(),
        ));
        let _ = std::fs::remove_file(args.out.join("metrics.jsonl"));
        (
            trainer,
            settings,
            config_text,
            TrainState::default(),
            vocabulary,
        )
    };
    index_tags(&mut examples, &vocabulary);
    let tagging = !vocabulary.is_empty();
    if let Some(t) = trainer.config().tagger.as_ref().filter(|_| tagging) {
        let unseen = examples.iter().filter(|e| e.tags.is_empty()).count();
        if unseen == examples.len() {
            return Err(DataFusionError::Plan(format!(
                "none of the {} tagging-head tags is a positive tag of a --data row",
                t.tags.len()
            )));
        }
    }
    let settings_text = serde_json::to_string_pretty(&settings)
        .map_err(|e| DataFusionError::Internal(format!("settings: {e}")))?;
    let mut files: Vec<(&str, String)> = vec![
        ("config.json", config_text),
        ("preprocessor_config.json", preprocessor_text),
        ("tokenizer.json", tokenizer_text),
        (SETTINGS, format!("{settings_text}\n")),
    ];
    if let Some(text) = tokenizer_config {
        files.push(("tokenizer_config.json", text));
    }

    let metrics_path = args.out.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| io_err(&metrics_path, "open", e))?;
    let stop = args.stop_after.unwrap_or(u64::MAX).min(settings.steps);
    let mut progress = ProgressBar::new(!status.is_quiet() && std::io::stderr().is_terminal());
    let started = Instant::now();
    let first = state.step;
    while state.step < stop {
        let batch = batch_of(state.step, &settings, vocabulary.len(), &examples, &pre);
        let lr = cosine_lr(settings.lr, settings.warmup, settings.steps, state.step);
        let stats = trainer.step(&batch, lr).map_err(model_err)?;
        state.step += 1;
        let line = serde_json::json!({
            "step": state.step,
            "task": step_name(&settings, state.step - 1),
            "loss": stats.loss,
            "token_accuracy": stats.token_accuracy,
            "tokens": stats.tokens,
            "tag_loss": stats.tag_loss,
            "tag_f1": stats.tag_f1,
            "lr": lr,
        });
        writeln!(metrics, "{line}").map_err(|e| io_err(&metrics_path, "write", e))?;
        let done = state.step - first;
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let rate = done as f64 / elapsed;
        progress.update(StepView {
            step: state.step,
            total: stop,
            loss: stats.loss,
            lr,
            pairs_per_s: rate * settings.batch as f64,
            eta: (stop - state.step) as f64 / rate.max(1e-9),
        });
        if state.step % args.log_every.max(1) == 0 || state.step == stop {
            let tags = if tagging {
                format!(
                    ", tag loss {:.3}, tag F1 {:.3}",
                    stats.tag_loss, stats.tag_f1
                )
            } else {
                String::new()
            };
            progress.line(&format!(
                "step {}/{}: {} loss {:.4}, token accuracy {:.3}{tags}, lr {lr:.2e}, {:.1} rows/s",
                state.step,
                settings.steps,
                step_name(&settings, state.step - 1),
                stats.loss,
                stats.token_accuracy,
                rate * settings.batch as f64
            ));
        }
        if state.step % args.save_every.max(1) == 0 || state.step == stop {
            save(&args.out, &trainer, &files, state)?;
        }
    }
    progress.clear();
    if state.step == first {
        save(&args.out, &trainer, &files, state)?;
    }
    status.line(&format!(
        "refiner checkpoint at step {} of {} in {}",
        state.step,
        settings.steps,
        args.out.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirroring_reverses_each_row_of_each_plane() {
        // 3 planes of 2x2: [a b / c d] becomes [b a / d c].
        let mut planes: Vec<f32> = (0..12).map(|v| v as f32).collect();
        mirror(&mut planes);
        assert_eq!(planes, [1., 0., 3., 2., 5., 4., 7., 6., 9., 8., 11., 10.]);
    }

    #[test]
    fn tasks_follow_the_ten_step_cycle() {
        let counts = Task::ALL.map(|t| (0..1000).filter(|&s| task_of(s) == t).count());
        assert_eq!(counts, [300, 300, 200, 200]);
    }
}
