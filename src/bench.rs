//! `hqflow bench`: measurements that speed targets are checked against (never timed tests).

// A benchmark's result is its output.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use datafusion::common::{DataFusionError, Result};
use hqflow_udfs::models::throughput::{matmul_rate, vision_forward_rate};
use hqflow_udfs::models::{ClipCheckpoint, DeviceSpec};

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
        } => {
            if *batch == 0 || *seconds <= 0.0 || *matmul == 0 {
                return Err(DataFusionError::Plan(
                    "--batch, --seconds and --matmul must be positive".into(),
                ));
            }
            if cfg!(debug_assertions) {
                status.line("warning: a debug build; figures mean something only from `cargo build --release`");
            }
            let device = DeviceSpec::parse(device)
                .map_err(DataFusionError::Plan)?
                .open()
                .map_err(model_error)?;
            let budget = Duration::from_secs_f64(*seconds);
            let checkpoint = ClipCheckpoint::load(model, &device).map_err(model_error)?;
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
                "batch": batch,
                "images_per_s": (*batch * forward.iterations) as f64 / forward.seconds,
                "forward_gflops": forward.gflops,
                "matmul_gflops": peak.gflops,
                "fraction_of_matmul": forward.gflops / peak.gflops,
            });
            println!("{report}");
            Ok(Outcome::Success)
        }
    }
}
