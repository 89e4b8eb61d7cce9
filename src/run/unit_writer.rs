//! Writing one unit's result: batches stream into shards of at most `shard_rows` rows, all
//! under temporary names; [`UnitWriter::commit`] renames them into place once the unit is
//! complete. Dropping an uncommitted writer (an error, Ctrl-C, a cancelled future) removes
//! its temporary files, so only complete units ever become visible.

use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::manifest::ShardFile;
use super::out_dir::{OutDir, shard_name, temp_name};
use crate::shards::writer_properties;

struct Open {
    writer: ArrowWriter<File>,
    name: String,
    rows: u64,
}

/// The shards of one unit, being written.
pub struct UnitWriter {
    dir: OutDir,
    unit: u64,
    schema: SchemaRef,
    shard_rows: u64,
    props: WriterProperties,
    open: Option<Open>,
    /// Finished shards, still under their temporary names.
    closed: Vec<ShardFile>,
    committed: bool,
}

fn write_error(dir: &OutDir, name: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!(
        "cannot write '{}': {e}",
        dir.join(&temp_name(name)).display()
    ))
}

impl UnitWriter {
    /// A writer for unit `unit`'s shards in `dir`.
    pub fn new(dir: &OutDir, unit: u64, schema: SchemaRef, shard_rows: u64) -> Self {
        UnitWriter {
            dir: dir.clone(),
            unit,
            schema,
            shard_rows: shard_rows.max(1),
            props: writer_properties("hqflow"),
            open: None,
            closed: Vec::new(),
            committed: false,
        }
    }

    fn start_shard(&mut self) -> Result<Open> {
        let name = shard_name(self.unit, self.closed.len() as u64);
        let tmp = self.dir.join(&temp_name(&name));
        let file = File::create(&tmp).map_err(|e| write_error(&self.dir, &name, e))?;
        let writer = ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(self.props.clone()))
            .map_err(|e| write_error(&self.dir, &name, e))?;
        Ok(Open {
            writer,
            name,
            rows: 0,
        })
    }

    fn finish_shard(&mut self, mut open: Open) -> Result<()> {
        open.writer
            .finish()
            .map_err(|e| write_error(&self.dir, &open.name, e))?;
        let file = open.writer.inner();
        file.sync_all()
            .map_err(|e| write_error(&self.dir, &open.name, e))?;
        let size = file
            .metadata()
            .map_err(|e| write_error(&self.dir, &open.name, e))?
            .len();
        self.closed.push(ShardFile {
            name: open.name,
            size,
            rows: open.rows,
        });
        Ok(())
    }

    /// Appends rows, starting a new shard whenever one is full.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows() as u64;
        let mut offset = 0u64;
        while offset < rows {
            let mut open = match self.open.take() {
                Some(open) => open,
                None => self.start_shard()?,
            };
            let take = (self.shard_rows - open.rows).min(rows - offset);
            // The writer flushes its row group itself at ROW_GROUP_BYTES (writer_properties).
            let write = open
                .writer
                .write(&batch.slice(offset as usize, take as usize));
            let name = open.name.clone();
            // Keep the shard owned by self even on error, so that Drop removes its file.
            open.rows += take;
            offset += take;
            if open.rows == self.shard_rows {
                write.map_err(|e| write_error(&self.dir, &name, e))?;
                self.finish_shard(open)?;
            } else {
                self.open = Some(open);
                write.map_err(|e| write_error(&self.dir, &name, e))?;
            }
        }
        Ok(())
    }

    /// Makes sure the unit has a shard even if no rows come (a result without rows is
    /// still one Parquet file with its schema).
    pub fn ensure_shard(&mut self) -> Result<()> {
        if self.open.is_none() && self.closed.is_empty() {
            self.open = Some(self.start_shard()?);
        }
        Ok(())
    }

    /// Finishes the last shard and renames every shard into place; returns them. A unit
    /// without rows has no shards.
    pub fn commit(mut self) -> Result<Vec<ShardFile>> {
        if let Some(open) = self.open.take() {
            self.finish_shard(open)?;
        }
        for shard in &self.closed {
            let (tmp, path) = (
                self.dir.join(&temp_name(&shard.name)),
                self.dir.join(&shard.name),
            );
            std::fs::rename(&tmp, &path).map_err(|e| {
                DataFusionError::Execution(format!("cannot rename into '{}': {e}", path.display()))
            })?;
        }
        self.dir.sync()?;
        self.committed = true;
        Ok(std::mem::take(&mut self.closed))
    }
}

impl Drop for UnitWriter {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let open = self.open.take().map(|o| {
            let name = o.name.clone();
            drop(o.writer);
            name
        });
        for name in self.closed.iter().map(|s| s.name.clone()).chain(open) {
            let _ = self.dir.remove(&temp_name(&name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(schema: &SchemaRef, n: i64) -> RecordBatch {
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![Arc::new(Int64Array::from_iter_values(0..n))],
        )
        .expect("a batch")
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn shards_appear_only_on_commit() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = OutDir::create(tmp.path()).expect("dir");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let mut w = UnitWriter::new(&dir, 7, Arc::clone(&schema), 4);
        w.write(&batch(&schema, 3)).expect("written");
        w.write(&batch(&schema, 6)).expect("written");
        assert_eq!(
            names(tmp.path()),
            vec![
                ".part-00007-000.parquet.tmp",
                ".part-00007-001.parquet.tmp",
                ".part-00007-002.parquet.tmp"
            ]
        );
        let shards = w.commit().expect("committed");
        let rows: Vec<u64> = shards.iter().map(|s| s.rows).collect();
        assert_eq!(rows, vec![4, 4, 1]);
        assert_eq!(
            names(tmp.path()),
            vec![
                "part-00007-000.parquet",
                "part-00007-001.parquet",
                "part-00007-002.parquet"
            ]
        );
        for s in &shards {
            let size = std::fs::metadata(dir.join(&s.name)).expect("exists").len();
            assert_eq!(size, s.size);
        }
    }

    #[test]
    fn a_dropped_writer_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = OutDir::create(tmp.path()).expect("dir");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let mut w = UnitWriter::new(&dir, 0, Arc::clone(&schema), 2);
        w.write(&batch(&schema, 5)).expect("written");
        drop(w);
        assert!(names(tmp.path()).is_empty());
        let empty = UnitWriter::new(&dir, 1, schema, 2);
        assert!(empty.commit().expect("committed").is_empty());
        assert!(names(tmp.path()).is_empty());
    }
}
