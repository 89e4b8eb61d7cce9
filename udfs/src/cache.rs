//! The model-output cache: what a model function computed, stored by content, so that a
//! re-run (another threshold, a resumed job, the same function in WHERE and SELECT) computes
//! no model output twice.
//!
//! One redb file, [`FILE_NAME`], in the cache directory. Each (function, model fingerprint)
//! pair has its own table, keyed by a BLAKE3 hash of the function's inputs (image bytes,
//! text), holding the output's bytes; `models` maps a fingerprint to the checkpoint it was
//! taken of (for `hqflow cache stats`) and `file_hashes` remembers checkpoint files' hashes by
//! path, size and modification time, so a fingerprint costs one hash per changed file.
//!
//! The file is opened in redb's multi-writer mode: several hqflow processes (two `hqflow sql`
//! shells, a `hqflow run` and a report) can share one directory, and a process killed at any
//! moment leaves the last committed state, quickly repaired on the next open. The cache is an
//! optimisation: when it cannot be used, model functions compute and say so once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use redb::{
    Builder, ConcurrencyMode, Database, ReadableDatabase, ReadableTableMetadata, TableDefinition,
    TableHandle,
};

/// The cache's file inside its directory.
pub const FILE_NAME: &str = "outputs.redb";

const MODELS: TableDefinition<&str, &str> = TableDefinition::new("models");
const FILE_HASHES: TableDefinition<&str, &[u8]> = TableDefinition::new("file_hashes");
/// Output tables are named `out/FUNCTION/FINGERPRINT`.
const OUTPUT_PREFIX: &str = "out/";

/// A cache failure: an I/O or storage error with the file it concerns.
#[derive(Debug, Clone)]
pub struct CacheError(pub String);

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CacheError {}

type CacheResult<T> = Result<T, CacheError>;

/// A 256-bit content key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

/// The key of a function's inputs. Each part is length-prefixed, so ("ab", "c") and
/// ("a", "bc") differ; `None` (a missing input) differs from every value.
pub fn key_of(parts: &[Option<&[u8]>]) -> Key {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        match part {
            Some(bytes) => {
                hasher.update(&[1]);
                hasher.update(&(bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
            None => {
                hasher.update(&[0]);
            }
        }
    }
    Key(*hasher.finalize().as_bytes())
}

/// One output table, as `hqflow cache stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// The SQL function.
    pub function: String,
    /// The model fingerprint (hex).
    pub fingerprint: String,
    /// What the fingerprint was taken of (the checkpoint directory), when recorded.
    pub model: Option<String>,
    /// Stored outputs.
    pub entries: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// An open cache directory. One per directory per process (see [`open`]).
pub struct OutputCache {
    db: Database,
    dir: PathBuf,
}

impl std::fmt::Debug for OutputCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputCache")
            .field("dir", &self.dir)
            .finish()
    }
}

fn storage(dir: &Path, e: impl std::fmt::Display) -> CacheError {
    CacheError(format!("model-output cache '{}': {e}", dir.display()))
}

fn open_caches() -> &'static Mutex<HashMap<PathBuf, Arc<OutputCache>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<OutputCache>>>> = OnceLock::new();
    OPEN.get_or_init(Mutex::default)
}

/// The cache in `dir` (created if missing), opened once per process.
pub fn open(dir: &Path) -> CacheResult<Arc<OutputCache>> {
    std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| storage(dir, e))?;
    let mut open = open_caches()
        .lock()
        .map_err(|_| storage(&dir, "poisoned by a panic"))?;
    if let Some(cache) = open.get(&dir) {
        return Ok(Arc::clone(cache));
    }
    let db = Builder::new()
        .set_concurrency_mode(ConcurrencyMode::MultiWriter)
        // Pages of hot tables; outputs are small and read once per row.
        .set_cache_size(64 << 20)
        .create(dir.join(FILE_NAME))
        .map_err(|e| storage(&dir, e))?;
    let cache = Arc::new(OutputCache {
        db,
        dir: dir.clone(),
    });
    open.insert(dir, Arc::clone(&cache));
    Ok(cache)
}

