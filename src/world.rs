//! `hqflow world`: a synthetic image-text world whose truth is known, so that filters and
//! annotations can be measured.
//!
//! - `world pool`: rendered scenes with alt-texts of mixed quality and hidden `truth_*`
//!   columns (a pool that passes `schemas/pool.json`);
//! - `world seed`: the four HQ-CLIP texts written from truth, to train a refiner on;
//! - `world eval`: zero-shot classification, retrieval and compositional-negative sets.
//!
//! Everything is deterministic by seed: each row draws from its own [`rng::Rng`] stream
//! keyed by (seed, table, row), so rows are made on several threads and come out
//! byte-identical. Rows stream to Parquet shards in chunks; memory does not grow with rows.
//!
//! How to add an attribute value (a shape, a color): [`vocab`], and for a shape its outline
//! in [`render`]; captions, the parser and `truth_scene` follow from the vocabulary.

pub mod captions;
pub mod claims;
pub mod eval_sets;
pub mod judge;
pub mod junk;
pub mod mix;
pub mod pool;
pub mod render;
pub mod rng;
pub mod scene;
pub mod seed_texts;
pub mod table;
pub mod vocab;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::common::{DataFusionError, Result};

use crate::cli::{Outcome, Status};
use mix::Mix;
use render::Encoding;
use rng::Rng;
use scene::Scene;

/// How images are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormat {
    /// PNG (lossless).
    Png,
    /// JPEG, quality 90.
    Jpeg,
    /// PNG or JPEG, half and half, chosen per row.
    Mixed,
}

/// Image and output options shared by the world's commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Image side in pixels (16 to 224).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..=224))]
    pub size: u32,
    /// Image encoding.
    #[arg(long, value_enum, default_value_t = ImageFormat::Png)]
    pub format: ImageFormat,
    /// Rows per Parquet shard (part-00000.parquet, …).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub shard_rows: u64,
    /// Generator threads [default: the available cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub threads: Option<u64>,
}

impl Default for ImageArgs {
    fn default() -> Self {
        ImageArgs {
            size: 64,
            format: ImageFormat::Png,
            shard_rows: 10_000,
            threads: None,
        }
    }
}

impl ImageArgs {
    fn threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(2, |n| n.get()),
            |n| n as usize,
        )
    }

    fn shard_rows(&self) -> usize {
        usize::try_from(self.shard_rows).unwrap_or(usize::MAX)
    }
}

fn parse_mix(s: &str) -> std::result::Result<Mix, String> {
    s.parse()
}

/// `hqflow world pool` and `hqflow world seed`: a generated table of rendered scenes.
#[derive(Debug, Clone, clap::Args)]
pub struct TableArgs {
    /// Rows to generate.
    #[arg(long)]
    pub rows: u64,
    /// Seed: the same seed and options give a byte-identical table (seed rows are other
    /// images than the pool's with the same seed).
    #[arg(long)]
    pub seed: u64,
    /// Output directory (created; must be empty if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Image options.
    #[command(flatten)]
    pub image: ImageArgs,
    /// Alt-text quality mix: CLASS=WEIGHT,… over correct, wrong_attr, junk, mismatch, empty
    /// (weights are normalized; a class left out gets none). For `seed`, the raw alt-texts
    /// the annotator sees.
    #[arg(
        long,
        value_parser = parse_mix,
        default_value = "correct=40,wrong_attr=20,junk=15,mismatch=15,empty=10"
    )]
    pub mix: Mix,
}

/// `hqflow world eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Seed.
    #[arg(long)]
    pub seed: u64,
    /// Output directory: zeroshot/, retrieval/, compositional/ are written in it.
    #[arg(long)]
    pub out: PathBuf,
    /// Zero-shot images per class (classes: every color × shape).
    #[arg(long, default_value_t = 10)]
    pub per_class: u64,
    /// Retrieval images.
    #[arg(long, default_value_t = 1000)]
    pub retrieval: u64,
    /// Compositional-negative triples.
    #[arg(long, default_value_t = 1000)]
    pub compositional: u64,
    /// Filtering-pool rows: pool rows (the default quality mix) with `truth_quality`, on
    /// which a filter model's scores are judged by ROC-AUC.
    #[arg(long, default_value_t = 2000)]
    pub filtering: u64,
    /// Image options.
    #[command(flatten)]
    pub image: ImageArgs,
}

/// `hqflow world …`.
#[derive(Debug, clap::Subcommand)]
pub enum WorldCommand {
    /// Write a pool of rendered scenes with alt-texts of mixed quality and hidden truth
    /// columns (truth_quality, truth_scene, truth_caption, truth_changed).
    Pool(TableArgs),
    /// Write seed annotations: long_pos, long_neg, short_pos, short_neg written from truth.
    Seed(TableArgs),
    /// Write evaluation sets: zero-shot classes, retrieval, compositional negatives.
    Eval(EvalArgs),
    /// Judge a refined table's four texts against the hidden truth of its world rows
    /// (`truth_scene`): positive-tag F1, contradicting negatives, faithful descriptions.
    Judge(judge::JudgeArgs),
}

