//! The output directory of `hqflow run`: which files are hqflow's, their names, and writing
//! them so that a reader (or a kill -9) never meets a half-written one.
//!
//! Names:
//! - `part-UUUUU-SSS.parquet`: shard SSS of unit UUUUU, complete;
//! - `_manifest.json`, `_SUCCESS`: the job and its progress; the end marker;
//! - `.NAME.tmp`: any of the above while being written. A leading `.` and no `.parquet` at
//!   the end keep these out of every reader's listing: DataFusion's ListingTable (hqflow's
//!   `-t NAME=DIR`) takes only files ending in the table's extension, `.parquet`; pyarrow's
//!   dataset discovery skips names starting with `.` or `_`; DuckDB's `DIR/*.parquet` glob
//!   needs the extension.
//!
//! Anything else in the directory was not written by hqflow, and hqflow refuses to use
//! (or clear) such a directory.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::common::{DataFusionError, Result};

use super::manifest::Manifest;

/// The manifest's file name.
pub const MANIFEST: &str = "_manifest.json";
/// The success marker's file name.
pub const SUCCESS: &str = "_SUCCESS";

/// What a file in the output directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `_manifest.json`.
    Manifest,
    /// `_SUCCESS`.
    Success,
    /// A complete shard.
    Shard,
    /// One of the above being written (or left behind by a killed run).
    Temp,
    /// Not hqflow's.
    Unknown,
}

/// The name of shard `shard` of unit `unit`.
pub fn shard_name(unit: u64, shard: u64) -> String {
    format!("part-{unit:05}-{shard:03}.parquet")
}

/// The temporary name `name` is written under.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

fn is_shard_name(name: &str) -> bool {
    let Some(middle) = name
        .strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".parquet"))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    middle
        .split_once('-')
        .is_some_and(|(unit, shard)| digits(unit) && digits(shard))
}

/// Classifies a directory entry by name.
pub fn classify(name: &str) -> Kind {
    match name {
        MANIFEST => Kind::Manifest,
        SUCCESS => Kind::Success,
        n if is_shard_name(n) => Kind::Shard,
        n => match n.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
            Some(inner) if inner == MANIFEST || inner == SUCCESS || is_shard_name(inner) => {
                Kind::Temp
            }
            _ => Kind::Unknown,
        },
    }
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("cannot {what} '{}': {e}", path.display()))
}

/// The output directory.
#[derive(Debug, Clone)]
pub struct OutDir {
    path: PathBuf,
}

impl OutDir {
    /// The directory at `path`, which need not exist yet; refuses a path that is a file.
    pub fn new(path: &Path) -> Result<Self> {
        if path.exists() && !path.is_dir() {
            return Err(DataFusionError::Plan(format!(
                "--out '{}' is a file, not a directory",
                path.display()
            )));
        }
        Ok(OutDir {
            path: path.to_path_buf(),
        })
    }

