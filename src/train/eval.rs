//! `hqflow-train eval`: a checkpoint on `hqflow world eval` sets.
//!
//! - `zeroshot/` (with `classes.json`): each class's embedding is the normalized mean of its
//!   prompt templates' embeddings (CLIP's prompt ensembling); an image is classified by the
//!   nearest class; top-1 and top-5 accuracy.
//! - `retrieval/`: image→text and text→image recall at 1 and 5 over the whole set.
//! - `compositional/`: the share of images whose embedding is closer to their caption (`pos`)
//!   than to the same caption with one attribute or relation swapped (`neg`), overall and
//!   per kind of change.
//!
//! - `filtering/`: ROC-AUC of the DFN score between `correct` pool rows and each other kind
//!   (see [`filtering`]).
//!
//! Images that do not decode are skipped and counted; sets that are absent are left out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::{DataFusionError, Result, plan_err};
use futures::StreamExt;
use hqflow_udfs::models::{ClipCheckpoint, embedded};
use serde_json::{Value, json};

use super::source::{self, TABLE};
use crate::cli::Status;

mod filtering;

/// `hqflow-train eval` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// A Hugging Face CLIP checkpoint directory (e.g. a `fit --out`), or `hqflow-world-dfn`
    /// for the built-in model.
    #[arg(long)]
    pub model: PathBuf,
    /// An `hqflow world eval --out` directory (zeroshot/, retrieval/, compositional/).
    #[arg(long)]
    pub data: PathBuf,
    /// Also write the metrics JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the model runs: cpu (default), cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

const BATCH: usize = 64;

fn model_err(e: hqflow_udfs::models::ModelError) -> DataFusionError {
    DataFusionError::Execution(e.0)
}

/// A set's rows: image bytes and the named text / int columns, read as a stream.
struct SetRows {
    images: Vec<Vec<u8>>,
    texts: BTreeMap<&'static str, Vec<String>>,
    labels: Vec<i32>,
}

