//! `hqflow report`: what a filter kept and dropped, as one self-contained HTML page.
//!
//! The rows come from a query over the session's tables (default: every row of the first
//! table). The page shows the score distribution with the threshold, the most frequent
//! positive and negative tags (when the rows have refined texts), refinement errors by
//! reason, and image grids of the rows around the threshold, the best kept and the worst
//! dropped, each with its alt-text and refined texts: the "why was this dropped" view.

pub mod charts;
pub mod page;

use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use clap::Args;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use crate::cli::{Outcome, SessionArgs, Status};
use crate::session::build_session;
use charts::{DROPPED, Histogram, KEPT, bars_svg, histogram_svg};
use page::{Card, grid_html, page_html};

/// `hqflow report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Tables, models and settings (a query may score rows with `dfn_score`).
    #[command(flatten)]
    pub session: SessionArgs,
    /// The rows to report on (default: every row of the first -t table). They need `img`,
    /// `txt` and the score column; `uid`, `truth_quality`, `long_pos`, `long_neg`,
    /// `short_pos`, `short_neg` and `refine_error` are shown when present.
    #[arg(long)]
    pub query: Option<String>,
    /// The score column.
    #[arg(long, default_value = "dfn_score")]
    pub score: String,
    /// Rows scoring at least this are kept (default: the top --keep-top of the scores).
    #[arg(long, conflicts_with = "keep_top")]
    pub threshold: Option<f64>,
    /// Keep this share of the scored rows, the best first (DataComp's CLIP-score baseline
    /// keeps 0.3, DFN 0.15).
    #[arg(long, default_value_t = 0.3)]
    pub keep_top: f64,
    /// Rows per image grid.
    #[arg(long, default_value_t = 12)]
    pub grid: usize,
    /// The HTML file to write (written whole, then renamed into place).
    #[arg(long)]
    pub out: PathBuf,
}

/// Bins of the score histogram.
const BINS: usize = 40;

/// Tags per frequency chart.
const TOP_TAGS: usize = 25;

/// The name the rows are registered under.
const ROWS: &str = "hqflow_report_rows";

/// Columns shown on a card when the rows have them (besides img, txt and the score).
const OPTIONAL: [&str; 7] = [
    "uid",
    "truth_quality",
    "long_pos",
    "long_neg",
    "short_pos",
    "short_neg",
    "refine_error",
];

/// Separates list items flattened into one string for a card.
const ITEM_SEPARATOR: char = '\u{1f}';

fn plan(message: String) -> DataFusionError {
    DataFusionError::Plan(format!("report: {message}"))
}

fn quote(column: &str) -> String {
    format!("\"{}\"", column.replace('"', "\"\""))
}

/// Runs `hqflow report`.
pub async fn run(
    args: &ReportArgs,
    cache_dir: Option<&std::path::Path>,
    status: Status,
) -> Result<Outcome> {
    if !(args.keep_top > 0.0 && args.keep_top <= 1.0) {
        return Err(plan(format!(
            "--keep-top must be in (0, 1], not {}",
            args.keep_top
        )));
    }
    if args.threshold.is_some_and(|t| !t.is_finite()) {
        return Err(plan("--threshold must be a finite number".into()));
    }
    let query = match (&args.query, args.session.tables.first()) {
        (Some(q), _) => q.clone(),
        (None, Some(t)) => format!("SELECT * FROM {}", quote(&t.name)),
        (None, None) => return Err(plan("give a table (-t NAME=LOCATION) or --query".into())),
    };
    let ctx = build_session(&args.session.options(cache_dir)).await?;
    let cut = match args.threshold {
        Some(t) => Cut::Threshold(t),
        None => Cut::KeepTop(args.keep_top),
    };
    let mut facts = Vec::new();
    if let Some(q) = &args.query {
        facts.push(("query".to_string(), q.clone()));
    }
    write_report(
        &ctx,
        &query,
        &args.score,
        cut,
        args.grid,
        &args.out,
        &facts,
        status,
    )
    .await?;
    crate::cli::report_row_errors(&ctx, status);
    Ok(Outcome::Success)
}

/// Where the report draws the line between kept and dropped.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// Rows scoring at least this are kept.
    Threshold(f64),
    /// The best share of the scored rows is kept.
    KeepTop(f64),
}

