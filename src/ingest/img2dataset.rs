//! `ingest img2dataset`: img2dataset's Parquet output (`output_format=parquet`). Its columns:
//! the image bytes under the encode format's name (`jpg`, `png` or `webp`), `caption`, `key`,
//! `url`, `status`, `width`, `height`, … Rows whose `status` is not `success` (downloads that
//! failed) are skipped and counted; width and height are read from the image header.

use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{DataFusionError, Result};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::image_header::dimensions;
use super::problems::Problem;
use super::progress::Progress;
use super::row::{Row, uid_from_key};
use super::sink::PoolSink;

/// Columns that may hold the image bytes, in the order they are looked for.
const IMAGE_COLUMNS: &[&str] = &["jpg", "png", "webp", "jpeg", "image", "img"];
/// Columns that may hold the caption.
const CAPTION_COLUMNS: &[&str] = &["caption", "txt", "text"];
/// Record batch size while reading (rows with images in memory at once).
const BATCH_ROWS: usize = 256;

/// The Parquet files directly in `dir` (or `dir` itself when it is a file), sorted.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DataFusionError::Plan(format!("cannot read '{}': {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| DataFusionError::Plan(format!("cannot read '{}': {e}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "parquet") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "'{}' has no *.parquet files (img2dataset writes them with --output_format parquet)",
            dir.display()
        )));
    }
    Ok(files)
}

/// Which column of the file's schema plays each part.
struct Columns {
    image: String,
    caption: String,
    key: Option<String>,
    url: Option<String>,
    uid: Option<String>,
    status: Option<String>,
}

fn find(schema: &Schema, names: &[&str], ok: impl Fn(&DataType) -> bool) -> Option<String> {
    names.iter().find_map(|name| {
        schema
            .field_with_name(name)
            .ok()
            .filter(|f| ok(f.data_type()))
            .map(|f| f.name().clone())
    })
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_binary(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn columns(schema: &Schema, file: &Path) -> Result<Columns> {
    let names = || {
        schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let image = find(schema, IMAGE_COLUMNS, is_binary).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "'{}' has no image bytes column (a binary column named one of {}); its columns: {}",
            file.display(),
            IMAGE_COLUMNS.join(", "),
            names()
        ))
    })?;
    let caption = find(schema, CAPTION_COLUMNS, is_text).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "'{}' has no caption column (a text column named one of {}); its columns: {}",
            file.display(),
            CAPTION_COLUMNS.join(", "),
            names()
        ))
    })?;
    let key = find(schema, &["key"], is_text);
    let url = find(schema, &["url"], is_text);
    let uid = find(schema, &["uid"], is_text);
    let status = find(schema, &["status"], is_text);
    Ok(Columns {
        image,
        caption,
        key,
        url,
        uid,
        status,
    })
}

/// Ingests every Parquet file in `dir`.
pub fn ingest(dir: &Path, sink: &mut PoolSink, progress: &mut Progress) -> Result<()> {
    let files = parquet_files(dir)?;
    let mut total = 0u64;
    for file in &files {
        let builder = open(file)?;
        total += builder.metadata().file_metadata().num_rows().max(0) as u64;
    }
    progress.set_total(total, "rows");
    let mut done = 0u64;
    for file in &files {
        let builder = open(file)?;
        let schema = builder.schema().clone();
        let cols = columns(&schema, file)?;
        let wanted: Vec<&String> = [Some(&cols.image), Some(&cols.caption)]
            .into_iter()
            .chain([&cols.key, &cols.url, &cols.uid, &cols.status].map(Option::as_ref))
            .flatten()
            .collect();
        let indices = wanted
            .iter()
            .filter_map(|name| schema.index_of(name).ok())
            .collect::<Vec<_>>();
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| read_error(file, e))?;
        let mut row_in_file = 0usize;
        for batch in reader {
            let batch = batch.map_err(|e| read_error(file, e))?;
            read_batch(&batch, &cols, file, row_in_file, sink)?;
            row_in_file += batch.num_rows();
            done += batch.num_rows() as u64;
            progress.update(done, sink.rows(), sink.problem_count());
        }
    }
    Ok(())
}

fn open(file: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let handle = File::open(file).map_err(|e| read_error(file, e))?;
    ParquetRecordBatchReaderBuilder::try_new(handle).map_err(|e| read_error(file, e))
}

fn read_error(file: &Path, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("cannot read '{}': {e}", file.display()))
}

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Internal(format!("projected column '{name}' missing")))?;
    Ok(cast(array, to)?)
}

fn texts(batch: &RecordBatch, name: Option<&String>) -> Result<Option<ArrayRef>> {
    name.map(|n| column(batch, n, &DataType::Utf8)).transpose()
}

fn text_at(array: Option<&ArrayRef>, i: usize) -> Option<String> {
    let array = array?.as_string::<i32>();
    (!array.is_null(i)).then(|| array.value(i).to_string())
}

fn read_batch(
    batch: &RecordBatch,
    cols: &Columns,
    file: &Path,
    first_row: usize,
    sink: &mut PoolSink,
) -> Result<()> {
    let origin = file.display();
    let images = column(batch, &cols.image, &DataType::Binary)?;
    let images = images.as_binary::<i32>();
    let captions = texts(batch, Some(&cols.caption))?;
    let keys = texts(batch, cols.key.as_ref())?;
    let urls = texts(batch, cols.url.as_ref())?;
    let uids = texts(batch, cols.uid.as_ref())?;
    let statuses = texts(batch, cols.status.as_ref())?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    for i in 0..batch.num_rows() {
        let row = first_row + i;
        if let Some(status) = text_at(statuses.as_ref(), i)
            && status != "success"
        {
            sink.skip(&format!("rows with status '{status}'"));
            continue;
        }
        let key = text_at(keys.as_ref(), i).unwrap_or_else(|| format!("{stem}/{row}"));
        if images.is_null(i) {
            sink.problem(
                Problem::NoImage,
                format!("{origin}: row {row} (key '{key}')"),
            )?;
            continue;
        }
        let Some(txt) = text_at(captions.as_ref(), i) else {
            sink.problem(
                Problem::NoCaption,
                format!(
                    "{origin}: row {row} (key '{key}') has a NULL {}",
                    cols.caption
                ),
            )?;
            continue;
        };
        let img = images.value(i).to_vec();
        let (width, height) = match dimensions(&img) {
            Ok(dims) => dims,
            Err(e) => {
                sink.problem(
                    Problem::NotAnImage,
                    format!("{origin}: row {row} (key '{key}'): {e}"),
                )?;
                continue;
            }
        };
        let uid = text_at(uids.as_ref(), i).unwrap_or_else(|| uid_from_key(&key));
        sink.push(Row {
            uid,
            key,
            url: text_at(urls.as_ref(), i),
            txt: Some(txt),
            img,
            width,
            height,
            label: None,
        })?;
    }
    Ok(())
}
