//! What the CLIP functions share: argument checks at planning, the model each call uses,
//! reading image and text columns, and embedding rows in micro-batches with per-row errors.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::ColumnarValue;

use crate::models::{ClipCheckpoint, registry};
use crate::options::{HqflowOptions, ModelLocation, OnError};

/// Which session default names the model when the call does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultModel {
    /// `hqflow.dfn_model`.
    Dfn,
    /// `hqflow.clip_model`.
    Clip,
}

impl DefaultModel {
    fn setting(self) -> &'static str {
        match self {
            DefaultModel::Dfn => "hqflow.dfn_model",
            DefaultModel::Clip => "hqflow.clip_model",
        }
    }
}

/// The hqflow options a function was built with (a snapshot of the session's).
pub fn options_of(config: &ConfigOptions) -> HqflowOptions {
    HqflowOptions::from_config(config)
}

/// The session options a model function was built with. Two functions are the same when
/// they would resolve the same models, which is what DataFusion's `Eq`/`Hash` ask.
#[derive(Debug, Clone)]
pub struct BoundOptions(pub HqflowOptions);

impl PartialEq for BoundOptions {
    fn eq(&self, other: &Self) -> bool {
        self.0.model_fingerprint() == other.0.model_fingerprint()
    }
}

impl Eq for BoundOptions {}

impl std::hash::Hash for BoundOptions {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.model_fingerprint().hash(state);
    }
}

/// Resolves and loads the model a call uses: the explicit name, else the session default.
pub fn model_for(
    function: &str,
    options: &HqflowOptions,
    explicit: Option<&str>,
    default: DefaultModel,
) -> Result<Arc<ClipCheckpoint>> {
    let default_name = match default {
        DefaultModel::Dfn => options.dfn_model.as_deref(),
        DefaultModel::Clip => options.clip_model.as_deref(),
    };
    let Some(name) = explicit.or(default_name) else {
        return plan_err!(
            "{function} needs a model: register a CLIP checkpoint with `hqflow sql -m NAME=DIR` (or \
             SET hqflow.model.NAME = 'DIR') and pass 'NAME' as the last argument, or SET {} = 'NAME'",
            default.setting()
        );
    };
    match options.model(name)? {
        ModelLocation::Directory(dir) => registry::clip(std::path::Path::new(dir))
            .map_err(|e| DataFusionError::Plan(format!("{function}: model '{name}': {e}"))),
        ModelLocation::Endpoint(url) => {
            plan_err!(
                "{function}: model '{name}' is an endpoint ({url}); {function} needs a CLIP checkpoint directory"
            )
        }
    }
}

/// The model name given as argument `index` (1-based in messages), which must be a constant.
pub fn model_argument(
    function: &str,
    index: usize,
    scalar: Option<&ScalarValue>,
) -> Result<Option<String>> {
    match scalar {
        Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Ok(Some(s.clone())),
        _ => plan_err!(
            "{function}: argument {index} (model) must be a constant string naming a registered model"
        ),
    }
}

/// Checks that argument `index` (1-based) is binary, for images.
pub fn expect_binary(function: &str, index: usize, name: &str, field: &FieldRef) -> Result<()> {
    match field.data_type() {
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::Null => Ok(()),
        other => plan_err!(
            "{function}: argument {index} ({name}) must be encoded image bytes (Binary), got {other}"
        ),
    }
}

/// Checks that argument `index` (1-based) is text.
pub fn expect_text(function: &str, index: usize, name: &str, field: &FieldRef) -> Result<()> {
    match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => Ok(()),
        other => plan_err!("{function}: argument {index} ({name}) must be text, got {other}"),
    }
}

/// The model name in a call's arguments at invocation (already checked at planning).
pub fn model_name_at(args: &[ColumnarValue], index: usize) -> Option<String> {
    match args.get(index) {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        )) => Some(s.clone()),
        _ => None,
    }
}

/// Handles a row that could not be computed: counted and NULL, or fatal under `fail`.
fn row_failed(
    function: &str,
    options: &HqflowOptions,
    row: usize,
    reason: &str,
    detail: &str,
) -> Result<()> {
    if options.on_error == OnError::Fail {
        return exec_err!(
            "{function}: row {row} of the batch: {detail} (hqflow.on_error = 'fail')"
        );
    }
    options.errors.record(function, reason, detail);
    Ok(())
}