/// The eval set in `dir` as a table, checked to have the `needed` columns.
async fn open_set(dir: &Path, needed: &[&str]) -> Result<datafusion::prelude::DataFrame> {
    let ctx = source::open(&dir.to_string_lossy()).await?;
    let frame = ctx.table(TABLE).await?;
    let schema = frame.schema().as_arrow().clone();
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| schema.field_with_name(c).is_err())
        .collect();
    if !missing.is_empty() {
        return plan_err!(
            "eval set '{}' lacks column(s) {}",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(frame)
}

async fn read_set(dir: &Path, text_columns: &[&'static str], label: bool) -> Result<SetRows> {
    let mut needed: Vec<&str> = vec!["img"];
    needed.extend(text_columns);
    if label {
        needed.push("label_index");
    }
    let frame = open_set(dir, &needed).await?;
    use datafusion::prelude::{cast, col};
    let mut exprs = vec![cast(col("\"img\""), DataType::Binary).alias("img")];
    for c in text_columns {
        exprs.push(cast(col(format!("\"{c}\"")), DataType::Utf8).alias(*c));
    }
    if label {
        exprs.push(cast(col("\"label_index\""), DataType::Int32).alias("label_index"));
    }
    let mut stream = frame.select(exprs)?.execute_stream().await?;
    let mut rows = SetRows {
        images: Vec::new(),
        texts: text_columns.iter().map(|c| (*c, Vec::new())).collect(),
        labels: Vec::new(),
    };
    while let Some(batch) = stream.next().await {
        append(&mut rows, &batch?, text_columns, label, dir)?;
    }
    Ok(rows)
}

fn append(
    rows: &mut SetRows,
    batch: &RecordBatch,
    text_columns: &[&'static str],
    label: bool,
    dir: &Path,
) -> Result<()> {
    let bad =
        |c: &str| DataFusionError::Internal(format!("{}: column {c} not cast", dir.display()));
    let img = batch
        .column_by_name("img")
        .and_then(|a| a.as_binary_opt::<i32>())
        .ok_or_else(|| bad("img"))?;
    let texts = text_columns
        .iter()
        .map(|c| {
            batch
                .column_by_name(c)
                .and_then(|a| a.as_string_opt::<i32>())
                .ok_or_else(|| bad(c))
        })
        .collect::<Result<Vec<_>>>()?;
    let labels = if label {
        Some(
            batch
                .column_by_name("label_index")
                .and_then(|a| a.as_primitive_opt::<Int32Type>())
                .ok_or_else(|| bad("label_index"))?,
        )
    } else {
        None
    };
    for i in 0..batch.num_rows() {
        // An eval row needs every field; a row with a NULL is left out.
        if img.is_null(i) || texts.iter().any(|t| t.is_null(i)) {
            continue;
        }
        if labels.is_some_and(|l| l.is_null(i)) {
            continue;
        }
        rows.images.push(img.value(i).to_vec());
        for (c, t) in text_columns.iter().zip(&texts) {
            if let Some(v) = rows.texts.get_mut(c) {
                v.push(t.value(i).to_string());
            }
        }
        if let Some(l) = labels {
            rows.labels.push(l.value(i));
        }
    }
    Ok(())
}

/// Image embeddings, `None` where the image did not decode.
fn embed_images(model: &ClipCheckpoint, images: &[Vec<u8>]) -> Result<Vec<Option<Vec<f32>>>> {
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(BATCH) {
        let pixels: Vec<Option<Vec<f32>>> = chunk.iter().map(|b| model.pixels(b).ok()).collect();
        let good: Vec<Vec<f32>> = pixels.iter().flatten().cloned().collect();
        let mut embedded = model.embed_pixels(&good).map_err(model_err)?.into_iter();
        for p in &pixels {
            out.push(if p.is_some() { embedded.next() } else { None });
        }
    }
    Ok(out)
}

fn embed_texts(model: &ClipCheckpoint, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend(model.embed_texts(&refs).map_err(model_err)?);
    }
    Ok(out)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = dot(&v, &v).sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// How many of `scores` beat `scores[target]` (its 0-based rank; ties count against it).
fn rank(scores: &[f32], target: usize) -> usize {
    let s = scores[target];
    scores
        .iter()
        .enumerate()
        .filter(|(j, x)| *j != target && **x >= s)
        .count()
}

fn share(hits: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        hits as f64 / of as f64
    }
}

async fn zeroshot(model: &ClipCheckpoint, dir: &Path, skipped: &mut usize) -> Result<Value> {
    let manifest_path = dir.join("classes.json");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).map_err(|e| {
            DataFusionError::Plan(format!("cannot read '{}': {e}", manifest_path.display()))
        })?)
        .map_err(|e| DataFusionError::Plan(format!("'{}': {e}", manifest_path.display())))?;
    let strings = |key: &str| -> Result<Vec<String>> {
        manifest[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "'{}' has no \"{key}\" list",
                    manifest_path.display()
                ))
            })
    };
    let (classes, templates) = (strings("classes")?, strings("templates")?);
    if classes.is_empty() || templates.is_empty() {
        return plan_err!(
            "'{}' lists no classes or templates",
            manifest_path.display()
        );
    }
    let mut class_embeddings = Vec::with_capacity(classes.len());
    for class in &classes {
        let prompts: Vec<String> = templates.iter().map(|t| t.replace("{}", class)).collect();
        let embedded = embed_texts(model, &prompts)?;
        let dim = embedded.first().map_or(0, Vec::len);
        let mut mean = vec![0f32; dim];
        for e in &embedded {
            mean.iter_mut().zip(e).for_each(|(m, x)| *m += x);
        }
        class_embeddings.push(normalize(mean));
    }
    let rows = read_set(dir, &[], true).await?;
    let images = embed_images(model, &rows.images)?;
    let (mut top1, mut top5, mut n) = (0, 0, 0);
    for (emb, &label) in images.iter().zip(&rows.labels) {
        let Some(emb) = emb else {
            *skipped += 1;
            continue;
        };
        let Some(label) = usize::try_from(label).ok().filter(|&l| l < classes.len()) else {
            return plan_err!(
                "{}: label_index {label} is not a class of classes.json",
                dir.display()
            );
        };
        let scores: Vec<f32> = class_embeddings.iter().map(|c| dot(emb, c)).collect();
        let r = rank(&scores, label);
        n += 1;
        top1 += usize::from(r == 0);
        top5 += usize::from(r < 5);
    }
    Ok(json!({
        "images": n,
        "classes": classes.len(),
        "templates": templates.len(),
        "top1": share(top1, n),
        "top5": share(top5, n),
        "chance_top1": 1.0 / classes.len() as f64,
    }))
}

