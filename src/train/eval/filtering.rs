//! The `filtering/` set: how well a model's DFN score (the cosine of image and alt-text
//! embeddings, what `dfn_score` computes) separates `correct` alt-texts from each other
//! kind of pool row.
//!
//! Reported as ROC-AUC per kind: the chance that a random `correct` row scores above a random
//! row of that kind (ties count half). A row whose `txt` is NULL gets no score from
//! `dfn_score`, so no threshold keeps it: here it ranks below every scored row.
//!
//! Sets whose rows say what a `wrong_attr` alt-text got wrong (`truth_changed`, which
//! `hqflow world` writes; sets written before it had the column get no split) also get
//! `wrong_attr` split by that kind: which mistakes the model cannot see.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::prelude::{cast, col, lit};
use futures::StreamExt;
use hqflow_udfs::models::ClipCheckpoint;
use serde_json::{Value, json};

use super::{dot, embed_images, embed_texts, open_set};

/// The kind whose rows a filter should keep.
const KEEP: &str = "correct";

/// The kind of pool row whose scores are split by `truth_changed`.
const SPLIT: &str = "wrong_attr";

/// One row's truth: its quality and, for `wrong_attr`, what its alt-text got wrong.
struct Truth {
    quality: String,
    changed: Option<String>,
}

/// Rows of the set: image bytes, alt-text (None for NULL), truth.
async fn read(dir: &Path) -> Result<(Vec<Vec<u8>>, Vec<Option<String>>, Vec<Truth>)> {
    let frame = open_set(dir, &["img", "txt", "truth_quality"]).await?;
    let has_changed = frame
        .schema()
        .has_column_with_unqualified_name("truth_changed");
    let changed = if has_changed {
        cast(col("\"truth_changed\""), DataType::Utf8)
    } else {
        cast(lit(datafusion::common::ScalarValue::Null), DataType::Utf8)
    };
    let frame = frame.select(vec![
        cast(col("\"img\""), DataType::Binary).alias("img"),
        cast(col("\"txt\""), DataType::Utf8).alias("txt"),
        cast(col("\"truth_quality\""), DataType::Utf8).alias("q"),
        changed.alias("changed"),
    ])?;
    let mut stream = frame.execute_stream().await?;
    let (mut images, mut texts, mut truths) = (Vec::new(), Vec::new(), Vec::new());
    let bad =
        |c: &str| DataFusionError::Internal(format!("{}: column {c} not cast", dir.display()));
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let img = batch
            .column(0)
            .as_binary_opt::<i32>()
            .ok_or_else(|| bad("img"))?;
        let txt = batch
            .column(1)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("txt"))?;
        let q = batch
            .column(2)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("truth_quality"))?;
        let changed = batch
            .column(3)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("truth_changed"))?;
        for i in 0..batch.num_rows() {
            if img.is_null(i) || q.is_null(i) {
                continue;
            }
            images.push(img.value(i).to_vec());
            texts.push((!txt.is_null(i)).then(|| txt.value(i).to_string()));
            truths.push(Truth {
                quality: q.value(i).to_string(),
                changed: (!changed.is_null(i)).then(|| changed.value(i).to_string()),
            });
        }
    }
    Ok((images, texts, truths))
}

/// ROC-AUC of `positives` against `negatives`: the share of (positive, negative) pairs in
/// which the positive scores higher, ties counting half. `None` when either side is empty.
pub fn roc_auc(positives: &[f32], negatives: &[f32]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut negs = negatives.to_vec();
    negs.sort_by(f32::total_cmp);
    let mut wins = 0f64;
    for &p in positives {
        let below = negs.partition_point(|&n| n < p);
        let tied = negs[below..].partition_point(|&n| n <= p);
        wins += below as f64 + 0.5 * tied as f64;
    }
    Some(wins / (positives.len() as f64 * negs.len() as f64))
}

/// Scores the set and reports ROC-AUC of `correct` against each other kind, against all of
/// them together, and against `wrong_attr` rows of each kind of mistake.
pub async fn filtering(model: &ClipCheckpoint, dir: &Path, skipped: &mut usize) -> Result<Value> {
    let (images, texts, truths) = read(dir).await?;
    let image_embeddings = embed_images(model, &images)?;
    // NULL alt-texts are not embedded; every other text is, blank ones included.
    let present: Vec<String> = texts.iter().flatten().cloned().collect();
    let mut text_embeddings = embed_texts(model, &present)?.into_iter();
    let mut by_kind: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    let mut by_change: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    for ((img, txt), truth) in image_embeddings.iter().zip(&texts).zip(&truths) {
        let text_embedding = txt.as_ref().and_then(|_| text_embeddings.next());
        let Some(img) = img else {
            *skipped += 1;
            continue;
        };
        let score = text_embedding.map_or(f32::NEG_INFINITY, |t| dot(img, &t));
        by_kind
            .entry(truth.quality.as_str())
            .or_default()
            .push(score);
        if let (SPLIT, Some(changed)) = (truth.quality.as_str(), &truth.changed) {
            by_change.entry(changed.as_str()).or_default().push(score);
        }
    }
    let Some(keep) = by_kind.get(KEEP).filter(|s| !s.is_empty()) else {
        return plan_err!("{}: no rows with truth_quality '{KEEP}'", dir.display());
    };
    let mut auc = serde_json::Map::new();
    let mut rest = Vec::new();
    for (kind, scores) in &by_kind {
        if *kind == KEEP {
            continue;
        }
        auc.insert((*kind).to_string(), json!(roc_auc(keep, scores)));
        rest.extend_from_slice(scores);
    }
    let rows: BTreeMap<&str, usize> = by_kind.iter().map(|(k, v)| (*k, v.len())).collect();
    let mut report = json!({
        "rows": rows,
        "roc_auc": auc,
        "roc_auc_all": roc_auc(keep, &rest),
    });
    if !by_change.is_empty() {
        let split: serde_json::Map<String, Value> = by_change
            .iter()
            .map(|(changed, scores)| {
                let entry = json!({"rows": scores.len(), "roc_auc": roc_auc(keep, scores)});
                ((*changed).to_string(), entry)
            })
            .collect();
        report["wrong_attr_by_change"] = Value::Object(split);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::roc_auc;

    #[test]
    fn roc_auc_counts_wins_and_half_ties() {
        assert_eq!(roc_auc(&[3.0, 4.0], &[1.0, 2.0]), Some(1.0));
        assert_eq!(roc_auc(&[1.0], &[2.0]), Some(0.0));
        // 2 beats 1, ties 2 (half), loses to 3: 1.5 of 3.
        assert_eq!(roc_auc(&[2.0], &[1.0, 2.0, 3.0]), Some(0.5));
        assert_eq!(roc_auc(&[1.0], &[f32::NEG_INFINITY]), Some(1.0));
        assert_eq!(roc_auc(&[], &[1.0]), None);
    }
}