/// Writes the report of `query`'s rows in `ctx` to `out`, `notes` listed first among its
/// facts.
#[allow(clippy::too_many_arguments)]
pub async fn write_report(
    ctx: &SessionContext,
    query: &str,
    score: &str,
    cut: Cut,
    grid: usize,
    out: &std::path::Path,
    notes: &[(String, String)],
    status: Status,
) -> Result<()> {
    let rows = ctx.sql(query).await?;
    let present = check_columns(rows.schema().as_arrow(), score)?;
    ctx.deregister_table(ROWS)?;
    ctx.register_table(ROWS, rows.into_view())?;

    // Aggregates in SQL, so the page costs the same memory for a thousand rows or a billion;
    // two passes over the rows: counts, range and cut, then the histogram and kept count.
    ctx.sql(&format!(
        "CREATE OR REPLACE VIEW {SCORES} AS SELECT nanvl(CAST({} AS DOUBLE), NULL) AS s FROM {ROWS}",
        quote(score)
    ))
    .await?;
    let keep_top = match cut {
        Cut::Threshold(_) => None,
        Cut::KeepTop(share) => Some(share),
    };
    let summary = summarize_scores(ctx, keep_top).await?;
    let threshold = match cut {
        Cut::Threshold(t) => t,
        Cut::KeepTop(_) => summary
            .top_share_cut
            .ok_or_else(|| plan(format!("no row has a {score} score to keep the top of")))?,
    };
    let (histogram, kept) = histogram(ctx, &summary, threshold).await?;
    let (rows, scored) = (summary.rows, summary.scored);
    let nulls = rows - scored;
    status.line(&format!(
        "report: {rows} rows, {scored} scored, {kept} kept at {score} >= {threshold:.4}"
    ));

    let mut facts = notes.to_vec();
    facts.extend([
        ("rows".to_string(), rows.to_string()),
        ("score".to_string(), score.to_string()),
        ("threshold".to_string(), format!("{threshold:.6}")),
        (
            "kept".to_string(),
            format!(
                "{kept} ({:.1}% of the scored rows)",
                100.0 * kept as f64 / scored.max(1) as f64
            ),
        ),
        (
            "dropped".to_string(),
            format!(
                "{} below the threshold, {nulls} without a score (NULL)",
                scored - kept
            ),
        ),
    ]);

    let mut sections = Vec::new();
    if let Some(h) = histogram {
        sections.push(format!(
            "<section><h2>Scores</h2><p class=\"note\">{} rows with a score; kept bins in green.</p>{}</section>",
            scored,
            histogram_svg(&h, threshold, "score histogram")
        ));
    }
    for (column, title, color) in [
        ("short_pos", "Most frequent positive tags", KEPT),
        ("short_neg", "Most frequent negative tags", "#8e2424"),
    ] {
        if present.contains(&column) {
            let tags = top_items(ctx, column).await?;
            if !tags.is_empty() {
                sections.push(format!(
                    "<section><h2>{title}</h2>{}</section>",
                    bars_svg(&tags, color, title)
                ));
            }
        }
    }
    if present.contains(&"refine_error") {
        let errors = error_counts(ctx).await?;
        if !errors.is_empty() {
            sections.push(format!(
                "<section><h2>Refinement errors</h2>{}</section>",
                bars_svg(&errors, DROPPED, "refinement errors by reason")
            ));
        }
    }
    let score_sql = format!("CAST({} AS DOUBLE)", quote(score));
    let t = format!("CAST({threshold:?} AS DOUBLE)");
    let grids = [
        (
            "Kept, just above the threshold",
            "The lowest-scoring rows the filter keeps.",
            format!("{score_sql} >= {t} ORDER BY {score_sql} ASC"),
            true,
        ),
        (
            "Dropped, just below the threshold",
            "The best rows the filter drops: why was this dropped?",
            format!("{score_sql} < {t} ORDER BY {score_sql} DESC"),
            false,
        ),
        (
            "Kept, the best",
            "The highest-scoring rows.",
            format!("{score_sql} >= {t} ORDER BY {score_sql} DESC"),
            true,
        ),
        (
            "Dropped, the worst",
            "The lowest-scoring rows.",
            format!("{score_sql} < {t} ORDER BY {score_sql} ASC"),
            false,
        ),
        (
            "Dropped, no score",
            "Rows whose score is NULL (no text, or the model could not score them).",
            format!("{score_sql} IS NULL"),
            false,
        ),
    ];
    for (title, note, filter, kept) in grids {
        let cards = cards(ctx, &present, score, &filter, grid).await?;
        if title.ends_with("no score") && cards.is_empty() {
            continue;
        }
        sections.push(grid_html(title, note, &cards, kept));
    }

    let html = page_html("hqflow report", &facts, &sections);
    crate::shards::write_atomic(out, html.as_bytes())?;
    status.line(&format!("report: wrote {}", out.display()));
    Ok(())
}

