//! Each checkpoint is loaded once per process and device, whatever the number of sessions,
//! queries and partitions that use it; a CLIP gets one forward thread (its batcher).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::batcher::Batcher;
use super::device::DeviceSpec;
use super::vlm_checkpoint::VlmCheckpoint;
use super::{ClipCheckpoint, ModelError, ModelResult};

/// Loaded models of one kind, by canonical directory and device.
type Loaded<T> = Mutex<HashMap<(PathBuf, DeviceSpec), Arc<T>>>;

/// The model in `dir` on `device` from `loaded`, or `load`ed (from the canonical
/// directory) and kept there on first use.
fn once<T>(
    loaded: &Loaded<T>,
    dir: &Path,
    device: DeviceSpec,
    load: impl FnOnce(&Path) -> ModelResult<T>,
) -> ModelResult<Arc<T>> {
    let key = dir
        .canonicalize()
        .map_err(|e| ModelError(format!("checkpoint '{}': {e}", dir.display())))?;
    let mut cache = loaded
        .lock()
        .map_err(|_| ModelError("model registry poisoned by a panic".into()))?;
    if let Some(model) = cache.get(&(key.clone(), device)) {
        return Ok(Arc::clone(model));
    }
    let model = Arc::new(load(&key)?);
    cache.insert((key, device), Arc::clone(&model));
    Ok(model)
}

/// The CLIP checkpoint in `dir` on `device`, loaded on first use.
pub fn clip(dir: &Path, device: DeviceSpec) -> ModelResult<Arc<Batcher>> {
    static LOADED: OnceLock<Loaded<Batcher>> = OnceLock::new();
    once(LOADED.get_or_init(Mutex::default), dir, device, |key| {
        tracing::info!(checkpoint = %key.display(), %device, "loading CLIP checkpoint");
        let checkpoint = Arc::new(ClipCheckpoint::load(key, &device.open()?)?);
        Batcher::start(checkpoint)
    })
}

/// The refiner checkpoint in `dir` on `device`, loaded on first use. Callers run it on
/// their own threads: a row batch is already many sequences.
pub fn refiner(dir: &Path, device: DeviceSpec) -> ModelResult<Arc<VlmCheckpoint>> {
    static LOADED: OnceLock<Loaded<VlmCheckpoint>> = OnceLock::new();
    once(LOADED.get_or_init(Mutex::default), dir, device, |key| {
        tracing::info!(checkpoint = %key.display(), %device, "loading refiner checkpoint");
        VlmCheckpoint::load(key, &device.open()?)
    })
}
