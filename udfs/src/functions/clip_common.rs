//! What the CLIP functions share: argument checks at planning, the model each call uses,
//! reading image and text columns, and embedding rows in micro-batches with per-row errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::ColumnarValue;

use crate::models::batcher::{BatchPolicy, Batcher, Input};
use crate::models::{embedded, registry};
use crate::options::{HqflowOptions, ModelLocation, OnError};

/// Which session default names the model when the call does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultModel {
    /// `hqflow.dfn_model`.
    Dfn,
    /// `hqflow.clip_model`.
    Clip,
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

/// Resolves and loads the model a call uses: the explicit name, else the session default,
/// else the built-in model ([`embedded`]), which its name also reaches unless a model is
/// registered under that name.
pub fn model_for(
    function: &str,
    options: &HqflowOptions,
    explicit: Option<&str>,
    default: DefaultModel,
) -> Result<Arc<Batcher>> {
    let default_name = match default {
        DefaultModel::Dfn => options.dfn_model.as_deref(),
        DefaultModel::Clip => options.clip_model.as_deref(),
    };
    let name = explicit.or(default_name).unwrap_or(embedded::NAME);
    let load = |dir: &std::path::Path| {
        registry::clip(dir, options.device, options.precision)
            .map_err(|e| DataFusionError::Plan(format!("{function}: model '{name}': {e}")))
    };
    if name == embedded::NAME && !options.models.contains_key(name) {
        let dir =
            embedded::directory().map_err(|e| DataFusionError::Plan(format!("{function}: {e}")))?;
        return load(&dir);
    }
    match options.model(name)? {
        ModelLocation::Directory(dir) => load(std::path::Path::new(dir)),
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
            "{function}: argument {index} ({name}) must be encoded image bytes (Binary), got {other} \
             ('{}')",
            field.name()
        ),
    }
}

/// Checks that argument `index` (1-based) is text.
pub fn expect_text(function: &str, index: usize, name: &str, field: &FieldRef) -> Result<()> {
    match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => Ok(()),
        other => plan_err!(
            "{function}: argument {index} ({name}) must be text, got {other} ('{}')",
            field.name()
        ),
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

/// Handles rows that could not be computed, in row order: counted and NULL, or fatal under
/// `fail` (the first one).
pub(crate) fn rows_failed(
    function: &str,
    options: &HqflowOptions,
    mut failures: Vec<RowFailure>,
) -> Result<()> {
    failures.sort_by_key(|f| f.row);
    for failure in failures {
        if options.on_error == OnError::Fail {
            return exec_err!(
                "{function}: row {} of the batch: {} (hqflow.on_error = 'fail')",
                failure.row,
                failure.detail
            );
        }
        options
            .errors
            .record(function, failure.reason, &failure.detail);
    }
    Ok(())
}

/// A row the model could not be asked about, or that it could not answer.
pub(crate) struct RowFailure {
    /// The row in the batch.
    pub row: usize,
    /// Stable, for counting.
    pub reason: &'static str,
    /// What happened.
    pub detail: String,
}

/// Runs model work so that it does not hold up a tokio worker: on a multi-threaded runtime
/// the worker's other tasks (object-store reads, other partitions' I/O) move to another
/// thread while this one waits for the model. Elsewhere it simply runs.
pub fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Normalized embeddings of an image column and of a text column (either may be empty).
pub struct Embeddings {
    /// One per image row.
    pub images: EmbeddingRows,
    /// One per text row.
    pub texts: EmbeddingRows,
}

/// One column's embeddings, `dim` floats per row in one buffer: a batch's thousands of rows
/// are one allocation, not one small one per row held until the last row is answered (which
/// over a long query left the allocator's heap fragmented). NULL rows and rows that failed
/// are absent.
pub struct EmbeddingRows {
    dim: usize,
    values: Vec<f32>,
    present: Vec<bool>,
}

impl EmbeddingRows {
    fn new(rows: usize, dim: usize) -> Self {
        EmbeddingRows {
            dim,
            values: Vec::new(),
            present: vec![false; rows],
        }
    }

    /// Row `row`'s embedding, if it has one.
    pub fn get(&self, row: usize) -> Option<&[f32]> {
        match self.present.get(row) {
            Some(true) => Some(&self.values[row * self.dim..(row + 1) * self.dim]),
            _ => None,
        }
    }

    fn set(&mut self, row: usize, embedding: &[f32]) -> std::result::Result<(), String> {
        if embedding.len() != self.dim {
            return Err(format!(
                "the model answered an embedding of width {} where its configuration says {}",
                embedding.len(),
                self.dim
            ));
        }
        if self.values.is_empty() {
            self.values = vec![0.0; self.present.len() * self.dim];
        }
        self.values[row * self.dim..(row + 1) * self.dim].copy_from_slice(embedding);
        self.present[row] = true;
        Ok(())
    }

    /// One `Vec` per row, for the model-output cache.
    pub fn into_rows(self) -> Vec<Option<Vec<f32>>> {
        (0..self.present.len())
            .map(|row| self.get(row).map(<[f32]>::to_vec))
            .collect()
    }
}

fn decode_workers(rows: usize) -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16)
        .min(rows)
}