/// Removes the cache file in `dir`; returns the bytes freed (0 when there was none). Refused
/// while this process has the cache open.
pub fn clear(dir: &Path) -> CacheResult<u64> {
    let file = dir.join(FILE_NAME);
    let Ok(meta) = std::fs::metadata(&file) else {
        return Ok(0);
    };
    if let Ok(canonical) = dir.canonicalize()
        && open_caches()
            .lock()
            .map(|open| open.contains_key(&canonical))
            .unwrap_or(true)
    {
        return Err(storage(dir, "is open in this process"));
    }
    // Opening it exclusively proves no other process is using it.
    let db = Builder::new()
        .set_concurrency_mode(ConcurrencyMode::ExclusiveWriter)
        .open(&file)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen
            | redb::DatabaseError::LockProtocolMismatch => {
                storage(dir, "is in use by another hqflow process; stop it first")
            }
            other => storage(dir, other),
        })?;
    drop(db);
    std::fs::remove_file(&file).map_err(|e| storage(&file, e))?;
    Ok(meta.len())
}

fn output_table(function: &str, fingerprint: &str) -> String {
    format!("{OUTPUT_PREFIX}{function}/{fingerprint}")
}

impl OutputCache {
    /// The directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stored outputs of `function` under model `fingerprint` for each key (`None` keys and
    /// absent entries give `None`).
    pub fn get_many(
        &self,
        function: &str,
        fingerprint: &str,
        keys: &[Option<Key>],
    ) -> CacheResult<Vec<Option<Vec<u8>>>> {
        let err = |e: &dyn std::fmt::Display| storage(&self.dir, e);
        let name = output_table(function, fingerprint);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let table = match txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
            Err(e) => return Err(err(&e)),
        };
        keys.iter()
            .map(|key| match key {
                Some(key) => table
                    .get(key.0.as_slice())
                    .map(|v| v.map(|v| v.value().to_vec()))
                    .map_err(|e| err(&e)),
                None => Ok(None),
            })
            .collect()
    }

    /// Stores outputs of `function` under model `fingerprint`, in one durable commit.
    pub fn put_many(
        &self,
        function: &str,
        fingerprint: &str,
        entries: &[(Key, Vec<u8>)],
    ) -> CacheResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let err = |e: &dyn std::fmt::Display| storage(&self.dir, e);
        let name = output_table(function, fingerprint);
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut table = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                .map_err(|e| err(&e))?;
            for (key, value) in entries {
                table
                    .insert(key.0.as_slice(), value.as_slice())
                    .map_err(|e| err(&e))?;
            }
        }
        txn.commit().map_err(|e| err(&e))
    }

    /// Records what `fingerprint` was taken of, for `hqflow cache stats`.
    pub fn describe_model(&self, fingerprint: &str, description: &str) -> CacheResult<()> {
        let err = |e: &dyn std::fmt::Display| storage(&self.dir, e);
        let known = {
            let txn = self.db.begin_read().map_err(|e| err(&e))?;
            match txn.open_table(MODELS) {
                Ok(table) => table
                    .get(fingerprint)
                    .map_err(|e| err(&e))?
                    .is_some_and(|v| v.value() == description),
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(err(&e)),
            }
        };
        if known {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut table = txn.open_table(MODELS).map_err(|e| err(&e))?;
            table
                .insert(fingerprint, description)
                .map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))
    }

    /// The remembered hash of a file, valid while its `stamp` (path, size, mtime) holds.
    pub fn file_hash(&self, stamp: &str) -> CacheResult<Option<[u8; 32]>> {
        let err = |e: &dyn std::fmt::Display| storage(&self.dir, e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let table = match txn.open_table(FILE_HASHES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(&e)),
        };
        let value = table.get(stamp).map_err(|e| err(&e))?;
        Ok(value.and_then(|v| v.value().try_into().ok()))
    }

    /// Remembers the hash of a file under its `stamp`.
    pub fn remember_file_hash(&self, stamp: &str, hash: &[u8; 32]) -> CacheResult<()> {
        let err = |e: &dyn std::fmt::Display| storage(&self.dir, e);
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut table = txn.open_table(FILE_HASHES).map_err(|e| err(&e))?;
            table.insert(stamp, hash.as_slice()).map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))
    }

    /// Every output table with its size, by function then fingerprint.
    pub fn summary(&self) -> CacheResult<Vec<TableSummary>> {
        let err = |e: &dyn std::fmt::Display| storage(&self.dir, e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let models: BTreeMap<String, String> = match txn.open_table(MODELS) {
            Ok(table) => {
                let mut all = BTreeMap::new();
                for entry in redb::ReadableTable::iter(&table).map_err(|e| err(&e))? {
                    let (k, v) = entry.map_err(|e| err(&e))?;
                    all.insert(k.value().to_string(), v.value().to_string());
                }
                all
            }
            Err(redb::TableError::TableDoesNotExist(_)) => BTreeMap::new(),
            Err(e) => return Err(err(&e)),
        };
        let mut out = Vec::new();
        for handle in txn.list_tables().map_err(|e| err(&e))? {
            let Some(rest) = handle.name().strip_prefix(OUTPUT_PREFIX) else {
                continue;
            };
            let Some((function, fingerprint)) = rest.split_once('/') else {
                continue;
            };
            let table = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(handle.name()))
                .map_err(|e| err(&e))?;
            let stats = table.stats().map_err(|e| err(&e))?;
            out.push(TableSummary {
                function: function.to_string(),
                fingerprint: fingerprint.to_string(),
                model: models.get(fingerprint).cloned(),
                entries: table.len().map_err(|e| err(&e))?,
                bytes: stats.stored_bytes(),
            });
        }
        out.sort_by(|a, b| (&a.function, &a.fingerprint).cmp(&(&b.function, &b.fingerprint)));
        Ok(out)
    }

    /// The size of the cache file on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.join(FILE_NAME))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

