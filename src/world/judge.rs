//! `hqflow world judge`: how right a refiner's four texts are about world images, read
//! against their hidden truth (`truth_scene`). It judges any backend the same way: the
//! built-in refiner, or a VLM behind a server, run with `queries/refine.sql` or any query
//! that keeps `truth_scene` next to the texts.
//!
//! - positive tags: precision, recall and F1 against the tags the truth gives (the seed
//!   annotations' rule: `color shape`, `shape`, `size shape`, `color background`,
//!   `kind background`), over all tags of all rows (micro);
//! - negative tags: the share the scene contradicts;
//! - long positive: the share of its statements the scene does not contradict, the share of
//!   descriptions with no contradicted statement, and the share of those that also name
//!   every object;
//! - long negative: the share that contradicts the scene (HQ-CLIP's hard negatives must be
//!   wrong, or training pushes true descriptions away).
//!
//! Each is given for all rows and per alt-text class (`truth_quality`), when the table has it.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use datafusion::common::{DataFusionError, Result};
use serde::Serialize;

use super::claims::parse;
use super::scene::Scene;
use super::seed_texts::short_pos;

/// `hqflow world judge` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct JudgeArgs {
    /// The refined table (Parquet file, directory or glob) with `truth_scene`, `long_pos`,
    /// `long_neg`, `short_pos`, `short_neg` (and `truth_quality` for the per-class view).
    #[arg(long)]
    pub table: String,
    /// The world pool the refined rows came from, when the refined table lacks the truth
    /// columns (`queries/refine.sql` keeps only the contract's): joined on `uid`.
    #[arg(long)]
    pub truth: Option<String>,
    /// Write the metrics here as JSON too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The metrics of one group of rows.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Judgement {
    /// Rows judged (with a truth scene).
    pub rows: u64,
    /// Rows whose texts are NULL (the refiner failed).
    pub unrefined: u64,
    /// Positive tags: written ∩ true / written.
    pub short_pos_precision: f64,
    /// Positive tags: written ∩ true / true.
    pub short_pos_recall: f64,
    /// Harmonic mean of the two.
    pub short_pos_f1: f64,
    /// Share of negative tags the scene contradicts.
    pub short_neg_contradict: f64,
    /// Share of the long positives' statements (objects' attributes, relations, background)
    /// that the scene does not contradict.
    pub long_pos_statements_right: f64,
    /// Share of long positives with no contradicted statement.
    pub long_pos_faithful: f64,
    /// Share of long positives with no contradicted statement that name every object.
    pub long_pos_complete: f64,
    /// Share of long negatives that contradict the scene.
    pub long_neg_contradict: f64,
    #[serde(skip)]
    counts: Counts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    tags_written: u64,
    tags_true: u64,
    tags_right: u64,
    neg_tags: u64,
    neg_tags_wrong: u64,
    refined: u64,
    statements: u64,
    statements_wrong: u64,
    faithful: u64,
    complete: u64,
    negatives_wrong: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Judgement {
    fn add(&mut self, row: &RowTexts, scene: &Scene) {
        self.rows += 1;
        let (Some(long_pos), Some(long_neg)) = (&row.long_pos, &row.long_neg) else {
            self.unrefined += 1;
            return;
        };
        let c = &mut self.counts;
        c.refined += 1;
        let truth: HashSet<String> = short_pos(scene).into_iter().collect();
        let written: HashSet<String> = row.short_pos.iter().map(|t| t.to_lowercase()).collect();
        c.tags_written += written.len() as u64;
        c.tags_true += truth.len() as u64;
        c.tags_right += written.intersection(&truth).count() as u64;
        c.neg_tags += row.short_neg.len() as u64;
        c.neg_tags_wrong += row
            .short_neg
            .iter()
            .filter(|t| parse(t).mismatches(scene) >= 1)
            .count() as u64;
        let claims = parse(long_pos);
        let wrong = claims.mismatches(scene);
        c.statements += claims.statements() as u64;
        c.statements_wrong += wrong.min(claims.statements()) as u64;
        if wrong == 0 {
            c.faithful += 1;
            if claims.objects.len() == scene.objects.len() {
                c.complete += 1;
            }
        }
        c.negatives_wrong += u64::from(parse(long_neg).mismatches(scene) >= 1);
    }

    fn finish(mut self) -> Self {
        let c = self.counts;
        self.short_pos_precision = ratio(c.tags_right, c.tags_written);
        self.short_pos_recall = ratio(c.tags_right, c.tags_true);
        let (p, r) = (self.short_pos_precision, self.short_pos_recall);
        self.short_pos_f1 = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        self.short_neg_contradict = ratio(c.neg_tags_wrong, c.neg_tags);
        self.long_pos_statements_right = 1.0 - ratio(c.statements_wrong, c.statements);
        self.long_pos_faithful = ratio(c.faithful, c.refined);
        self.long_pos_complete = ratio(c.complete, c.refined);
        self.long_neg_contradict = ratio(c.negatives_wrong, c.refined);
        self
    }
}

