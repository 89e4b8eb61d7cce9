//! `hqflow demo`: the main job on a small synthetic pool, with hqflow's built-in model.
//!
//! It generates a `hqflow world` pool (rendered scenes, alt-texts of mixed quality, hidden
//! truth), checks it against the pool contract, runs the text prefilter with a reason for
//! every dropped row, scores what is left with `dfn_score` on the built-in DFN and keeps the
//! top 30%, compares both filters with the truth, materializes the kept table and writes
//! an HTML report of the rows around the cut (`hqflow report`). Every
//! step is a query file under `queries/` that runs as it is on any pool.

// The walk-through is this command's output: it prints to stdout by design.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use datafusion::common::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use crate::cli::{Outcome, Status};
use crate::contract::Contract;
use crate::output::{Format, ResultWriter};
use crate::script::run_script;
use crate::session::new_context;
use crate::tables::register_parquet_table;
use crate::world::mix::Mix;
use crate::world::pool::write_pool_rows;
use crate::world::{Domain, ImageArgs, ImageFormat};

/// The demo's SQL, the same files users run with `hqflow sql -f queries/… -t pool=…`.
const QUERIES: [(&str, &str); 5] = [
    (
        "queries/pool_overview.sql",
        include_str!("../queries/pool_overview.sql"),
    ),
    (
        "queries/text_prefilter.sql",
        include_str!("../queries/text_prefilter.sql"),
    ),
    (
        "queries/prefilter_vs_truth.sql",
        include_str!("../queries/prefilter_vs_truth.sql"),
    ),
    (
        "queries/dfn_filter.sql",
        include_str!("../queries/dfn_filter.sql"),
    ),
    (
        "queries/dfn_vs_truth.sql",
        include_str!("../queries/dfn_vs_truth.sql"),
    ),
];

/// The side of the demo's images: the built-in model's input size.
const IMAGE_SIDE: u32 = 32;

/// `hqflow demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for the generated pool and the kept table (replaced if it exists).
    #[arg(long, default_value = "hqflow-demo")]
    pub out: PathBuf,
    /// Rows in the generated pool.
    #[arg(long, default_value_t = 2000)]
    pub rows: usize,
    /// Seed: the same seed gives the same pool.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

fn sql_path(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .ok_or_else(|| DataFusionError::Plan(format!("'{}' is not valid UTF-8", path.display())))?;
    Ok(s.replace('\'', "''"))
}

async fn show(ctx: &SessionContext, title: &str, sql: &str) -> Result<()> {
    println!("\n== {title}");
    let mut out = ResultWriter::stdout(Format::Table);
    let mut report = |line: &str| println!("{line}");
    run_script(ctx, sql, &mut out, &mut report)
        .await
        .map_err(|e| e.context(title.to_string()))?;
    out.finish()
}

/// Runs the demo.
pub async fn run(args: &DemoArgs, status: Status) -> Result<Outcome> {
    if args.rows == 0 {
        return Err(DataFusionError::Plan("--rows must be at least 1".into()));
    }
    let pool_dir = args.out.join("pool");
    let scored_dir = args.out.join("scored");
    let kept_dir = args.out.join("kept");
    for dir in [&pool_dir, &scored_dir, &kept_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| {
                DataFusionError::Plan(format!("cannot replace '{}': {e}", dir.display()))
            })?;
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| {
        DataFusionError::Plan(format!("cannot create '{}': {e}", args.out.display()))
    })?;

    status.line(&format!(
        "generating {} world pool rows (seed {}) into {}",
        args.rows,
        args.seed,
        pool_dir.display()
    ));
    let image = ImageArgs {
        size: IMAGE_SIDE,
        format: ImageFormat::Png,
        shard_rows: 10_000,
        threads: None,
    };
    crate::shards::prepare_dir(&pool_dir)?;
    write_pool_rows(
        &pool_dir,
        args.rows as u64,
        args.seed,
        &image,
        &Mix::default(),
        Domain::Pool,
    )?;

    let ctx = new_context()?;
    let schema = register_parquet_table(&ctx, "pool", &pool_dir.to_string_lossy()).await?;
    let contract = Contract::load("pool")?;
    let violations = contract.check(&schema);
    println!("== hqflow schema check --table pool={}", pool_dir.display());
    if violations.is_empty() {
        println!("conforms to the pool contract (schemas/pool.json)");
    } else {
        for v in &violations {
            println!("  {v}");
        }
        return Ok(Outcome::CheckFailed);
    }

    for (file, sql) in QUERIES {
        show(&ctx, file, sql).await?;
    }
    let copy_scored = format!(
        "COPY (SELECT * FROM scored ORDER BY uid) TO '{}/' STORED AS PARQUET",
        sql_path(&scored_dir)?
    );
    show(&ctx, "materialize the scored rows", &copy_scored).await?;
    let copy_kept = format!(
        "COPY (SELECT * FROM dfn_kept ORDER BY uid) TO '{}/' STORED AS PARQUET",
        sql_path(&kept_dir)?
    );
    show(&ctx, "materialize the kept rows", &copy_kept).await?;
    register_parquet_table(&ctx, "kept", &kept_dir.to_string_lossy()).await?;
    show(
        &ctx,
        "read the kept table back",
        "SELECT count(*) AS kept_rows, count(DISTINCT uid) AS distinct_uids FROM kept",
    )
    .await?;
    // What was kept and dropped, and why: the report at the cut the filter used.
    let report = args.out.join("report.html");
    let threshold = ctx
        .sql("SELECT CAST(min(dfn_score) AS DOUBLE) FROM dfn_kept")
        .await?
        .collect()
        .await?
        .first()
        .and_then(|b| {
            let col = b
                .column(0)
                .as_primitive_opt::<arrow::datatypes::Float64Type>()?;
            col.is_valid(0).then(|| col.value(0))
        });
    if let Some(threshold) = threshold {
        println!(
            "\n== hqflow report -t scored={} --threshold {threshold:.6} --out {}",
            scored_dir.display(),
            report.display()
        );
        crate::report::write_report(
            &ctx,
            "SELECT * FROM scored",
            "dfn_score",
            crate::report::Cut::Threshold(threshold),
            12,
            &report,
            &[],
            status,
        )
        .await?;
        println!(
            "open {} in a browser: the kept and dropped rows around the cut",
            report.display()
        );
    }
    println!(
        "\nnext: refine the kept pairs with a vision-language model (HQ-CLIP's four texts):\n\
         hqflow run queries/refine.sql -t scored={scored} -m refiner='http://HOST:PORT/v1?model=MODEL_ID' --out refined/\n\
         Explore: hqflow sql -t pool={pool} -t scored={scored} -t kept={kept}",
        scored = scored_dir.display(),
        kept = kept_dir.display(),
        pool = pool_dir.display()
    );
    Ok(Outcome::Success)
}