/// Cache hits and misses of one session, by function, for the end-of-run summary.
#[derive(Debug, Default)]
pub struct CacheCounts {
    counts: Mutex<BTreeMap<String, (u64, u64)>>,
    warned: AtomicU64,
}

/// One function's line of [`CacheCounts::summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheCountSummary {
    /// The SQL function.
    pub function: String,
    /// Rows answered from the cache.
    pub hits: u64,
    /// Rows computed (and stored).
    pub computed: u64,
}

impl CacheCounts {
    /// Counts a batch's hits and computed rows for `function`.
    pub fn record(&self, function: &str, hits: u64, computed: u64) {
        if let Ok(mut counts) = self.counts.lock() {
            let entry = counts.entry(function.to_string()).or_default();
            entry.0 += hits;
            entry.1 += computed;
        }
    }

    /// Whether this is the first cache failure of the session (the one worth a warning).
    pub fn first_failure(&self) -> bool {
        self.warned.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// Counts so far, by function.
    pub fn summary(&self) -> Vec<CacheCountSummary> {
        let Ok(counts) = self.counts.lock() else {
            return Vec::new();
        };
        counts
            .iter()
            .map(|(function, (hits, computed))| CacheCountSummary {
                function: function.clone(),
                hits: *hits,
                computed: *computed,
            })
            .collect()
    }
}

/// hqflow's directory in the user's cache: `$XDG_CACHE_HOME/hqflow`, else
/// `~/.cache/hqflow`; `None` without either variable.
pub fn user_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .map(|base| base.join("hqflow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_parts_and_missing_values() {
        assert_ne!(
            key_of(&[Some(b"ab"), Some(b"c")]),
            key_of(&[Some(b"a"), Some(b"bc")])
        );
        assert_ne!(key_of(&[None]), key_of(&[Some(b"")]));
        assert_eq!(key_of(&[Some(b"x")]), key_of(&[Some(b"x")]));
    }

    #[test]
    fn stores_reads_summarizes_and_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = open(dir.path()).expect("open");
        let (a, b) = (key_of(&[Some(b"a")]), key_of(&[Some(b"b")]));
        assert_eq!(
            cache.get_many("f", "fp", &[Some(a), None]).expect("get"),
            vec![None, None]
        );
        cache
            .put_many("f", "fp", &[(a, vec![1, 2, 3, 4])])
            .expect("put");
        cache.describe_model("fp", "/models/m").expect("describe");
        let got = cache.get_many("f", "fp", &[Some(a), Some(b)]).expect("get");
        assert_eq!(got, vec![Some(vec![1, 2, 3, 4]), None]);
        // Another function or model does not see it.
        assert_eq!(
            cache.get_many("g", "fp", &[Some(a)]).expect("get"),
            vec![None]
        );
        let summary = cache.summary().expect("summary");
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].entries, 1);
        assert_eq!(summary[0].model.as_deref(), Some("/models/m"));
        assert!(clear(dir.path()).is_err(), "open in this process");
    }
}
