//! `hqflow ingest`: turn the formats real pools come in into pool tables (Parquet shards that
//! pass `schemas/pool.json`).
//!
//! - `ingest webdataset`: tar shards as DataComp and img2dataset write them
//!   (`KEY.jpg|png|webp` + `KEY.txt` + optional `KEY.json`), read as a stream;
//! - `ingest img2dataset`: img2dataset's Parquet output (image bytes, caption, key, url);
//! - `ingest folder`: image files with sidecar `.txt` captions (and optional `.json`), which
//!   is also img2dataset's `files` output;
//! - `ingest package`: image-text pools made from Debian and npm packages that were fetched
//!   and unpacked (`tests/data/packages/fetch_pools.sh` does that).
//!
//! Every reader hands [`row::Row`]s to one [`sink::PoolSink`], which checks uniqueness,
//! counts bad input ([`problems`]) and writes shards with [`crate::shards`]. Memory is bounded
//! by a chunk of rows and one member, not by the input.
//!
//! How to add a format: a reader in a module of its own that walks its input, builds rows
//! with [`row::Row`] (dimensions from [`image_header`]), reports bad input through
//! [`sink::PoolSink::problem`], and a variant in [`IngestCommand`].

pub mod folder;
pub mod image_header;
pub mod img2dataset;
pub mod packages;
pub mod problems;
pub mod progress;
pub mod row;
pub mod sample;
pub mod sink;
pub mod walk;
pub mod webdataset;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::common::Result;

use crate::cli::{Outcome, Status};
use packages::Package;
use progress::Progress;
use sink::{PoolSink, Summary};

/// Options every `ingest` subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output directory (created; must be empty if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per Parquet shard (part-00000.parquet, …).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub shard_rows: u64,
    /// Stop at the first bad input (truncated tar, missing caption, non-image, duplicate key)
    /// instead of counting it, skipping it and reporting it at the end.
    #[arg(long)]
    pub strict: bool,
}

/// `hqflow ingest …`.
#[derive(Debug, clap::Subcommand)]
pub enum IngestCommand {
    /// Tar shards in the webdataset layout: KEY.jpg|png|webp with KEY.txt and optional
    /// KEY.json per sample. uid: the JSON's `uid` when present, else md5 of the key.
    Webdataset {
        /// Tar shards, read in the order given.
        #[arg(required = true, value_name = "SHARD")]
        shards: Vec<PathBuf>,
        /// Output options.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// img2dataset's Parquet output (output_format=parquet): an image bytes column (jpg, png,
    /// webp), caption, key, url. Rows img2dataset did not download are skipped.
    Img2dataset {
        /// The directory with its *.parquet files.
        dir: PathBuf,
        /// Output options.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Image files (jpg, jpeg, png, webp, gif, bmp) with sidecar captions: a.jpg + a.txt, and
    /// optional a.json (uid, url), in DIR and its subdirectories.
    Folder {
        /// The directory.
        dir: PathBuf,
        /// Output options.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A pool from a fetched and unpacked package (see tests/data/packages/fetch_pools.sh).
    Package {
        /// Which package.
        #[arg(value_enum)]
        name: Package,
        /// Where the package was unpacked (`dpkg-deb -x PKG.deb DIR`, or for npm
        /// `tar -xzf PKG.tgz -C DIR`).
        dir: PathBuf,
        /// Output options.
        #[command(flatten)]
        output: OutputArgs,
    },
}

impl IngestCommand {
    fn output(&self) -> &OutputArgs {
        match self {
            IngestCommand::Webdataset { output, .. }
            | IngestCommand::Img2dataset { output, .. }
            | IngestCommand::Folder { output, .. }
            | IngestCommand::Package { output, .. } => output,
        }
    }

    fn name(&self) -> String {
        match self {
            IngestCommand::Webdataset { .. } => "ingest webdataset".into(),
            IngestCommand::Img2dataset { .. } => "ingest img2dataset".into(),
            IngestCommand::Folder { .. } => "ingest folder".into(),
            IngestCommand::Package { name, .. } => format!("ingest package {}", name.word()),
        }
    }

    fn inputs(&self) -> Vec<String> {
        let show = |p: &Path| p.display().to_string();
        match self {
            IngestCommand::Webdataset { shards, .. } => shards.iter().map(|p| show(p)).collect(),
            IngestCommand::Img2dataset { dir, .. }
            | IngestCommand::Folder { dir, .. }
            | IngestCommand::Package { dir, .. } => vec![show(dir)],
        }
    }
}

/// Runs an `ingest` subcommand.
pub fn run(command: &IngestCommand, status: Status) -> Result<Outcome> {
    let started = Instant::now();
    let output = command.output();
    crate::shards::prepare_dir(&output.out)?;
    let with_label = matches!(command, IngestCommand::Package { .. });
    let mut sink = PoolSink::new(
        &output.out,
        usize::try_from(output.shard_rows).unwrap_or(usize::MAX),
        output.strict,
        with_label,
    )?;
    let mut progress = Progress::new(!status.is_quiet() && std::io::stderr().is_terminal());
    match command {
        IngestCommand::Webdataset { shards, .. } => {
            webdataset::ingest(shards, &mut sink, &mut progress)?;
        }
        IngestCommand::Img2dataset { dir, .. } => {
            img2dataset::ingest(dir, &mut sink, &mut progress)?;
        }
        IngestCommand::Folder { dir, .. } => folder::ingest(dir, &mut sink, &mut progress)?,
        IngestCommand::Package { name, dir, .. } => {
            packages::ingest(*name, dir, &mut sink, &mut progress)?;
        }
    }
    progress.clear();
    let summary = sink.finish()?;
    write_manifest(command, &summary)?;
    report(&command.name(), &output.out, &summary, started, status);
    Ok(Outcome::Success)
}

/// Writes `ingest.json` next to the shards, last: a directory without it is incomplete.
fn write_manifest(command: &IngestCommand, summary: &Summary) -> Result<()> {
    let output = command.output();
    let manifest = serde_json::json!({
        "command": command.name(),
        "inputs": command.inputs(),
        "rows": summary.rows,
        "shards": summary.shards.len(),
        "shard_rows": output.shard_rows,
        "problems": summary.problems.to_json(),
        "skipped": summary.skipped,
    });
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&manifest).unwrap_or_default()
    );
    crate::shards::write_atomic(&output.out.join("ingest.json"), text.as_bytes())
}

fn report(name: &str, out: &Path, summary: &Summary, started: Instant, status: Status) {
    let seconds = started.elapsed().as_secs_f64();
    status.line(&format!(
        "{name}: {} rows in {} shard(s) at {} ({seconds:.1} s, {:.0} rows/s)",
        summary.rows,
        summary.shards.len(),
        out.display(),
        summary.rows as f64 / seconds.max(1e-9)
    ));
    for (what, count) in &summary.skipped {
        status.line(&format!("  skipped {count} {what}"));
    }
    for line in summary.problems.report() {
        status.line(&line);
    }
}
