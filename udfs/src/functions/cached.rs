//! How model functions use the model-output cache: every row is looked up by the hash of
//! its inputs, only the misses reach the model, and what was computed is stored. Rows that
//! failed are not stored, so their errors are counted again on every run.

use std::path::Path;
use std::sync::Arc;

use datafusion::common::Result;

use crate::cache::{self, Key, OutputCache};
use crate::models::Precision;
use crate::models::fingerprint::{CLIP_FILES, checkpoint_fingerprint};
use crate::options::HqflowOptions;

/// The cache one call uses: the store and the model's fingerprint.
pub struct RowCache {
    store: Arc<OutputCache>,
    fingerprint: String,
}

/// The cache for a call on the CLIP checkpoint in `checkpoint_dir`, when the session has one
/// (`hqflow.cache_dir`). A cache that cannot be opened is reported once per session and
/// the call computes without it. Outputs computed in bf16 are kept apart from f32's (they
/// differ by about 1e-3), under the checkpoint's fingerprint with `-bf16` appended.
pub fn row_cache(options: &HqflowOptions, checkpoint_dir: &Path) -> Option<RowCache> {
    let variant = match options.precision {
        Precision::F32 => None,
        Precision::Bf16 => Some("bf16"),
    };
    variant_cache(options, checkpoint_dir, CLIP_FILES, variant)
}

/// The cache for a call on the checkpoint in `checkpoint_dir` whose outputs `files` decide.
pub fn checkpoint_cache(
    options: &HqflowOptions,
    checkpoint_dir: &Path,
    files: &[&str],
) -> Option<RowCache> {
    variant_cache(options, checkpoint_dir, files, None)
}

/// As [`checkpoint_cache`], with outputs of a `variant` of the model (a number format) kept
/// under the checkpoint's fingerprint with `-variant` appended.
fn variant_cache(
    options: &HqflowOptions,
    checkpoint_dir: &Path,
    files: &[&str],
    variant: Option<&str>,
) -> Option<RowCache> {
    open_row_cache(options, |store| {
        let fingerprint = checkpoint_fingerprint(checkpoint_dir, files, Some(store))
            .map_err(|e| e.to_string())?;
        let description = checkpoint_dir.display().to_string();
        Ok(match variant {
            None => (fingerprint, description),
            Some(v) => (format!("{fingerprint}-{v}"), format!("{description} ({v})")),
        })
    })
}

/// The cache for a call on a model that is not a checkpoint directory (a server), under a
/// fingerprint the caller took of what decides its outputs; `description` says what that
/// is in `hqflow cache stats`.
pub fn fingerprint_cache(
    options: &HqflowOptions,
    fingerprint: &str,
    description: &str,
) -> Option<RowCache> {
    open_row_cache(options, |_| {
        Ok((fingerprint.to_string(), description.to_string()))
    })
}

fn open_row_cache(
    options: &HqflowOptions,
    identify: impl FnOnce(&OutputCache) -> std::result::Result<(String, String), String>,
) -> Option<RowCache> {
    let dir = options.cache_dir.as_deref()?;
    let opened = cache::open(Path::new(dir))
        .map_err(|e| e.to_string())
        .and_then(|store| {
            let (fingerprint, description) = identify(&store)?;
            store
                .describe_model(&fingerprint, &description)
                .map_err(|e| e.to_string())?;
            Ok(RowCache { store, fingerprint })
        });
    match opened {
        Ok(cache) => Some(cache),
        Err(e) => {
            warn_once(options, &e);
            None
        }
    }
}

fn warn_once(options: &HqflowOptions, error: &str) {
    if options.cache_counts.first_failure() {
        tracing::warn!("computing without the model-output cache: {error}");
    }
}

/// One output per row: stored outputs where the cache has them; the rest from `compute`,
/// which gets a mask of the rows it must compute (rows without a key are never asked for
/// and stay `None`). Computed outputs are stored in one commit.
pub fn through_cache<T: Clone>(
    function: &str,
    options: &HqflowOptions,
    cache: Option<&RowCache>,
    keys: &[Option<Key>],
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Option<T>,
    compute: impl FnOnce(&[bool]) -> Result<Vec<Option<T>>>,
) -> Result<Vec<Option<T>>> {
    let Some(cache) = cache else {
        let all: Vec<bool> = keys.iter().map(Option::is_some).collect();
        return compute(&all);
    };
    let stored = match cache.store.get_many(function, &cache.fingerprint, keys) {
        Ok(stored) => stored,
        Err(e) => {
            warn_once(options, &e.to_string());
            vec![None; keys.len()]
        }
    };
    let mut outputs: Vec<Option<T>> = stored
        .iter()
        .map(|bytes| bytes.as_deref().and_then(&decode))
        .collect();
    let missing: Vec<bool> = keys
        .iter()
        .zip(&outputs)
        .map(|(key, output)| key.is_some() && output.is_none())
        .collect();
    let hits = keys.iter().filter(|k| k.is_some()).count() - missing.iter().filter(|m| **m).count();
    let mut computed = 0;
    if missing.iter().any(|m| *m) {
        let fresh = compute(&missing)?;
        // Rows with the same inputs (duplicate images are common in web pools) may land in
        // different micro-batches and differ in the last bits: the first one computed is
        // stored and answers all of them, as the cache will on every later run.
        let mut first: std::collections::HashMap<Key, T> = std::collections::HashMap::new();
        let mut entries = Vec::new();
        for (row, output) in fresh.into_iter().enumerate() {
            if !missing[row] {
                continue;
            }
            if let (Some(output), Some(key)) = (output, keys[row]) {
                let output = first
                    .entry(key)
                    .or_insert_with(|| {
                        entries.push((key, encode(&output)));
                        output
                    })
                    .clone();
                outputs[row] = Some(output);
                computed += 1;
            }
        }
        if let Err(e) = cache.store.put_many(function, &cache.fingerprint, &entries) {
            warn_once(options, &e.to_string());
        }
    }
    options
        .cache_counts
        .record(function, hits as u64, computed as u64);
    Ok(outputs)
}

/// f32 values as little-endian bytes.
pub fn encode_f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian bytes as f32 values (`None` when the length is not a multiple of 4).
pub fn decode_f32s(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}
