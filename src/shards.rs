//! Writing tables as Parquet shards: `part-00000.parquet`, … of a fixed row count, each
//! written under a temporary name and renamed when complete, so a reader never sees a
//! half-written shard. Used by everything that writes a table of its own (`hqflow world`,
//! `hqflow ingest`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Rows per Parquet row group (and per generated chunk).
pub const CHUNK_ROWS: usize = 1024;

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("cannot {what} '{}': {e}", path.display()))
}

/// Creates `dir` for a new table; refuses one that already has files in it.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| io_error("read", dir, e))?;
        if entries.next().is_some() {
            return Err(DataFusionError::Plan(format!(
                "'{}' already exists and is not empty; remove it or choose another --out",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error("create directory", dir, e))
}

/// Writes a file under a temporary name, then renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_name(path);
    std::fs::write(&tmp, bytes).map_err(|e| io_error("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("rename into", path, e))
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// The most encoded bytes a row group of any Parquet file hqflow writes grows to before it is
/// flushed. A writer holds its row group in memory until then (and a copy of it while
/// flushing), so this bounds each open file's memory whatever the rows' width: without it,
/// `COPY`'s default of a million rows per group buffers a million images (gigabytes) per
/// file, and even a table of scores grows the process by tens of megabytes towards its first
/// flush. 2 MiB holds about a hundred web images or a thousand small ones, enough for readers
/// to prune and read in large pieces (Hugging Face's image datasets use 100 rows per group).
/// A COPY of a million 64 px images peaked at 253 MB with 8 MiB and 208 MB with 4 MiB; a COPY
/// of 100,000 at 153–168 MB with 4 MiB and 133–148 MB with 2 MiB, each in the same time.
pub const ROW_GROUP_BYTES: usize = 2 << 20;

/// How hqflow writes Parquet shards: Snappy, row groups of [`CHUNK_ROWS`] rows or
/// [`ROW_GROUP_BYTES`], whichever comes first (the writer flushes at either), and a fixed
/// `created_by` (so the bytes do not change with the parquet crate's version string).
pub fn writer_properties(created_by: &str) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(CHUNK_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_created_by(created_by.to_string())
        .build()
}

struct OpenShard {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    rows: usize,
}

/// Parquet shards `part-00000.parquet`, `part-00001.parquet`, … of `shard_rows` rows each.
pub struct ShardWriter {
    dir: PathBuf,
    schema: SchemaRef,
    shard_rows: usize,
    props: WriterProperties,
    open: Option<OpenShard>,
    written: Vec<PathBuf>,
    rows: usize,
}

impl ShardWriter {
    /// A writer into `dir` (which must exist); `created_by` goes into each file's metadata
    /// (fixed, so the bytes do not change with the parquet crate's version string).
    pub fn new(dir: &Path, schema: SchemaRef, shard_rows: usize, created_by: &str) -> Result<Self> {
        if shard_rows == 0 {
            return Err(DataFusionError::Plan(
                "--shard-rows must be positive".into(),
            ));
        }
        let props = writer_properties(created_by);
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            schema,
            shard_rows,
            props,
            open: None,
            written: Vec::new(),
            rows: 0,
        })
    }

    fn open_shard(&mut self) -> Result<OpenShard> {
        let path = self
            .dir
            .join(format!("part-{:05}.parquet", self.written.len()));
        let tmp = temp_name(&path);
        let file = File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
        let writer = ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(self.props.clone()))
            .map_err(|e| io_error("start Parquet file", &tmp, e))?;
        Ok(OpenShard {
            writer,
            tmp,
            path,
            rows: 0,
        })
    }

    fn close_shard(&mut self, shard: OpenShard) -> Result<()> {
        shard
            .writer
            .close()
            .map_err(|e| io_error("finish Parquet file", &shard.tmp, e))?;
        std::fs::rename(&shard.tmp, &shard.path)
            .map_err(|e| io_error("rename into", &shard.path, e))?;
        self.written.push(shard.path);
        Ok(())
    }

    /// Appends rows, starting a new shard whenever one is full.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let mut shard = match self.open.take() {
                Some(shard) => shard,
                None => self.open_shard()?,
            };
            let take = (self.shard_rows - shard.rows).min(batch.num_rows() - offset);
            shard
                .writer
                .write(&batch.slice(offset, take))
                .map_err(|e| io_error("write", &shard.tmp, e))?;
            shard.rows += take;
            offset += take;
            self.rows += take;
            if shard.rows == self.shard_rows {
                self.close_shard(shard)?;
            } else {
                self.open = Some(shard);
            }
        }
        Ok(())
    }

    /// Finishes the last shard; returns every shard written.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if let Some(shard) = self.open.take() {
            self.close_shard(shard)?;
        }
        if self.written.is_empty() {
            // An empty table is still a table: one shard with the schema and no rows.
            let shard = self.open_shard()?;
            self.close_shard(shard)?;
        }
        Ok(self.written)
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }
}