/// Embeds images and texts through the model's batcher. Images are decoded and resized on
/// a few threads of this call while the model runs earlier micro-batches; texts are
/// tokenized here. Row failures (undecodable image, failed tokenization) follow
/// `hqflow.on_error`; a failed forward pass fails the query.
pub fn embed_rows(
    function: &str,
    model: &Batcher,
    options: &HqflowOptions,
    images: &[Option<&[u8]>],
    texts: &[Option<&str>],
) -> Result<Embeddings> {
    let exec =
        |e: crate::models::ModelError| DataFusionError::Execution(format!("{function}: {e}"));
    let image_rows: Vec<usize> = (0..images.len()).filter(|&r| images[r].is_some()).collect();
    let workers = decode_workers(image_rows.len());
    let policy = BatchPolicy {
        batch: options.model_batch,
        max_wait: Duration::from_millis(options.batch_wait_ms),
        // Enough to keep the next batch decoded while one runs; shared by every caller.
        in_flight: 2 * options.model_batch + workers,
    };
    let (submitter, answers) = model.open(policy).map_err(exec)?;
    let checkpoint = model.checkpoint();
    let dim = checkpoint.model.config().projection_dim;
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let fail = |row, reason, detail| {
        if let Ok(mut f) = failures.lock() {
            f.push(RowFailure {
                row,
                reason,
                detail,
            });
        }
    };
    let mut out = Embeddings {
        images: EmbeddingRows::new(images.len(), dim),
        texts: EmbeddingRows::new(texts.len(), dim),
    };
    let mut forward_error = None;
    let mut submit_error = None;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let submitter = submitter.clone();
            let (next, image_rows, fail) = (&next, &image_rows, &fail);
            scope.spawn(move || {
                while let Some(&row) = image_rows.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let Some(bytes) = images[row] else { continue };
                    match checkpoint.image_input(bytes) {
                        Ok(pixels) => {
                            if let Err(e) = submitter.submit(2 * row, Input::Image(pixels)) {
                                fail(row, "model stopped", e.to_string());
                                return;
                            }
                        }
                        Err(e) => fail(row, e.reason(), e.to_string()),
                    }
                }
            });
        }
        for (row, text) in texts.iter().enumerate() {
            let Some(text) = text else { continue };
            match checkpoint.tokenizer.encode(text) {
                Ok(ids) => {
                    if let Err(e) = submitter.submit(2 * row + 1, Input::Text(ids)) {
                        submit_error = Some(e);
                        break;
                    }
                }
                Err(e) => fail(row, "tokenization failed", e.to_string()),
            }
        }
        // The answers end once the decoders are done and every submitted row is answered.
        drop(submitter);
        for reply in answers {
            let rows = match reply.key % 2 {
                0 => &mut out.images,
                _ => &mut out.texts,
            };
            if let Err(e) = reply.embedding.and_then(|e| rows.set(reply.key / 2, &e)) {
                forward_error = Some(e);
            }
        }
    });
    if let Some(e) = forward_error {
        return exec_err!("{function}: {e}");
    }
    if let Some(e) = submit_error {
        return Err(exec(e));
    }
    let failures = failures.into_inner().unwrap_or_default();
    if failures.iter().any(|f| f.reason == "model stopped") {
        return exec_err!("{function}: the model thread has stopped");
    }
    let failed: std::collections::HashSet<usize> = failures.iter().map(|f| f.row).collect();
    let lost = image_rows
        .iter()
        .any(|&r| out.images.get(r).is_none() && !failed.contains(&r))
        || texts
            .iter()
            .enumerate()
            .any(|(r, t)| t.is_some() && out.texts.get(r).is_none() && !failed.contains(&r));
    if lost {
        return exec_err!("{function}: the model thread stopped before answering every row");
    }
    rows_failed(function, options, failures)?;
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

/// A function's result: one value when every argument was a scalar, else the column.
pub fn columnar(array: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    if scalar {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?));
    }
    Ok(ColumnarValue::Array(array))
}

/// Arguments as arrays of the batch's length (scalars broadcast).
pub fn arrays(args: &[ColumnarValue], rows: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(rows)).collect()
}