/// Which table a row belongs to: part of every row's random stream key.
#[derive(Debug, Clone, Copy)]
pub enum Domain {
    /// `world pool`.
    Pool = 1,
    /// `world seed`.
    Seed = 2,
    /// `world eval` zero-shot.
    ZeroShot = 3,
    /// `world eval` retrieval.
    Retrieval = 4,
    /// `world eval` compositional.
    Compositional = 5,
    /// `world eval` filtering pool.
    Filtering = 6,
}

/// What a row's random stream is for: part of the key, so each use is independent.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// The scene.
    Scene = 0,
    /// The texts.
    Text = 1,
    /// The uid.
    Uid = 2,
    /// A stand-in scene for a mismatched caption.
    Other = 3,
    /// The start of the quality sequence (one per table, not per row).
    Quality = 4,
}

/// The random stream of one row and purpose.
pub fn row_rng(seed: u64, domain: Domain, row: u64, purpose: Purpose) -> Rng {
    Rng::stream(seed, &[domain as u64, row, purpose as u64])
}

/// The scene of a row.
pub fn row_scene(seed: u64, domain: Domain, row: u64) -> Scene {
    Scene::random(&mut row_rng(seed, domain, row, Purpose::Scene))
}

/// A DataComp-style uid: 32 hex characters.
pub fn row_uid(seed: u64, domain: Domain, row: u64) -> String {
    let mut rng = row_rng(seed, domain, row, Purpose::Uid);
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// Renders and encodes a scene; `mixed` picks the encoding with `rng`.
pub fn encode_scene(
    scene: &Scene,
    image: &ImageArgs,
    rng: &mut Rng,
) -> Result<(Vec<u8>, Encoding)> {
    let encoding = match image.format {
        ImageFormat::Png => Encoding::Png,
        ImageFormat::Jpeg => Encoding::Jpeg,
        ImageFormat::Mixed if rng.chance(0.5) => Encoding::Png,
        ImageFormat::Mixed => Encoding::Jpeg,
    };
    let rgb = render::rasterize(scene, image.size)?;
    Ok((render::encode(&rgb, image.size, encoding)?, encoding))
}

/// Writes `world.json` next to the shards: what made them.
fn write_manifest(dir: &Path, manifest: serde_json::Value) -> Result<()> {
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&manifest).unwrap_or_default()
    );
    crate::shards::write_atomic(&dir.join("world.json"), text.as_bytes())
}

fn rate_line(what: &str, rows: usize, shards: usize, dir: &Path, started: Instant) -> String {
    let seconds = started.elapsed().as_secs_f64();
    format!(
        "{what}: {rows} rows in {shards} shard(s) at {} ({seconds:.1} s, {:.0} rows/s)",
        dir.display(),
        rows as f64 / seconds.max(1e-9)
    )
}

/// Writes one generated table (`world pool` or `world seed`) with its manifest and a rate
/// line.
fn generate_table(
    command: &str,
    args: &TableArgs,
    status: Status,
    write: impl FnOnce() -> Result<table::Written>,
) -> Result<()> {
    let started = Instant::now();
    crate::shards::prepare_dir(&args.out)?;
    let written = write()?;
    write_manifest(
        &args.out,
        serde_json::json!({
            "command": command,
            "rows": args.rows,
            "seed": args.seed,
            "size": args.image.size,
            "format": format!("{:?}", args.image.format).to_lowercase(),
            "mix": args.mix.to_string(),
            "shard_rows": args.image.shard_rows,
        }),
    )?;
    status.line(&rate_line(
        command,
        written.rows,
        written.shards.len(),
        &args.out,
        started,
    ));
    Ok(())
}

/// Runs a `world` subcommand.
pub fn run(command: &WorldCommand, status: Status) -> Result<Outcome> {
    match command {
        WorldCommand::Pool(args) => {
            generate_table("world pool", args, status, || pool::write_pool(args))?
        }
        WorldCommand::Seed(args) => {
            generate_table("world seed", args, status, || pool::write_seed(args))?
        }
        WorldCommand::Eval(args) => {
            let started = Instant::now();
            crate::shards::prepare_dir(&args.out)?;
            let sets = eval_sets::write_eval(args)?;
            let rows: usize = sets.iter().map(|(_, w)| w.rows).sum();
            let shards: usize = sets.iter().map(|(_, w)| w.shards.len()).sum();
            for (name, written) in &sets {
                status.line(&format!(
                    "world eval {name}: {} rows at {}",
                    written.rows,
                    args.out.join(name).display()
                ));
            }
            write_manifest(
                &args.out,
                serde_json::json!({
                    "command": "world eval",
                    "seed": args.seed,
                    "per_class": args.per_class,
                    "retrieval": args.retrieval,
                    "compositional": args.compositional,
                    "filtering": args.filtering,
                    "size": args.image.size,
                    "format": format!("{:?}", args.image.format).to_lowercase(),
                    "shard_rows": args.image.shard_rows,
                }),
            )?;
            status.line(&rate_line("world eval", rows, shards, &args.out, started));
        }
        WorldCommand::Judge(_) => {
            return Err(DataFusionError::Internal(
                "world judge runs through judge::run".into(),
            ));
        }
    }
    Ok(Outcome::Success)
}
