//! The model built into hqflow: a small CLIP trained by `hqflow-train` on the synthetic
//! world's high-quality pairs (the role DFN's HQITP-350M plays), so that `dfn_score`,
//! `clip_embed` and `clip_embed_text` work without registering a model. Its recipe and
//! measured quality are in `udfs/models/world-dfn/README.md`.
//!
//! The checkpoint's files are compiled into the binary and written out, once per version, to
//! a directory under the user's cache (`$XDG_CACHE_HOME/hqflow/models/`, else
//! `~/.cache/hqflow/models/`, else the temp dir). From there it loads like any other
//! checkpoint directory, so the model registry, the output cache's fingerprints and
//! `hqflow-train --init` treat it as one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{ModelError, ModelResult};

/// The name the built-in model answers to (and the default of `dfn_score` and the CLIP
/// embedding functions when no model is named or set).
pub const NAME: &str = "hqflow-world-dfn";

/// The checkpoint's files, as `hqflow-train fit` wrote them.
const FILES: [(&str, &[u8]); 5] = [
    (
        "config.json",
        include_bytes!("../../models/world-dfn/config.json"),
    ),
    (
        "preprocessor_config.json",
        include_bytes!("../../models/world-dfn/preprocessor_config.json"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../../models/world-dfn/tokenizer.json"),
    ),
    (
        "tokenizer_config.json",
        include_bytes!("../../models/world-dfn/tokenizer_config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../../models/world-dfn/model.safetensors"),
    ),
];

/// Written last: a directory with it holds every file whole.
const COMPLETE: &str = ".complete";

/// A short content hash of the files, naming the directory of this version; hashed (5 MB)
/// once per process.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = blake3::Hasher::new();
        for (name, bytes) in FILES {
            hasher.update(name.as_bytes());
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        hasher.finalize().to_hex()[..16].to_string()
    })
}

/// Writes the files (of `version`) into a fresh directory next to `target` and renames it
/// into place; a process that lost the race finds the winner's complete copy.
fn materialize(target: &Path, version: &str) -> std::io::Result<()> {
    if target.join(COMPLETE).is_file() {
        return Ok(());
    }
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(
        ".{}.{}.tmp",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for (name, bytes) in FILES {
        std::fs::write(staging.join(name), bytes)?;
    }
    std::fs::write(staging.join(COMPLETE), version)?;
    if target.exists() && !target.join(COMPLETE).is_file() {
        // An interrupted copy of an older hqflow: replace it.
        let _ = std::fs::remove_dir_all(target);
    }
    match std::fs::rename(&staging, target) {
        Ok(()) => Ok(()),
        Err(_) if target.join(COMPLETE).is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The built-in checkpoint's directory, written out on first use.
pub fn directory() -> ModelResult<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let version = version();
        let target = crate::cache::user_cache_dir()
            .unwrap_or_else(|| std::env::temp_dir().join("hqflow"))
            .join("models")
            .join(format!("world-dfn-{version}"));
        materialize(&target, version)
            .map(|()| target.clone())
            .map_err(|e| {
                format!(
                    "cannot write the built-in model to '{}': {e} (set XDG_CACHE_HOME to a \
                     writable directory, or register a model with -m)",
                    target.display()
                )
            })
    })
    .clone()
    .map_err(ModelError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_complete_checkpoint_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("m");
        materialize(&target, "test").expect("written");
        for (name, bytes) in FILES {
            assert_eq!(std::fs::read(target.join(name)).expect(name), bytes);
        }
        // A second call finds it complete and leaves it alone.
        std::fs::write(target.join("config.json"), b"changed").expect("write");
        materialize(&target, "test").expect("again");
        assert_eq!(
            std::fs::read(target.join("config.json")).expect("config"),
            b"changed"
        );
        // A copy without its marker (an interrupted write) is replaced.
        std::fs::remove_file(target.join(COMPLETE)).expect("remove");
        materialize(&target, "test").expect("repaired");
        assert_eq!(
            std::fs::read(target.join("config.json")).expect("config"),
            FILES[0].1
        );
    }
}
