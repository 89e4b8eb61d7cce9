//! Writing generated tables: rows made in parallel in fixed order, streamed into Parquet
//! shards of a fixed row count, each written under a temporary name and renamed when
//! complete. At most two chunks of rows are in memory at a time.

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
    /// A writer into `dir` (which must exist).
    pub fn new(dir: &Path, schema: SchemaRef, shard_rows: usize) -> Result<Self> {
        if shard_rows == 0 {
            return Err(DataFusionError::Plan(
                "--shard-rows must be positive".into(),
            ));
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(CHUNK_ROWS))
            // Fixed, so the bytes do not change with the parquet crate's version string.
            .set_created_by("hqflow world".to_string())
            .build();
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

/// Makes rows `0..rows` with `make` on `threads` threads, in chunks of [`CHUNK_ROWS`], and
/// hands each chunk to `sink` in row order (while the next chunk is being made).
pub fn generate<R, M, S>(rows: u64, threads: usize, make: M, mut sink: S) -> Result<()>
where
    R: Send,
    M: Fn(u64) -> Result<R> + Sync,
    S: FnMut(Vec<R>) -> Result<()>,
{
    let threads = threads.max(1);
    let make = &make;
    let mut pending: Option<Vec<R>> = None;
    let mut start = 0u64;
    while start < rows {
        let end = (start + CHUNK_ROWS as u64).min(rows);
        let per_thread = (end - start).div_ceil(threads as u64);
        let made = std::thread::scope(|scope| -> Result<Vec<R>> {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let lo = (start + t * per_thread).min(end);
                    let hi = (lo + per_thread).min(end);
                    scope.spawn(move || (lo..hi).map(make).collect::<Result<Vec<R>>>())
                })
                .collect();
            // The previous chunk is written while this one is made.
            let sunk = pending.take().map(&mut sink).transpose();
            let mut out = Vec::with_capacity((end - start) as usize);
            for handle in handles {
                let part = handle.join().map_err(|_| {
                    DataFusionError::Internal("a world generator thread panicked".into())
                })?;
                out.extend(part?);
            }
            sunk?;
            Ok(out)
        })?;
        pending = Some(made);
        start = end;
    }
    if let Some(last) = pending {
        sink(last)?;
    }
    Ok(())
}
