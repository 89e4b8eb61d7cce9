//! A checkpoint's fingerprint: a hash of the files that decide its outputs (configuration,
//! preprocessing, tokenizer, weights), the model part of a model-output cache key. Editing
//! or replacing any of them gives a new fingerprint, so stale outputs are never served.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::UNIX_EPOCH;

use super::{ModelError, ModelResult};
use crate::cache::OutputCache;

/// The files of a CLIP checkpoint that its outputs depend on (the ones the loader reads).
pub const CLIP_FILES: &[&str] = &[
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "model.safetensors",
];

/// Hashes already taken in this process, by file stamp.
fn hashed() -> &'static Mutex<HashMap<String, [u8; 32]>> {
    static HASHED: OnceLock<Mutex<HashMap<String, [u8; 32]>>> = OnceLock::new();
    HASHED.get_or_init(Mutex::default)
}

/// A file's identity for reusing its hash: canonical path, size, modification time.
fn stamp(path: &Path) -> ModelResult<String> {
    let err = |e: std::io::Error| ModelError(format!("cannot read '{}': {e}", path.display()));
    let canonical = path.canonicalize().map_err(err)?;
    let meta = std::fs::metadata(&canonical).map_err(err)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!(
        "{}\u{0}{}\u{0}{modified}",
        canonical.display(),
        meta.len()
    ))
}

fn hash_file(path: &Path) -> ModelResult<[u8; 32]> {
    let err = |e: std::io::Error| ModelError(format!("cannot read '{}': {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(*hasher.finalize().as_bytes())
}

/// The hash of one file: from this process's memory, else from `memo` (the cache's record
/// of earlier runs), else read and hashed (and remembered in both).
fn file_hash(path: &Path, memo: Option<&OutputCache>) -> ModelResult<[u8; 32]> {
    let stamp = stamp(path)?;
    if let Some(hash) = hashed().lock().ok().and_then(|h| h.get(&stamp).copied()) {
        return Ok(hash);
    }
    let remembered = memo.and_then(|m| m.file_hash(&stamp).ok().flatten());
    let hash = match remembered {
        Some(hash) => hash,
        None => {
            let hash = hash_file(path)?;
            if let Some(memo) = memo
                && let Err(e) = memo.remember_file_hash(&stamp, &hash)
            {
                tracing::debug!("cannot remember a checkpoint file's hash: {e}");
            }
            hash
        }
    };
    if let Ok(mut h) = hashed().lock() {
        h.insert(stamp, hash);
    }
    Ok(hash)
}

/// The fingerprint (32 hex digits) of the checkpoint in `dir`, over those of `files` that
/// exist. A file is read only when its path, size or modification time is new.
pub fn checkpoint_fingerprint(
    dir: &Path,
    files: &[&str],
    memo: Option<&OutputCache>,
) -> ModelResult<String> {
    let mut hasher = blake3::Hasher::new();
    for name in files {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&file_hash(&path, memo)?);
    }
    let hex = hasher.finalize().to_hex();
    Ok(hex.as_str()[..32].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_file_contents() -> ModelResult<()> {
        let dir = tempfile::tempdir().map_err(|e| ModelError(e.to_string()))?;
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text);
        write("config.json", "{}").map_err(|e| ModelError(e.to_string()))?;
        write("model.safetensors", "weights-1").map_err(|e| ModelError(e.to_string()))?;
        let first = checkpoint_fingerprint(dir.path(), CLIP_FILES, None)?;
        assert_eq!(first.len(), 32);
        assert_eq!(first, checkpoint_fingerprint(dir.path(), CLIP_FILES, None)?);
        // Same size, new contents: the stamp changes with the modification time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write("model.safetensors", "weights-2").map_err(|e| ModelError(e.to_string()))?;
        let second = checkpoint_fingerprint(dir.path(), CLIP_FILES, None)?;
        assert_ne!(first, second);
        // Files that are not part of the model do not matter.
        write("README.md", "notes").map_err(|e| ModelError(e.to_string()))?;
        assert_eq!(
            second,
            checkpoint_fingerprint(dir.path(), CLIP_FILES, None)?
        );
        Ok(())
    }
}