fn preprocess_all(
    model: &ClipCheckpoint,
    rows: &[Option<&[u8]>],
) -> Vec<Option<Result<Vec<f32>, crate::models::image_decode::DecodeError>>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16);
    let chunk = rows.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|r| r.map(|b| model.pixels(b)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Runs model work so that it does not hold up a tokio worker: on a multi-threaded runtime
/// the worker's other tasks (object-store reads, other partitions' I/O) move to another
/// thread while this one computes. Elsewhere it simply runs.
pub fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Normalized image embeddings per row; NULL rows and failed rows are `None`.
pub fn embed_image_rows(
    function: &str,
    model: &ClipCheckpoint,
    options: &HqflowOptions,
    rows: &[Option<&[u8]>],
) -> Result<Vec<Option<Vec<f32>>>> {
    let processed = preprocess_all(model, rows);
    if processed.len() != rows.len() {
        return exec_err!("{function}: image preprocessing lost rows (a worker panicked)");
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
    let mut batch_rows = Vec::new();
    let mut batch = Vec::new();
    for (row, item) in processed.into_iter().enumerate() {
        match item {
            None => {}
            Some(Ok(pixels)) => {
                batch_rows.push(row);
                batch.push(pixels);
            }
            Some(Err(e)) => row_failed(function, options, row, e.reason(), &e.to_string())?,
        }
        if batch.len() == options.model_batch {
            flush_images(function, model, &mut batch_rows, &mut batch, &mut out)?;
        }
    }
    flush_images(function, model, &mut batch_rows, &mut batch, &mut out)?;
    Ok(out)
}

fn flush_images(
    function: &str,
    model: &ClipCheckpoint,
    rows: &mut Vec<usize>,
    batch: &mut Vec<Vec<f32>>,
    out: &mut [Option<Vec<f32>>],
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let embeddings = model
        .embed_pixels(batch)
        .map_err(|e| DataFusionError::Execution(format!("{function}: {e}")))?;
    for (row, e) in rows.drain(..).zip(embeddings) {
        out[row] = Some(e);
    }
    batch.clear();
    Ok(())
}

/// Normalized text embeddings per row; NULL rows are `None`.
pub fn embed_text_rows(
    function: &str,
    model: &ClipCheckpoint,
    options: &HqflowOptions,
    rows: &[Option<&str>],
) -> Result<Vec<Option<Vec<f32>>>> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
    let present: Vec<(usize, &str)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i, t)))
        .collect();
    for part in present.chunks(options.model_batch) {
        let mut ids = Vec::with_capacity(part.len());
        let mut kept = Vec::with_capacity(part.len());
        for &(row, text) in part {
            match model.tokenizer.encode(text) {
                Ok(t) => {
                    ids.push(t);
                    kept.push(row);
                }
                Err(e) => row_failed(
                    function,
                    options,
                    row,
                    "tokenization failed",
                    &e.to_string(),
                )?,
            }
        }
        if ids.is_empty() {
            continue;
        }
        let embeddings = model
            .model
            .embed_text(&ids)
            .map_err(|e| DataFusionError::Execution(format!("{function}: {e}")))?;
        for (row, e) in kept.into_iter().zip(embeddings) {
            out[row] = Some(e);
        }
    }
    Ok(out)
}

/// The return field of an embedding function: FixedSizeList<Float32, dim>.
pub fn embedding_type(dim: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        dim as i32,
    )
}

/// Embeddings (or NULLs) as a FixedSizeList column.
pub fn embedding_array(rows: Vec<Option<Vec<f32>>>, dim: usize) -> Result<ArrayRef> {
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<bool>>());
    let mut values = Vec::with_capacity(rows.len() * dim);
    for row in &rows {
        match row {
            Some(v) if v.len() == dim => values.extend_from_slice(v),
            Some(v) => return exec_err!("embedding of width {} where {dim} was planned", v.len()),
            None => values.extend(std::iter::repeat_n(0.0, dim)),
        }
    }
    let field = Arc::new(Field::new("item", DataType::Float32, true));
    let list = FixedSizeListArray::try_new(
        field,
        dim as i32,
        Arc::new(Float32Array::from(values)),
        Some(nulls),
    )?;
    Ok(Arc::new(list))
}

/// Arguments as arrays of the batch's length (scalars broadcast).
pub fn arrays(args: &[ColumnarValue], rows: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(rows)).collect()
}
