//! Where every reader's rows go: uniqueness of keys and uids, bad-input accounting, and
//! chunked writing into Parquet shards.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};

use super::problems::{Problem, Problems};
use super::row::{Row, fingerprint, schema, to_batch};
use crate::shards::{CHUNK_ROWS, ShardWriter};

/// Rows are handed to the shard writer once this many image bytes are buffered.
const CHUNK_BYTES: usize = 32 << 20;

/// What a finished ingest wrote and met.
#[derive(Debug)]
pub struct Summary {
    /// Rows written.
    pub rows: u64,
    /// The shards, in order.
    pub shards: Vec<PathBuf>,
    /// Bad input.
    pub problems: Problems,
    /// Input left out on purpose (not bad), by what it was.
    pub skipped: BTreeMap<String, u64>,
}

/// Takes rows, checks them, writes them.
pub struct PoolSink {
    schema: SchemaRef,
    writer: ShardWriter,
    strict: bool,
    buffer: Vec<Row>,
    buffered_bytes: usize,
    keys: HashSet<u128>,
    uids: HashSet<u128>,
    rows: u64,
    problems: Problems,
    skipped: BTreeMap<String, u64>,
}

impl PoolSink {
    /// A sink writing shards of `shard_rows` into `dir` (which exists and is empty).
    pub fn new(dir: &Path, shard_rows: usize, strict: bool, with_label: bool) -> Result<Self> {
        let schema = schema(with_label);
        let writer = ShardWriter::new(dir, schema.clone(), shard_rows, "hqflow ingest")?;
        Ok(PoolSink {
            schema,
            writer,
            strict,
            buffer: Vec::new(),
            buffered_bytes: 0,
            keys: HashSet::new(),
            uids: HashSet::new(),
            rows: 0,
            problems: Problems::default(),
            skipped: BTreeMap::new(),
        })
    }

    /// Counts bad input; with `--strict` it is an error instead.
    pub fn problem(&mut self, problem: Problem, detail: impl Into<String>) -> Result<()> {
        let detail = detail.into();
        if self.strict {
            return Err(DataFusionError::Execution(format!(
                "{problem}: {detail} (--strict; the output directory is incomplete)"
            )));
        }
        self.problems.add(problem, detail);
        Ok(())
    }

    /// Counts input left out on purpose.
    pub fn skip(&mut self, what: &str) {
        *self.skipped.entry(what.to_string()).or_default() += 1;
    }

    /// Whether `key` was already written (or pushed).
    pub fn has_key(&self, key: &str) -> bool {
        self.keys.contains(&fingerprint(key))
    }

    /// Adds a row, unless its key or uid was seen before (a problem).
    pub fn push(&mut self, row: Row) -> Result<()> {
        let key = fingerprint(&row.key);
        let uid = fingerprint(&row.uid);
        if self.keys.contains(&key) {
            return self.problem(Problem::DuplicateKey, format!("key '{}'", row.key));
        }
        if self.uids.contains(&uid) {
            return self.problem(
                Problem::DuplicateKey,
                format!("uid '{}' (key '{}')", row.uid, row.key),
            );
        }
        self.keys.insert(key);
        self.uids.insert(uid);
        self.buffered_bytes += row.img.len();
        self.buffer.push(row);
        self.rows += 1;
        if self.buffer.len() >= CHUNK_ROWS || self.buffered_bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            let batch = to_batch(&self.schema, &self.buffer)?;
            self.writer.write(&batch)?;
            self.buffer.clear();
            self.buffered_bytes = 0;
        }
        Ok(())
    }

    /// Rows accepted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Problems counted so far.
    pub fn problem_count(&self) -> u64 {
        self.problems.total()
    }

    /// Writes what is buffered and closes the last shard.
    pub fn finish(mut self) -> Result<Summary> {
        self.flush()?;
        let shards = self.writer.finish()?;
        Ok(Summary {
            rows: self.rows,
            shards,
            problems: self.problems,
            skipped: self.skipped,
        })
    }
}