/// All rows, and per alt-text class.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every row.
    pub all: Judgement,
    /// Per `truth_quality`, when the table has it.
    pub by_quality: BTreeMap<String, Judgement>,
}

/// One row's texts.
struct RowTexts {
    long_pos: Option<String>,
    long_neg: Option<String>,
    short_pos: Vec<String>,
    short_neg: Vec<String>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|a| a.as_ref())
        .ok_or_else(|| DataFusionError::Plan(format!("the table has no '{name}' column")))
}

fn text(array: &dyn Array, name: &str, i: usize) -> Result<Option<String>> {
    let strings = array
        .as_string_opt::<i32>()
        .ok_or_else(|| DataFusionError::Plan(format!("'{name}' is not text")))?;
    Ok((!strings.is_null(i)).then(|| strings.value(i).to_string()))
}

fn tags(array: &dyn Array, name: &str, i: usize) -> Result<Vec<String>> {
    let lists = array
        .as_list_opt::<i32>()
        .ok_or_else(|| DataFusionError::Plan(format!("'{name}' is not a list of text")))?;
    if lists.is_null(i) {
        return Ok(Vec::new());
    }
    let values = lists.value(i);
    let strings = values
        .as_string_opt::<i32>()
        .ok_or_else(|| DataFusionError::Plan(format!("'{name}' is not a list of text")))?;
    Ok((0..strings.len())
        .filter(|&k| strings.is_valid(k))
        .map(|k| strings.value(k).trim().to_string())
        .collect())
}

/// Judges record batches with the columns [`JudgeArgs::table`] names (text as Utf8, tags as
/// List<Utf8>).
pub fn judge(batches: &[RecordBatch]) -> Result<Report> {
    let mut all = Judgement::default();
    let mut by_quality: BTreeMap<String, Judgement> = BTreeMap::new();
    for batch in batches {
        let truth = column(batch, "truth_scene")?;
        let quality = batch.column_by_name("truth_quality");
        let (lp, ln) = (column(batch, "long_pos")?, column(batch, "long_neg")?);
        let (sp, sn) = (column(batch, "short_pos")?, column(batch, "short_neg")?);
        for i in 0..batch.num_rows() {
            let Some(truth) = text(truth, "truth_scene", i)? else {
                continue;
            };
            let scene = Scene::from_json(&truth)
                .map_err(|e| DataFusionError::Execution(format!("truth_scene of row {i}: {e}")))?;
            let row = RowTexts {
                long_pos: text(lp, "long_pos", i)?,
                long_neg: text(ln, "long_neg", i)?,
                short_pos: tags(sp, "short_pos", i)?,
                short_neg: tags(sn, "short_neg", i)?,
            };
            all.add(&row, &scene);
            if let Some(q) = quality
                && let Some(class) = text(q.as_ref(), "truth_quality", i)?
            {
                by_quality.entry(class).or_default().add(&row, &scene);
            }
        }
    }
    Ok(Report {
        all: all.finish(),
        by_quality: by_quality
            .into_iter()
            .map(|(k, v)| (k, v.finish()))
            .collect(),
    })
}