/// The optional columns the rows have; a plan error naming what is missing or mistyped.
fn check_columns(schema: &arrow::datatypes::Schema, score: &str) -> Result<Vec<&'static str>> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let missing: Vec<&str> = ["img", "txt", score]
        .into_iter()
        .filter(|c| !names.contains(c))
        .collect();
    if !missing.is_empty() {
        return Err(plan(format!(
            "the rows lack column(s) {} (they have: {}){}",
            missing.join(", "),
            names.join(", "),
            if missing.contains(&score) {
                "; score them in --query, e.g. SELECT *, dfn_score(img, txt) AS dfn_score FROM pool"
            } else {
                ""
            }
        )));
    }
    let data_type = |name: &str| {
        schema
            .field_with_name(name)
            .map(|f| f.data_type().clone())
            .ok()
    };
    if let Some(t) = data_type("img")
        && !matches!(
            t,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    {
        return Err(plan(format!("column 'img' is {t}, not binary")));
    }
    if let Some(t) = data_type(score)
        && !t.is_numeric()
    {
        return Err(plan(format!("score column '{score}' is {t}, not a number")));
    }
    // Tags are shown only when they are lists (a text column of that name is left out).
    let is_list = |name: &str| {
        matches!(
            data_type(name),
            Some(DataType::List(_) | DataType::LargeList(_) | DataType::ListView(_))
        )
    };
    Ok(OPTIONAL
        .into_iter()
        .filter(|c| names.contains(c) && (!c.starts_with("short_") || is_list(c)))
        .collect())
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

/// The view of the rows' scores as one double column `s`, NaN as NULL.
const SCORES: &str = "hqflow_report_scores";

/// Row and score counts, the scores' range and, when asked, the keep-top cut.
#[derive(Debug, Clone, Copy)]
struct ScoreSummary {
    rows: u64,
    scored: u64,
    lo: Option<f64>,
    hi: Option<f64>,
    /// The score at which the best share is kept (DataFusion's t-digest percentile, as the
    /// filter queries in `queries/` compute it).
    top_share_cut: Option<f64>,
}

async fn one_row(ctx: &SessionContext, sql: &str) -> Result<Vec<Option<f64>>> {
    let batches = collect(ctx, sql).await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    batch
        .columns()
        .iter()
        .map(|c| {
            let c = float64(c)?;
            Ok(c.is_valid(0).then(|| c.value(0)))
        })
        .collect()
}

async fn summarize_scores(ctx: &SessionContext, keep_top: Option<f64>) -> Result<ScoreSummary> {
    let cut = keep_top.map_or_else(
        || "CAST(NULL AS DOUBLE)".to_string(),
        |share| format!("approx_percentile_cont(s, {:?})", 1.0 - share),
    );
    let v = one_row(
        ctx,
        &format!("SELECT count(*), count(s), min(s), max(s), {cut} FROM {SCORES}"),
    )
    .await?;
    let at = |i: usize| v.get(i).copied().flatten();
    Ok(ScoreSummary {
        rows: at(0).unwrap_or(0.0) as u64,
        scored: at(1).unwrap_or(0.0) as u64,
        lo: at(2),
        hi: at(3),
        top_share_cut: at(4),
    })
}

/// The scores in [`BINS`] equal-width bins over their range, and how many are at least
/// `threshold`.
async fn histogram(
    ctx: &SessionContext,
    summary: &ScoreSummary,
    threshold: f64,
) -> Result<(Option<Histogram>, u64)> {
    let (Some(lo), Some(hi)) = (summary.lo, summary.hi) else {
        return Ok((None, 0));
    };
    let width = (hi - lo) / BINS as f64;
    let bin = if width > 0.0 {
        format!(
            "least(CAST(floor((s - CAST({lo:?} AS DOUBLE)) / CAST({width:?} AS DOUBLE)) AS BIGINT), {})",
            BINS - 1
        )
    } else {
        "CAST(0 AS BIGINT)".to_string()
    };
    let sql = format!(
        "SELECT {bin} AS bin, count(*) AS n, \
         sum(CASE WHEN s >= CAST({threshold:?} AS DOUBLE) THEN 1 ELSE 0 END) AS kept \
         FROM {SCORES} WHERE s IS NOT NULL GROUP BY 1"
    );
    let mut counts = vec![0u64; BINS];
    let mut kept = 0u64;
    for batch in collect(ctx, &sql).await? {
        let column = |i: usize| arrow::compute::cast(batch.column(i), &DataType::Int64);
        let (bins, n, at_least) = (column(0)?, column(1)?, column(2)?);
        let (Some(bins), Some(n), Some(at_least)) = (
            bins.as_primitive_opt::<Int64Type>(),
            n.as_primitive_opt::<Int64Type>(),
            at_least.as_primitive_opt::<Int64Type>(),
        ) else {
            return Err(DataFusionError::Internal("report: histogram types".into()));
        };
        for i in 0..batch.num_rows() {
            let b = bins.value(i).clamp(0, BINS as i64 - 1) as usize;
            counts[b] += n.value(i).max(0) as u64;
            kept += at_least.value(i).max(0) as u64;
        }
    }
    Ok((Some(Histogram { lo, hi, counts }), kept))
}

/// The most frequent items of a list column, with their counts.
async fn top_items(ctx: &SessionContext, column: &str) -> Result<Vec<(String, u64)>> {
    let sql = format!(
        "SELECT CAST(tag AS VARCHAR), CAST(count(*) AS BIGINT) AS n FROM \
         (SELECT unnest({}) AS tag FROM {ROWS}) WHERE tag IS NOT NULL \
         GROUP BY tag ORDER BY n DESC, 1 LIMIT {TOP_TAGS}",
        quote(column)
    );
    counts(collect(ctx, &sql).await?)
}

/// Refinement errors by reason.
async fn error_counts(ctx: &SessionContext) -> Result<Vec<(String, u64)>> {
    let sql = format!(
        "SELECT CAST(refine_error AS VARCHAR), CAST(count(*) AS BIGINT) AS n FROM {ROWS} \
         WHERE refine_error IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP_TAGS}"
    );
    counts(collect(ctx, &sql).await?)
}

/// The column as Utf8 (SQL's VARCHAR may come back as a string view).
fn utf8(column: &arrow::array::ArrayRef) -> Result<arrow::array::StringArray> {
    let cast = arrow::compute::cast(column, &DataType::Utf8)?;
    cast.as_string_opt::<i32>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("report: a text column is not Utf8".into()))
}

