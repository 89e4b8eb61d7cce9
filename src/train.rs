//! `hqflow-train`: CLIP training on curated tables, and its evaluation.
//!
//! - [`fit`]: the loop, checkpoints (Hugging Face layout) and exact resumption;
//! - [`eval`]: zero-shot, retrieval and compositional accuracy on `hqflow world eval` sets;
//! - [`recipe`]: the TOML recipe and its defaults; [`schedule`]: warmup + cosine;
//! - [`source`], [`shuffle`], [`loader`], [`augment`]: the data path, from Parquet batches
//!   to prepared tensors' inputs on worker threads.
//!
//! The model side (training mode, initialisation, loss, optimizer, tokenizer training) is in
//! `hqflow_udfs::training`, next to the model code it trains.
//!
//! How to add a subcommand: a variant in [`Command`], its arguments as a clap struct in a
//! module of its own with an async `run`.

pub mod augment;
pub mod caption_edit;
pub mod eval;
pub mod fit;
pub mod loader;
pub mod progress;
pub mod recipe;
pub mod refiner;
pub mod schedule;
pub mod shuffle;
pub mod source;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Status;
use crate::object_stores::redact_secrets;

/// `hqflow-train`: train CLIP models on hqflow tables and evaluate them.
#[derive(Debug, Parser)]
#[command(name = "hqflow-train", version, about)]
pub struct TrainCli {
    /// No status lines on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `hqflow-train`'s subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Train a CLIP (from scratch or from --init) on a table with `img` and text columns.
    Fit(fit::FitArgs),
    /// Evaluate a checkpoint on `hqflow world eval` sets; prints metrics as JSON.
    Eval(eval::EvalArgs),
    /// Fine-tune the vision-language refiner (`lvlm_refine`'s built-in backend) on seed
    /// annotations: `img`, `txt` and the four HQ-CLIP texts.
    Refiner(refiner::RefinerArgs),
}

/// Parses arguments, runs, and turns the result into an exit code.
pub fn main() -> ExitCode {
    let cli = TrainCli::parse();
    let runtime = match crate::cli::runtime(Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let status = Status::new(cli.quiet);
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Fit(args) => fit::run(args, status).await,
            Command::Eval(args) => eval::run(args, status).await,
            Command::Refiner(args) => refiner::run(args, status).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", redact_secrets(&e.strip_backtrace()));
            ExitCode::from(1)
        }
    }
}