/// Judges the texts in the session's table `texts`, with the truth columns from `truth`
/// (joined on `uid`) or else from `texts` itself.
pub async fn judge_tables(
    ctx: &datafusion::prelude::SessionContext,
    texts: &str,
    truth: Option<&str>,
) -> Result<Report> {
    let (from, t, x) = match truth {
        Some(truth) => (
            format!("{texts} x JOIN {truth} t ON x.uid = t.uid"),
            "t.",
            "x.",
        ),
        None => (texts.to_string(), "", ""),
    };
    let truth_schema = ctx.table(truth.unwrap_or(texts)).await?.schema().clone();
    let quality = if truth_schema
        .field_with_unqualified_name("truth_quality")
        .is_ok()
    {
        format!("arrow_cast({t}truth_quality, 'Utf8') AS truth_quality, ")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT arrow_cast({t}truth_scene, 'Utf8') AS truth_scene, {quality}\
         arrow_cast({x}long_pos, 'Utf8') AS long_pos, arrow_cast({x}long_neg, 'Utf8') AS long_neg, \
         {x}short_pos AS short_pos, {x}short_neg AS short_neg FROM {from}"
    );
    judge(&ctx.sql(&sql).await?.collect().await?)
}

/// Reads the table, judges it, prints the report as JSON (and writes it to `--out`).
pub async fn run(args: &JudgeArgs, status: crate::cli::Status) -> Result<crate::cli::Outcome> {
    let ctx = crate::session::new_context()?;
    crate::tables::register_parquet_table(&ctx, "texts", &args.table).await?;
    if let Some(pool) = &args.truth {
        crate::tables::register_parquet_table(&ctx, "truth", pool).await?;
    }
    let report = judge_tables(&ctx, "texts", args.truth.as_ref().map(|_| "truth"))
        .await
        .map_err(|e| e.context(format!("--table {}", args.table)))?;
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| DataFusionError::Internal(format!("judgement: {e}")))?;
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{json}\n")).map_err(|e| {
            DataFusionError::Execution(format!("cannot write '{}': {e}", out.display()))
        })?;
    }
    status.line(&format!(
        "judged {} rows of {}: positive-tag F1 {:.3}, long negatives contradicting {:.3}",
        report.all.rows, args.table, report.all.short_pos_f1, report.all.long_neg_contradict
    ));
    #[allow(clippy::print_stdout)]
    {
        println!("{json}");
    }
    Ok(crate::cli::Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::rng::Rng;
    use crate::world::seed_texts::seed_texts;

    /// The seed annotations, written from truth, score perfectly; a refiner that copies its
    /// positive texts into the negatives scores zero there.
    #[test]
    fn seed_annotations_are_judged_right() {
        let mut right = Judgement::default();
        let mut copied = Judgement::default();
        for i in 0..300 {
            let mut rng = Rng::stream(9, &[i]);
            let scene = Scene::random(&mut rng);
            let texts = seed_texts(&scene, &mut rng);
            right.add(
                &RowTexts {
                    long_pos: Some(texts.long_pos.clone()),
                    long_neg: Some(texts.long_neg.clone()),
                    short_pos: texts.short_pos.clone(),
                    short_neg: texts.short_neg.clone(),
                },
                &scene,
            );
            copied.add(
                &RowTexts {
                    long_pos: Some(texts.long_pos.clone()),
                    long_neg: Some(texts.long_pos.clone()),
                    short_pos: texts.short_pos[..1].to_vec(),
                    short_neg: texts.short_pos.clone(),
                },
                &scene,
            );
        }
        let right = right.finish();
        assert_eq!(right.short_pos_f1, 1.0);
        assert_eq!(right.short_neg_contradict, 1.0);
        assert_eq!(right.long_pos_faithful, 1.0);
        assert_eq!(right.long_pos_statements_right, 1.0);
        assert_eq!(right.long_pos_complete, 1.0);
        assert_eq!(right.long_neg_contradict, 1.0);
        let copied = copied.finish();
        assert_eq!(copied.short_pos_precision, 1.0);
        assert!(copied.short_pos_recall < 0.3, "{}", copied.short_pos_recall);
        assert_eq!(copied.short_neg_contradict, 0.0);
        assert_eq!(copied.long_neg_contradict, 0.0);
    }
}
