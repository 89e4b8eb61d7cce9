//! `hqflow demo`: the main job on a small synthetic pool, with hqflow's built-in models.
//!
//! It generates a `hqflow world` pool (rendered scenes, alt-texts of mixed quality, hidden
//! truth), checks it against the pool contract, runs the text prefilter with a reason for
//! every dropped row, scores what is left with `dfn_score` on the built-in DFN and keeps the
//! top 30%, compares both filters with the truth, and materializes the kept table. Then the
//! HQ-CLIP half: `lvlm_refine` on the built-in refiner writes the four texts of every kept
//! pair (`queries/refine.sql`), materialized to the refined contract and exported as JSON
//! keyed by uid, with the statistics queries, a judgement of the texts against the truth
//! and an HTML report of the rows around the cut (`hqflow report`). Last, a short HQ-CLIP
//! training (`hqflow-train fit` with hard negatives and the tag loss) fine-tunes the built-in
//! DFN on the refined table, and both are evaluated on `hqflow world eval` sets. Every SQL
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
const QUERIES: [(&str, &str); 6] = [
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
    (
        "queries/dfn_wrong_kept.sql",
        include_str!("../queries/dfn_wrong_kept.sql"),
    ),
];

/// The refinement and what is computed from it, in the order the demo runs them.
const REFINE_SQL: &str = include_str!("../queries/refine.sql");
const STATS: [(&str, &str); 3] = [
    (
        "queries/stats/description_lengths.sql",
        include_str!("../queries/stats/description_lengths.sql"),
    ),
    (
        "queries/stats/pos_neg_overlap.sql",
        include_str!("../queries/stats/pos_neg_overlap.sql"),
    ),
    (
        "queries/stats/refine_errors.sql",
        include_str!("../queries/stats/refine_errors.sql"),
    ),
];
const EXPORT_JSON_SQL: &str = include_str!("../queries/export_json.sql");

/// The demo's short HQ-CLIP training: the built-in DFN fine-tuned on the refined table with
/// alt-texts, long descriptions and tags as captions, the long negatives as hard negatives
/// and the tag loss.
fn hqclip_recipe(steps: u64) -> String {
    format!(
        "[text]\ntxt = 0.5\nlong_pos = 0.25\nshort_pos = 0.25\n[data]\nbatch_size = 64\n\
         [optim]\nsteps = {steps}\nwarmup_steps = {}\nlr = 0.0003\n[loss]\nhard_negative = 1.0\n\
         tags = 1.0\n[run]\nlog_every = 40\nsave_every = {steps}\n",
        (steps / 10).max(1)
    )
}

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
    /// Steps of the closing HQ-CLIP fine-tuning (0 skips it and its evaluation).
    #[arg(long, default_value_t = 120)]
    pub train_steps: u64,
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
    let outputs = ["refined", "hqclip", "eval"].map(|d| args.out.join(d));
    for dir in [&pool_dir, &scored_dir, &kept_dir]
        .into_iter()
        .chain(&outputs)
    {
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
    // HQ-CLIP: the four texts of every kept pair, written by the built-in refiner.
    let refined_dir = args.out.join("refined");
    let refine = REFINE_SQL.trim().trim_end_matches(';');
    // Sorted like the scored and kept tables: the fine-tune reads the refined table in file
    // order, and the partitions' files otherwise split the rows differently on every run.
    let copy_refined = format!(
        "COPY (SELECT * FROM ({refine}\n) ORDER BY uid) TO '{}/' STORED AS PARQUET",
        sql_path(&refined_dir)?
    );
    status.line("refining the kept pairs with the built-in refiner (hqflow-world-vlm)");
    let started = std::time::Instant::now();
    show(
        &ctx,
        "queries/refine.sql (lvlm_refine on the built-in refiner)",
        &copy_refined,
    )
    .await?;
    let refine_seconds = started.elapsed().as_secs_f64();
    let refined_schema =
        register_parquet_table(&ctx, "refined", &refined_dir.to_string_lossy()).await?;
    let violations = Contract::load("refined")?.check(&refined_schema);
    println!(
        "\n== hqflow schema check --table refined={} --schema refined",
        refined_dir.display()
    );
    if violations.is_empty() {
        println!("conforms to the refined contract (schemas/refined.json)");
    } else {
        for v in &violations {
            println!("  {v}");
        }
        return Ok(Outcome::CheckFailed);
    }
    show(
        &ctx,
        "a refined row",
        "SELECT txt, long_pos, long_neg, short_pos, short_neg FROM refined \
         WHERE refine_error IS NULL ORDER BY uid LIMIT 1",
    )
    .await?;
    for (file, sql) in STATS {
        show(&ctx, file, sql).await?;
    }
    let json = args.out.join("refined.json");
    let mut writer = ResultWriter::file(Format::JsonKeyed, &json)?;
    let mut quiet = |_: &str| {};
    run_script(&ctx, EXPORT_JSON_SQL, &mut writer, &mut quiet).await?;
    writer.finish()?;
    println!(
        "\n== queries/export_json.sql --format json-keyed\nwrote {} (texts keyed by uid, as \
         HQ-CLIP released VLM-150M)",
        json.display()
    );
    let judged = crate::world::judge::judge_tables(&ctx, "refined", Some("pool")).await?;
    let all = &judged.all;
    println!(
        "\n== hqflow world judge --table {} --truth {}\n\
         {} rows refined in {refine_seconds:.1} s; against the hidden truth: positive tags \
         precision {:.3}, recall {:.3}, F1 {:.3}; negative tags contradicting the image {:.3}; \
         long descriptions: statements right {:.3}, wholly right {:.3} (naming every object \
         {:.3}); long negatives contradicting the image {:.3}",
        refined_dir.display(),
        pool_dir.display(),
        all.rows - all.unrefined,
        all.short_pos_precision,
        all.short_pos_recall,
        all.short_pos_f1,
        all.short_neg_contradict,
        all.long_pos_statements_right,
        all.long_pos_faithful,
        all.long_pos_complete,
        all.long_neg_contradict
    );

    // What was kept and dropped, and why: the report at the cut the filter used, with the
    // refined texts of the kept rows.
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
            "\n== hqflow report -t scored={} -t refined={} --threshold {threshold:.6} --out {}",
            scored_dir.display(),
            refined_dir.display(),
            report.display()
        );
        crate::report::write_report(
            &ctx,
            "SELECT s.*, r.long_pos, r.long_neg, r.short_pos, r.short_neg, r.refine_error \
             FROM scored s LEFT JOIN refined r ON s.uid = r.uid",
            "dfn_score",
            crate::report::Cut::Threshold(threshold),
            12,
            &report,
            &[],
            status,
        )
        .await?;
        println!(
            "open {} in a browser: the kept and dropped rows around the cut, with their \
             refined texts",
            report.display()
        );
    }

    if args.train_steps > 0 {
        train_and_evaluate(args, &refined_dir, status).await?;
    }
    println!(
        "\noutputs under {out}: pool/ (the world pool), scored/, kept/, refined/ (Parquet), \
         refined.json, report.html, hqclip/ (the fine-tuned CLIP), eval/ (world eval sets)\n\
         next: the same refinement with a VLM behind an OpenAI-compatible server:\n\
         hqflow run queries/refine.sql -t scored={scored} --out refined/ \\\n  \
         -m qwen='http://HOST:PORT/v1?model=Qwen/Qwen2-VL-7B-Instruct' -s hqflow.refine_backend=qwen\n\
         Explore: hqflow sql -t pool={pool} -t scored={scored} -t kept={kept} -t refined={refined}",
        out = args.out.display(),
        scored = scored_dir.display(),
        kept = kept_dir.display(),
        pool = pool_dir.display(),
        refined = refined_dir.display()
    );
    Ok(Outcome::Success)
}

