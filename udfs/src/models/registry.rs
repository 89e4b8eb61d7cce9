//! Each checkpoint is loaded once per process, device and precision, whatever the number of
//! sessions, queries and partitions that use it; a CLIP gets one forward thread (its
//! batcher).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::batcher::Batcher;
use super::device::DeviceSpec;
use super::precision::Precision;
use super::vlm_checkpoint::VlmCheckpoint;
use super::{ClipCheckpoint, ModelError, ModelResult};

/// Loaded models of one kind, by canonical directory, device and precision.
type Loaded<T> = Mutex<HashMap<(PathBuf, DeviceSpec, Precision), Arc<T>>>;

/// The model in `dir` on `device` from `loaded`, or `load`ed (from the canonical
/// directory) and kept there on first use.
fn once<T>(
    loaded: &Loaded<T>,
    dir: &Path,
    device: DeviceSpec,
    precision: Precision,
    load: impl FnOnce(&Path) -> ModelResult<T>,
) -> ModelResult<Arc<T>> {
    let key = dir
        .canonicalize()
        .map_err(|e| ModelError(format!("checkpoint '{}': {e}", dir.display())))?;
    let mut cache = loaded
        .lock()
        .map_err(|_| ModelError("model registry poisoned by a panic".into()))?;
    if let Some(model) = cache.get(&(key.clone(), device, precision)) {
        return Ok(Arc::clone(model));
    }
    let model = Arc::new(load(&key)?);
    cache.insert((key, device, precision), Arc::clone(&model));
    Ok(model)
}

/// The CLIP checkpoint in `dir` on `device` in `precision`, loaded on first use.
pub fn clip(dir: &Path, device: DeviceSpec, precision: Precision) -> ModelResult<Arc<Batcher>> {
    static LOADED: OnceLock<Loaded<Batcher>> = OnceLock::new();
    let mode = precision.mode(device)?;
    once(
        LOADED.get_or_init(Mutex::default),
        dir,
        device,
        precision,
        |key| {
            tracing::info!(checkpoint = %key.display(), %device, %precision, "loading CLIP checkpoint");
            let checkpoint = Arc::new(ClipCheckpoint::load_in(key, &device.open()?, mode)?);
            Batcher::start(checkpoint)
        },
    )
}

/// The refiner checkpoint in `dir` on `device`, loaded on first use. Callers run it on
/// their own threads: a row batch is already many sequences. Always in f32.
pub fn refiner(dir: &Path, device: DeviceSpec) -> ModelResult<Arc<VlmCheckpoint>> {
    static LOADED: OnceLock<Loaded<VlmCheckpoint>> = OnceLock::new();
    once(
        LOADED.get_or_init(Mutex::default),
        dir,
        device,
        Precision::F32,
        |key| {
            tracing::info!(checkpoint = %key.display(), %device, "loading refiner checkpoint");
            VlmCheckpoint::load(key, &device.open()?)
        },
    )
}
