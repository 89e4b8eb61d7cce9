//! `hqflow bench`: measurements that speed targets are checked against (never timed tests).

// A benchmark's result is its output.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use datafusion::common::{DataFusionError, Result};
use hqflow_udfs::models::throughput::{matmul_rate, vision_forward_rate};
use hqflow_udfs::models::{ClipCheckpoint, DeviceSpec, Precision};

use crate::cli::{Outcome, Status};

/// `hqflow bench …`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// The CLIP image tower's forward GFLOP/s against this machine's fp32 matmul GFLOP/s.
    ClipForward {
        /// A CLIP checkpoint directory (HF layout).
        #[arg(long)]
        model: PathBuf,
        /// Images per forward pass.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Seconds to time each of the two measurements.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Side of the square matrices for the matmul reference.
        #[arg(long, default_value_t = 1024)]
        matmul: usize,
        /// Where to run: cpu, cuda[:N] or metal[:N].
        #[arg(long, default_value = "cpu")]
        device: String,
        /// The model's number format: f32, or bf16 (CPUs with AVX512-BF16). The matmul
        /// reference is f32 either way.
        #[arg(long, default_value = "f32")]
        precision: String,
    },
    /// `hqflow world pool`'s generation rate: rows/s rendered, encoded and written to
    /// Parquet (in a temporary directory, removed afterwards).
    World {
        /// Rows to generate.
        #[arg(long, default_value_t = 20_000)]
        rows: u64,
        /// Image options (size, format, threads).
        #[command(flatten)]
        image: crate::world::ImageArgs,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn model_error(e: hqflow_udfs::models::ModelError) -> DataFusionError {
    DataFusionError::Execution(e.to_string())
}

/// Runs a benchmark and prints one JSON object.
pub fn run(command: &BenchCommand, status: Status) -> Result<Outcome> {
    match command {
        BenchCommand::ClipForward {
            model,
            batch,
            seconds,
            matmul,
            device,
            precision,
        } => {
            if *batch == 0 || *seconds <= 0.0 || *matmul == 0 {
                return Err(DataFusionError::Plan(
                    "--batch, --seconds and --matmul must be positive".into(),
                ));
            }
            if cfg!(debug_assertions) {
                status.line("warning: a debug build; figures mean something only from `cargo build --release`");
            }
            let spec = DeviceSpec::parse(device).map_err(DataFusionError::Plan)?;
            let precision = Precision::parse(precision)
                .map_err(|e| DataFusionError::Plan(format!("--precision: {e}")))?;
            let mode = precision.mode(spec).map_err(model_error)?;
            let device = spec.open().map_err(model_error)?;
            let budget = Duration::from_secs_f64(*seconds);
            let checkpoint = ClipCheckpoint::load_in(model, &device, mode).map_err(model_error)?;
            status.line(&format!(
                "timing the image tower on batches of {batch} for {seconds} s"
            ));
            let forward = vision_forward_rate(&checkpoint, *batch, budget).map_err(model_error)?;
            status.line(&format!(
                "timing {matmul}x{matmul} fp32 matmul for {seconds} s"
            ));
            let peak = matmul_rate(*matmul, &device, budget).map_err(model_error)?;
            let report = serde_json::json!({
                "benchmark": "clip image-tower forward vs fp32 matmul",
                "model": model.display().to_string(),
                "device": format!("{device:?}"),
                "precision": precision.to_string(),
                "batch": batch,
                "images_per_s": (*batch * forward.iterations) as f64 / forward.seconds,
                "forward_gflops": forward.gflops,
                "matmul_gflops": peak.gflops,
                "fraction_of_matmul": forward.gflops / peak.gflops,
            });
            println!("{report}");
            Ok(Outcome::Success)
        }
        BenchCommand::World { rows, image, seed } => bench_world(*rows, image, *seed, status),
    }
}

fn bench_world(
    rows: u64,
    image: &crate::world::ImageArgs,
    seed: u64,
    status: Status,
) -> Result<Outcome> {
    if cfg!(debug_assertions) {
        status.line(
            "warning: a debug build; figures mean something only from `cargo build --release`",
        );
    }
    let out = std::env::temp_dir().join(format!("hqflow-bench-world-{}", std::process::id()));
    let args = crate::world::TableArgs {
        rows,
        seed,
        out: out.clone(),
        image: image.clone(),
        mix: crate::world::mix::Mix::default(),
    };
    crate::shards::prepare_dir(&out)?;
    status.line(&format!(
        "generating {rows} rows at {} px into {}",
        image.size,
        out.display()
    ));
    let started = std::time::Instant::now();
    let result = crate::world::pool::write_pool(&args);
    let seconds = started.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(&out)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&out);
    let written = result?;
    let threads = image.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let report = serde_json::json!({
        "benchmark": "world pool generation",
        "rows": written.rows,
        "size": image.size,
        "format": format!("{:?}", image.format).to_lowercase(),
        "threads": threads,
        "seconds": seconds,
        "rows_per_s": written.rows as f64 / seconds.max(1e-9),
        "bytes_per_row": bytes as f64 / (written.rows.max(1)) as f64,
    });
    println!("{report}");
    Ok(Outcome::Success)
}
