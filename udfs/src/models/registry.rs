//! Each checkpoint is loaded once per process and device, whatever the number of sessions,
//! queries and partitions that use it, and gets one forward thread (its batcher).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::batcher::Batcher;
use super::device::DeviceSpec;
use super::vlm_checkpoint::VlmCheckpoint;
use super::{ClipCheckpoint, ModelError, ModelResult};

type Loaded = HashMap<(PathBuf, DeviceSpec), Arc<Batcher>>;

fn loaded() -> &'static Mutex<Loaded> {
    static LOADED: OnceLock<Mutex<Loaded>> = OnceLock::new();
    LOADED.get_or_init(Mutex::default)
}

/// The CLIP checkpoint in `dir` on `device`, loaded on first use.
pub fn clip(dir: &Path, device: DeviceSpec) -> ModelResult<Arc<Batcher>> {
    let key = dir
        .canonicalize()
        .map_err(|e| ModelError(format!("checkpoint '{}': {e}", dir.display())))?;
    let mut cache = loaded()
        .lock()
        .map_err(|_| ModelError("model registry poisoned by a panic".into()))?;
    if let Some(model) = cache.get(&(key.clone(), device)) {
        return Ok(Arc::clone(model));
    }
    tracing::info!(checkpoint = %key.display(), %device, "loading CLIP checkpoint");
    let checkpoint = Arc::new(ClipCheckpoint::load(&key, &device.open()?)?);
    let model = Arc::new(Batcher::start(checkpoint)?);
    cache.insert((key, device), Arc::clone(&model));
    Ok(model)
}

type LoadedRefiners = HashMap<(PathBuf, DeviceSpec), Arc<VlmCheckpoint>>;

fn loaded_refiners() -> &'static Mutex<LoadedRefiners> {
    static LOADED: OnceLock<Mutex<LoadedRefiners>> = OnceLock::new();
    LOADED.get_or_init(Mutex::default)
}

/// The refiner checkpoint in `dir` on `device`, loaded on first use. Callers run it on
/// their own threads: a row batch is already many sequences.
pub fn refiner(dir: &Path, device: DeviceSpec) -> ModelResult<Arc<VlmCheckpoint>> {
    let key = dir
        .canonicalize()
        .map_err(|e| ModelError(format!("checkpoint '{}': {e}", dir.display())))?;
    let mut cache = loaded_refiners()
        .lock()
        .map_err(|_| ModelError("model registry poisoned by a panic".into()))?;
    if let Some(model) = cache.get(&(key.clone(), device)) {
        return Ok(Arc::clone(model));
    }
    tracing::info!(checkpoint = %key.display(), %device, "loading refiner checkpoint");
    let model = Arc::new(VlmCheckpoint::load(&key, &device.open()?)?);
    cache.insert((key, device), Arc::clone(&model));
    Ok(model)
}