/// Fine-tunes the built-in DFN on the refined table (HQ-CLIP's losses) and evaluates it and
/// the built-in DFN on the same world eval sets.
async fn train_and_evaluate(args: &DemoArgs, refined: &Path, status: Status) -> Result<()> {
    let out = args.out.join("hqclip");
    std::fs::create_dir_all(&out)
        .map_err(|e| DataFusionError::Plan(format!("cannot create '{}': {e}", out.display())))?;
    let recipe = args.out.join("hqclip-recipe.toml");
    std::fs::write(&recipe, hqclip_recipe(args.train_steps))
        .map_err(|e| DataFusionError::Plan(format!("cannot write '{}': {e}", recipe.display())))?;
    let init =
        hqflow_udfs::models::embedded::directory().map_err(|e| DataFusionError::Execution(e.0))?;
    println!(
        "\n== hqflow-train fit --data {} --recipe {} --init hqflow-world-dfn --out {}",
        refined.display(),
        recipe.display(),
        out.display()
    );
    let fit = crate::train::fit::FitArgs {
        data: refined.to_string_lossy().into_owned(),
        query: Some("SELECT * FROM data WHERE refine_error IS NULL".into()),
        out: out.clone(),
        recipe: Some(recipe),
        steps: None,
        resume: false,
        stop_after: None,
        init: Some(init),
        init_vision: None,
        device: "cpu".into(),
    };
    let started = std::time::Instant::now();
    crate::train::fit::run(&fit, status).await?;
    println!(
        "fine-tuned for {} steps in {:.1} s (HQ-CLIP: alt-texts, long descriptions and tags as \
         captions, long negatives as hard negatives, the tag loss)",
        args.train_steps,
        started.elapsed().as_secs_f64()
    );
    let eval_dir = args.out.join("eval");
    let eval = crate::world::EvalArgs {
        seed: args.seed + 1000,
        out: eval_dir.clone(),
        per_class: 4,
        retrieval: 500,
        compositional: 500,
        filtering: 0,
        image: ImageArgs {
            size: IMAGE_SIDE,
            format: ImageFormat::Png,
            shard_rows: 10_000,
            threads: None,
        },
    };
    crate::shards::prepare_dir(&eval_dir)?;
    crate::world::eval_sets::write_eval(&eval)?;
    println!(
        "\n== hqflow-train eval --data {} (before and after)",
        eval_dir.display()
    );
    let metric = |m: &serde_json::Map<String, serde_json::Value>, path: &[&str]| {
        let mut v = m.get(path[0]);
        for key in &path[1..] {
            v = v.and_then(|x| x.get(*key));
        }
        v.and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN)
    };
    let rows = [
        ("zero-shot top-1", vec!["zeroshot", "top1"]),
        (
            "retrieval image->text R@1",
            vec!["retrieval", "image_to_text_r1"],
        ),
        (
            "retrieval text->image R@1",
            vec!["retrieval", "text_to_image_r1"],
        ),
        ("compositional accuracy", vec!["compositional", "accuracy"]),
    ];
    let quiet = Status::new(true);
    let before = crate::train::eval::evaluate(
        Path::new(hqflow_udfs::models::embedded::NAME),
        &eval_dir,
        "cpu",
        quiet,
    )
    .await?;
    let after = crate::train::eval::evaluate(&out, &eval_dir, "cpu", quiet).await?;
    println!(
        "{:<28} {:>16} {:>16}",
        "metric", "hqflow-world-dfn", "fine-tuned"
    );
    for (name, path) in &rows {
        println!(
            "{name:<28} {:>16.3} {:>16.3}",
            metric(&before, path),
            metric(&after, path)
        );
    }
    Ok(())
}