    /// The directory at `path`, created when missing.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = Self::new(path)?;
        std::fs::create_dir_all(path).map_err(|e| io_error("create directory", path, e))?;
        Ok(dir)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file's path in the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Every entry's name and kind, sorted by name (none when the directory does not exist
    /// yet); an error names the first entry that is not hqflow's.
    pub fn entries(&self) -> Result<Vec<(String, Kind)>> {
        let read = match std::fs::read_dir(&self.path) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read", &self.path, e)),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| io_error("read", &self.path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let kind = if is_file {
                classify(&name)
            } else {
                Kind::Unknown
            };
            if kind == Kind::Unknown {
                return Err(DataFusionError::Plan(format!(
                    "--out '{}' holds '{name}', which hqflow run did not write; \
                     refusing to write into (or clear) it: choose an empty or new directory",
                    self.path.display()
                )));
            }
            out.push((name, kind));
        }
        out.sort();
        Ok(out)
    }

    /// Removes one file (missing is fine).
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove", &path, e)),
        }
    }

    /// The manifest, if there is one.
    pub fn read_manifest(&self) -> Result<Option<Manifest>> {
        let path = self.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            DataFusionError::Plan(format!(
                "'{}' is not a manifest hqflow can read ({e}); use --restart to start over",
                path.display()
            ))
        })
    }

    /// Replaces the manifest atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let text = serde_json::to_string_pretty(manifest)
            .map_err(|e| DataFusionError::Execution(format!("cannot encode manifest: {e}")))?;
        self.write_atomic(MANIFEST, format!("{text}\n").as_bytes())
    }

    /// Writes `name` under its temporary name, flushes it to disk, and renames it into place.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = self.join(&temp_name(name));
        let mut file = File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("write", &tmp, e))?;
        drop(file);
        self.rename_into_place(name)
    }

    /// Renames `name`'s temporary file to `name`, and makes the rename durable.
    pub fn rename_into_place(&self, name: &str) -> Result<()> {
        let (tmp, path) = (self.join(&temp_name(name)), self.join(name));
        std::fs::rename(&tmp, &path).map_err(|e| io_error("rename into", &path, e))?;
        self.sync()
    }

    /// Takes an exclusive lock on the directory for as long as the returned handle lives, so
    /// that two runs never write into it at once (an advisory `flock` on the directory
    /// itself: no lock file to leave behind, and a killed run's lock goes with it). Where a
    /// directory cannot be opened as a file, there is no lock.
    pub fn lock(&self) -> Result<Option<File>> {
        let Ok(dir) = File::open(&self.path) else {
            return Ok(None);
        };
        match dir.try_lock() {
            Ok(()) => Ok(Some(dir)),
            Err(std::fs::TryLockError::WouldBlock) => Err(DataFusionError::Plan(format!(
                "another hqflow run is writing to '{}'; wait for it to end",
                self.path.display()
            ))),
            Err(std::fs::TryLockError::Error(_)) => Ok(None),
        }
    }

    /// Flushes the directory's entries (renames, removals) to disk.
    pub fn sync(&self) -> Result<()> {
        // Directories cannot be opened as files everywhere; where they can, fsync them.
        if let Ok(dir) = File::open(&self.path) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        assert_eq!(classify("_manifest.json"), Kind::Manifest);
        assert_eq!(classify("_SUCCESS"), Kind::Success);
        assert_eq!(classify(&shard_name(3, 0)), Kind::Shard);
        assert_eq!(classify("part-123456-1000.parquet"), Kind::Shard);
        assert_eq!(classify(&temp_name(&shard_name(3, 1))), Kind::Temp);
        assert_eq!(classify("._manifest.json.tmp"), Kind::Temp);
        assert_eq!(classify("._SUCCESS.tmp"), Kind::Temp);
        for other in [
            "part-00000.parquet",
            "part-00000-000.parquet.tmp",
            "part--000.parquet",
            "part-0a-000.parquet",
            ".part-00000.parquet.tmp",
            "world.json",
            ".DS_Store",
            "notes.txt",
        ] {
            assert_eq!(classify(other), Kind::Unknown, "{other}");
        }
    }

    #[test]
    fn temp_names_hide_from_readers() {
        let tmp = temp_name(&shard_name(0, 0));
        assert!(tmp.starts_with('.'));
        assert!(!tmp.ends_with(".parquet"));
    }

    #[test]
    fn one_run_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = OutDir::create(dir.path()).expect("created");
        let held = out.lock().expect("first lock");
        assert!(held.is_some());
        let e = out.lock().expect_err("second lock refused").to_string();
        assert!(e.contains("another hqflow run is writing to"), "{e}");
        drop(held);
        assert!(out.lock().expect("free again").is_some());
    }

    #[test]
    fn unknown_files_are_refused_and_ours_listed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = OutDir::create(dir.path()).expect("created");
        out.write_atomic(SUCCESS, b"").expect("written");
        std::fs::write(out.join(&temp_name(&shard_name(0, 0))), b"x").expect("written");
        assert_eq!(
            out.entries().expect("ours"),
            vec![
                (".part-00000-000.parquet.tmp".to_string(), Kind::Temp),
                ("_SUCCESS".to_string(), Kind::Success),
            ]
        );
        std::fs::write(out.join("notes.txt"), b"mine").expect("written");
        let e = out.entries().expect_err("refused").to_string();
        assert!(
            e.contains("'notes.txt', which hqflow run did not write"),
            "{e}"
        );
        out.remove("notes.txt").expect("removed");
        out.remove("notes.txt").expect("missing is fine");
        std::fs::create_dir(out.join("sub")).expect("made");
        assert!(out.entries().is_err());
    }
}
