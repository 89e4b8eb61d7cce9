//! The models built into hqflow, so that every function works without registering one:
//!
//! - `hqflow-world-dfn` ([`DFN`]): a small CLIP trained by `hqflow-train fit` on the synthetic
//!   world's high-quality pairs (the role DFN's HQITP-350M plays), behind `dfn_score`,
//!   `clip_embed` and `clip_embed_text`. Recipe and quality: `udfs/models/world-dfn/README.md`.
//! - `hqflow-world-vlm` ([`VLM`]): the refiner `hqflow-train refiner` fine-tuned on world seed
//!   annotations (the role HQ-CLIP's fine-tuned Qwen2-VL plays), behind `lvlm_refine`.
//!   Recipe and quality: `udfs/models/world-vlm/README.md`.
//!
//! A checkpoint's files are compiled into the binary and written out, once per version, to
//! a directory under the user's cache (`$XDG_CACHE_HOME/hqflow/models/`, else
//! `~/.cache/hqflow/models/`, else the temp dir). From there it loads like any other
//! checkpoint directory, so the model registry, the output cache's fingerprints and
//! `hqflow-train --init` treat it as one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{ModelError, ModelResult};

/// A checkpoint compiled into the binary.
pub struct Embedded {
    /// The name it answers to, where no model of that name is registered.
    pub name: &'static str,
    /// Its directory's name under the cache, before the version.
    stem: &'static str,
    /// The files, as the trainer wrote them.
    files: &'static [(&'static str, &'static [u8])],
    version: OnceLock<String>,
    directory: OnceLock<Result<PathBuf, String>>,
}

/// The built-in CLIP: the default of `dfn_score` and the CLIP embedding functions.
pub static DFN: Embedded = Embedded {
    name: NAME,
    stem: "world-dfn",
    files: &[
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
    ],
    version: OnceLock::new(),
    directory: OnceLock::new(),
};

/// The built-in refiner: the default backend of `lvlm_refine`.
pub static VLM: Embedded = Embedded {
    name: VLM_NAME,
    stem: "world-vlm",
    files: &[
        (
            "config.json",
            include_bytes!("../../models/world-vlm/config.json"),
        ),
        (
            "preprocessor_config.json",
            include_bytes!("../../models/world-vlm/preprocessor_config.json"),
        ),
        (
            "tokenizer.json",
            include_bytes!("../../models/world-vlm/tokenizer.json"),
        ),
        (
            "tokenizer_config.json",
            include_bytes!("../../models/world-vlm/tokenizer_config.json"),
        ),
        (
            "model.safetensors",
            include_bytes!("../../models/world-vlm/model.safetensors"),
        ),
    ],
    version: OnceLock::new(),
    directory: OnceLock::new(),
};

/// The name the built-in CLIP answers to.
pub const NAME: &str = "hqflow-world-dfn";

/// The name the built-in refiner answers to.
pub const VLM_NAME: &str = "hqflow-world-vlm";

/// The built-in CLIP's version (see [`Embedded::version`]).
pub fn version() -> &'static str {
    DFN.version()
}

/// The built-in CLIP's directory (see [`Embedded::directory`]).
pub fn directory() -> ModelResult<PathBuf> {
    DFN.directory()
}

/// Written last: a directory with it holds every file whole.
const COMPLETE: &str = ".complete";

/// Writes the files (of `version`) into a fresh directory next to `target` and renames it
/// into place; a process that lost the race finds the winner's complete copy.
fn materialize(files: &[(&str, &[u8])], target: &Path, version: &str) -> std::io::Result<()> {
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
    for (name, bytes) in files {
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

impl Embedded {
    /// A short content hash of the files, naming the directory of this version; hashed
    /// once per process.
    pub fn version(&self) -> &str {
        self.version.get_or_init(|| {
            let mut hasher = blake3::Hasher::new();
            for (name, bytes) in self.files {
                hasher.update(name.as_bytes());
                hasher.update(&(bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
            hasher.finalize().to_hex()[..16].to_string()
        })
    }

    /// The checkpoint's directory, written out on first use.
    pub fn directory(&self) -> ModelResult<PathBuf> {
        self.directory
            .get_or_init(|| {
                let version = self.version();
                let target = crate::cache::user_cache_dir()
                    .unwrap_or_else(|| std::env::temp_dir().join("hqflow"))
                    .join("models")
                    .join(format!("{}-{version}", self.stem));
                materialize(self.files, &target, version)
                    .map(|()| target.clone())
                    .map_err(|e| {
                        format!(
                            "cannot write the built-in model '{}' to '{}': {e} (set \
                             XDG_CACHE_HOME to a writable directory, or register a model with -m)",
                            self.name,
                            target.display()
                        )
                    })
            })
            .clone()
            .map_err(ModelError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_complete_checkpoint_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("m");
        materialize(DFN.files, &target, "test").expect("written");
        for (name, bytes) in DFN.files {
            assert_eq!(std::fs::read(target.join(name)).expect(name), *bytes);
        }
        // A second call finds it complete and leaves it alone.
        std::fs::write(target.join("config.json"), b"changed").expect("write");
        materialize(DFN.files, &target, "test").expect("again");
        assert_eq!(
            std::fs::read(target.join("config.json")).expect("config"),
            b"changed"
        );
        // A copy without its marker (an interrupted write) is replaced.
        std::fs::remove_file(target.join(COMPLETE)).expect("remove");
        materialize(DFN.files, &target, "test").expect("repaired");
        assert_eq!(
            std::fs::read(target.join("config.json")).expect("config"),
            DFN.files[0].1
        );
    }
}