/// The column as f64.
fn float64(column: &arrow::array::ArrayRef) -> Result<arrow::array::Float64Array> {
    let cast = arrow::compute::cast(column, &DataType::Float64)?;
    cast.as_primitive_opt::<Float64Type>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("report: a score column is not Float64".into()))
}

fn counts(batches: Vec<RecordBatch>) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for batch in batches {
        let names = utf8(batch.column(0))?;
        let n = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let n = n
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| DataFusionError::Internal("report: a count is not Int64".into()))?;
        for i in 0..batch.num_rows() {
            out.push((names.value(i).to_string(), n.value(i).max(0) as u64));
        }
    }
    Ok(out)
}

/// Up to `n` rows matching `filter` (a WHERE clause with its ORDER BY) as cards.
async fn cards(
    ctx: &SessionContext,
    present: &[&str],
    score: &str,
    filter: &str,
    n: usize,
) -> Result<Vec<Card>> {
    let mut select = vec![
        "img".to_string(),
        "CAST(txt AS VARCHAR) AS txt".to_string(),
        format!("CAST({} AS DOUBLE) AS hqflow_score", quote(score)),
    ];
    for &c in present {
        select.push(if c.starts_with("short_") {
            format!("array_to_string({c}, '{ITEM_SEPARATOR}') AS {c}")
        } else {
            format!("CAST({c} AS VARCHAR) AS {c}")
        });
    }
    let sql = format!(
        "SELECT {} FROM {ROWS} WHERE {filter} LIMIT {n}",
        select.join(", ")
    );
    let mut cards = Vec::new();
    for batch in collect(ctx, &sql).await? {
        let mut texts = std::collections::HashMap::new();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if field.name() != "img" && field.name() != "hqflow_score" {
                texts.insert(field.name().clone(), utf8(column)?);
            }
        }
        let text = |name: &str, i: usize| -> Option<String> {
            let strings = texts.get(name)?;
            strings.is_valid(i).then(|| strings.value(i).to_string())
        };
        let img = arrow::compute::cast(batch.column(0), &DataType::LargeBinary)?;
        let img = img
            .as_binary_opt::<i64>()
            .ok_or_else(|| DataFusionError::Internal("report: img is not binary".into()))?;
        let scores = float64(batch.column(2))?;
        let list = |name: &str, i: usize| -> Vec<String> {
            text(name, i)
                .map(|s| {
                    s.split(ITEM_SEPARATOR)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        for i in 0..batch.num_rows() {
            cards.push(Card {
                uid: text("uid", i),
                img: img.is_valid(i).then(|| img.value(i).to_vec()),
                txt: text("txt", i),
                score: scores.is_valid(i).then(|| scores.value(i)),
                truth: text("truth_quality", i),
                long_pos: text("long_pos", i),
                long_neg: text("long_neg", i),
                short_pos: list("short_pos", i),
                short_neg: list("short_neg", i),
                refine_error: text("refine_error", i),
            });
        }
    }
    Ok(cards)
}
