//! Each checkpoint is loaded once per process, whatever the number of sessions, queries and
//! partitions that use it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::Device;

use super::{ClipCheckpoint, ModelError, ModelResult};

fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<ClipCheckpoint>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<ClipCheckpoint>>>> = OnceLock::new();
    LOADED.get_or_init(Mutex::default)
}

/// The CLIP checkpoint in `dir`, loaded on first use.
pub fn clip(dir: &Path) -> ModelResult<Arc<ClipCheckpoint>> {
    let key = dir
        .canonicalize()
        .map_err(|e| ModelError(format!("checkpoint '{}': {e}", dir.display())))?;
    let mut cache = loaded()
        .lock()
        .map_err(|_| ModelError("model registry poisoned by a panic".into()))?;
    if let Some(model) = cache.get(&key) {
        return Ok(Arc::clone(model));
    }
    tracing::info!(checkpoint = %key.display(), "loading CLIP checkpoint");
    let model = Arc::new(ClipCheckpoint::load(&key, &Device::Cpu)?);
    cache.insert(key, Arc::clone(&model));
    Ok(model)
}