async fn retrieval(model: &ClipCheckpoint, dir: &Path, skipped: &mut usize) -> Result<Value> {
    let rows = read_set(dir, &["txt"], false).await?;
    let images = embed_images(model, &rows.images)?;
    let texts = embed_texts(model, rows.texts.get("txt").map_or(&[][..], |v| v))?;
    let pairs: Vec<(&Vec<f32>, &Vec<f32>)> = images
        .iter()
        .zip(&texts)
        .filter_map(|(i, t)| i.as_ref().map(|i| (i, t)))
        .collect();
    *skipped += images.len() - pairs.len();
    let n = pairs.len();
    let (mut i2t, mut t2i) = ([0usize; 2], [0usize; 2]);
    for a in 0..n {
        let to_texts: Vec<f32> = pairs.iter().map(|(_, t)| dot(pairs[a].0, t)).collect();
        let to_images: Vec<f32> = pairs.iter().map(|(i, _)| dot(i, pairs[a].1)).collect();
        for (hits, scores) in [(&mut i2t, &to_texts), (&mut t2i, &to_images)] {
            let r = rank(scores, a);
            hits[0] += usize::from(r < 1);
            hits[1] += usize::from(r < 5);
        }
    }
    Ok(json!({
        "pairs": n,
        "image_to_text_r1": share(i2t[0], n),
        "image_to_text_r5": share(i2t[1], n),
        "text_to_image_r1": share(t2i[0], n),
        "text_to_image_r5": share(t2i[1], n),
    }))
}

async fn compositional(model: &ClipCheckpoint, dir: &Path, skipped: &mut usize) -> Result<Value> {
    let rows = read_set(dir, &["pos", "neg", "changed"], false).await?;
    let images = embed_images(model, &rows.images)?;
    let get = |c: &str| rows.texts.get(c).map_or(&[][..], |v| v.as_slice());
    let pos = embed_texts(model, get("pos"))?;
    let neg = embed_texts(model, get("neg"))?;
    let mut by_change: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut wins, mut n) = (0, 0);
    for (k, emb) in images.iter().enumerate() {
        let Some(emb) = emb else {
            *skipped += 1;
            continue;
        };
        let win = dot(emb, &pos[k]) > dot(emb, &neg[k]);
        n += 1;
        wins += usize::from(win);
        let entry = by_change.entry(get("changed")[k].clone()).or_default();
        entry.0 += usize::from(win);
        entry.1 += 1;
    }
    let by_change: serde_json::Map<String, Value> = by_change
        .into_iter()
        .map(|(k, (w, n))| (k, json!({ "triples": n, "accuracy": share(w, n) })))
        .collect();
    Ok(json!({ "triples": n, "accuracy": share(wins, n), "by_change": by_change }))
}

/// The metrics of the checkpoint `model` (or the built-in model's name) on the sets under
/// `data`, as `eval` prints them.
pub async fn evaluate(
    model: &Path,
    data: &Path,
    device: &str,
    status: Status,
) -> Result<serde_json::Map<String, Value>> {
    let dir = if model.as_os_str() == embedded::NAME && !model.exists() {
        embedded::directory().map_err(model_err)?
    } else {
        model.to_path_buf()
    };
    let checkpoint =
        ClipCheckpoint::load(&dir, &super::fit::open_device(device)?).map_err(model_err)?;
    let sets = ["zeroshot", "retrieval", "compositional", "filtering"];
    if !sets.iter().any(|s| data.join(s).is_dir()) {
        return plan_err!(
            "'{}' has none of zeroshot/, retrieval/, compositional/, filtering/ (write them with `hqflow world eval`)",
            data.display()
        );
    }
    let model_ref = &checkpoint;
    let mut skipped = 0usize;
    let mut metrics = serde_json::Map::new();
    metrics.insert("model".into(), json!(model.display().to_string()));
    metrics.insert("data".into(), json!(data.display().to_string()));
    for set in sets {
        let dir = data.join(set);
        if !dir.is_dir() {
            continue;
        }
        let value = match set {
            "zeroshot" => zeroshot(model_ref, &dir, &mut skipped).await?,
            "retrieval" => retrieval(model_ref, &dir, &mut skipped).await?,
            "compositional" => compositional(model_ref, &dir, &mut skipped).await?,
            _ => filtering::filtering(model_ref, &dir, &mut skipped).await?,
        };
        status.line(&format!("{set}: {value}"));
        metrics.insert(set.into(), value);
    }
    metrics.insert("skipped_images".into(), json!(skipped));
    Ok(metrics)
}

/// Runs `eval`.
pub async fn run(args: &EvalArgs, status: Status) -> Result<()> {
    let metrics = evaluate(&args.model, &args.data, &args.device, status).await?;
    let text = format!("{:#}\n", Value::Object(metrics));
    if let Some(out) = &args.out {
        std::fs::write(out, &text).map_err(|e| {
            DataFusionError::Execution(format!("cannot write '{}': {e}", out.display()))
        })?;
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .map_err(|e| DataFusionError::Execution(format!("cannot write stdout: {e}")))?;
    Ok(())
}
