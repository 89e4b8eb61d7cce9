//! The `hqflow.*` session settings.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{DataFusionError, Result};

use crate::models::DeviceSpec;

/// What a model function does with a row it cannot compute (undecodable image, failed backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// The row's result is NULL and the error is counted and reported (the default).
    #[default]
    Null,
    /// The query fails with the row's error.
    Fail,
}

impl fmt::Display for OnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnError::Null => "null",
            OnError::Fail => "fail",
        })
    }
}

/// Where a registered model lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    /// A local checkpoint directory (HF layout: `config.json`, `model.safetensors`, …).
    Directory(String),
    /// An HTTP(S) endpoint, e.g. an OpenAI-compatible server `http://host:port/v1?model=ID`.
    Endpoint(String),
}

impl ModelLocation {
    /// Parses and checks a location: an `http(s)://` URL, or a directory that exists.
    pub fn parse(value: &str) -> Result<Self> {
        let value = value.trim();
        if value.is_empty() {
            return Err(config_err("a model location must not be empty".to_string()));
        }
        if value.starts_with("http://") || value.starts_with("https://") {
            return Ok(ModelLocation::Endpoint(value.to_string()));
        }
        if value.contains("://") {
            return Err(config_err(format!(
                "model location '{value}' is neither a local directory nor an http(s) URL"
            )));
        }
        let path = Path::new(value);
        if !path.exists() {
            return Err(config_err(format!(
                "model directory '{value}' does not exist"
            )));
        }
        if !path.is_dir() {
            return Err(config_err(format!(
                "model location '{value}' is a file; a checkpoint is a directory \
                 (config.json, model.safetensors, tokenizer.json)"
            )));
        }
        Ok(ModelLocation::Directory(value.to_string()))
    }

    /// The location as the user wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            ModelLocation::Directory(s) | ModelLocation::Endpoint(s) => s,
        }
    }
}

/// hqflow's session settings, under the `hqflow.` prefix.
///
/// | key | value |
/// |---|---|
/// | `hqflow.model.NAME` | a checkpoint directory or an `http(s)://` endpoint, registered as NAME |
/// | `hqflow.dfn_model` | the model `dfn_score` uses without a model argument |
/// | `hqflow.clip_model` | the model `clip_embed`/`clip_embed_text` use without a model argument |
/// | `hqflow.refine_backend` | the backend `lvlm_refine` uses without a backend argument |
/// | `hqflow.on_error` | `null` (default: NULL plus a counted error) or `fail` |
/// | `hqflow.model_batch` | rows per forward pass of a model (default 32) |
/// | `hqflow.batch_wait_ms` | how long a row may wait for others to fill a batch (default 5) |
/// | `hqflow.device` | where models run: `cpu` (default), `cuda[:N]`, `metal[:N]` |
/// | `hqflow.cache_dir` | the model-output cache's directory; empty (the default) is off |
#[derive(Debug, Clone)]
pub struct HqflowOptions {
    /// Registered models by name.
    pub models: BTreeMap<String, ModelLocation>,
    /// Default model name for `dfn_score`.
    pub dfn_model: Option<String>,
    /// Default model name for the CLIP embedding functions.
    pub clip_model: Option<String>,
    /// Default backend name for `lvlm_refine`.
    pub refine_backend: Option<String>,
    /// Per-row error policy.
    pub on_error: OnError,
    /// Rows per forward pass.
    pub model_batch: usize,
    /// How long a row may wait for others before a partial batch runs, in milliseconds.
    pub batch_wait_ms: u64,
    /// Where models run.
    pub device: DeviceSpec,
    /// The model-output cache's directory (`None`: no cache).
    pub cache_dir: Option<String>,
    /// The session's per-row error tally (shared by clones of these options).
    pub errors: Arc<crate::errors::RowErrors>,
    /// The session's cache hits and misses (shared by clones of these options).
    pub cache_counts: Arc<crate::cache::CacheCounts>,
}

impl Default for HqflowOptions {
    fn default() -> Self {
        HqflowOptions {
            models: BTreeMap::new(),
            dfn_model: None,
            clip_model: None,
            refine_backend: None,
            on_error: OnError::Null,
            model_batch: 32,
            batch_wait_ms: 5,
            device: DeviceSpec::Cpu,
            cache_dir: None,
            errors: Arc::default(),
            cache_counts: Arc::default(),
        }
    }
}

impl ConfigExtension for HqflowOptions {
    const PREFIX: &'static str = "hqflow";
}

fn config_err(msg: String) -> DataFusionError {
    DataFusionError::Configuration(msg)
}

/// Model names are SQL-friendly identifiers, so they can be passed as string literals
/// and used as keys without quoting surprises.
pub fn check_model_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(config_err(format!(
            "invalid model name '{name}': use letters, digits, '_' or '-', starting with a letter or '_'"
        )))
    }
}

fn optional_name(value: &str) -> Result<Option<String>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    check_model_name(value)?;
    Ok(Some(value.to_string()))
}

impl HqflowOptions {
    /// The options in `config` (defaults when the `hqflow` namespace was not added).
    pub fn from_config(config: &datafusion::common::config::ConfigOptions) -> Self {
        config
            .extensions
            .get::<HqflowOptions>()
            .cloned()
            .unwrap_or_default()
    }

    /// What the model functions depend on, for telling configurations apart.
    pub fn model_fingerprint(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{}|{:?}",
            self.models,
            self.dfn_model,
            self.clip_model,
            self.refine_backend,
            self.on_error,
            self.model_batch,
            self.batch_wait_ms,
            self.device,
            self.cache_dir
        )
    }

    /// The registered location of model `name`, or an error that lists what is registered.
    pub fn model(&self, name: &str) -> Result<&ModelLocation> {
        self.models.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            DataFusionError::Plan(format!(
                "model '{name}' is not registered (registered: {}); register it with \
                 `hqflow sql -m {name}=DIR` or `SET hqflow.model.{name} = 'DIR'`",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }
}

impl ExtensionOptions for HqflowOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some(name) = key.strip_prefix("model.") {
            check_model_name(name)?;
            if value.trim().is_empty() {
                self.models.remove(name);
            } else {
                let location = ModelLocation::parse(value)
                    .map_err(|e| config_err(format!("hqflow.model.{name}: {}", e.message())))?;
                self.models.insert(name.to_string(), location);
            }
            return Ok(());
        }
        match key {
            "dfn_model" => self.dfn_model = optional_name(value)?,
            "clip_model" => self.clip_model = optional_name(value)?,
            "refine_backend" => self.refine_backend = optional_name(value)?,
            "model_batch" => {
                self.model_batch = match value.trim().parse::<usize>() {
                    Ok(n) if (1..=4096).contains(&n) => n,
                    _ => {
                        return Err(config_err(format!(
                            "hqflow.model_batch must be an integer from 1 to 4096, not '{value}'"
                        )));
                    }
                }
            }
            "batch_wait_ms" => {
                self.batch_wait_ms = match value.trim().parse::<u64>() {
                    Ok(n) if n <= 60_000 => n,
                    _ => {
                        return Err(config_err(format!(
                            "hqflow.batch_wait_ms must be an integer from 0 to 60000, not '{value}'"
                        )));
                    }
                }
            }
            "cache_dir" => {
                let value = value.trim();
                self.cache_dir = (!value.is_empty()).then(|| value.to_string());
            }
            "device" => {
                self.device = DeviceSpec::parse(value)
                    .map_err(|e| config_err(format!("hqflow.device: {e}")))?;
            }
            "on_error" => {
                self.on_error = match value.trim().to_ascii_lowercase().as_str() {
                    "null" => OnError::Null,
                    "fail" => OnError::Fail,
                    other => {
                        return Err(config_err(format!(
                            "hqflow.on_error must be 'null' or 'fail', not '{other}'"
                        )));
                    }
                }
            }
            _ => {
                return Err(config_err(format!(
                    "unknown setting 'hqflow.{key}' (known: hqflow.model.NAME, hqflow.dfn_model, \
                     hqflow.clip_model, hqflow.refine_backend, hqflow.on_error, hqflow.model_batch, \
                     hqflow.batch_wait_ms, hqflow.device, hqflow.cache_dir)"
                )));
            }
        }
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        let mut entries = vec![
            ConfigEntry {
                key: "hqflow.dfn_model".into(),
                value: self.dfn_model.clone(),
                description: "Model used by dfn_score without a model argument",
            },
            ConfigEntry {
                key: "hqflow.clip_model".into(),
                value: self.clip_model.clone(),
                description: "Model used by clip_embed and clip_embed_text without a model argument",
            },
            ConfigEntry {
                key: "hqflow.refine_backend".into(),
                value: self.refine_backend.clone(),
                description: "Backend used by lvlm_refine without a backend argument",
            },
            ConfigEntry {
                key: "hqflow.on_error".into(),
                value: Some(self.on_error.to_string()),
                description: "Per-row model errors: 'null' (NULL plus a counted error) or 'fail'",
            },
            ConfigEntry {
                key: "hqflow.model_batch".into(),
                value: Some(self.model_batch.to_string()),
                description: "Rows per forward pass of a model",
            },
            ConfigEntry {
                key: "hqflow.batch_wait_ms".into(),
                value: Some(self.batch_wait_ms.to_string()),
                description: "Milliseconds a row may wait for others to fill a model batch",
            },
            ConfigEntry {
                key: "hqflow.device".into(),
                value: Some(self.device.to_string()),
                description: "Where models run: cpu, cuda[:N] or metal[:N]",
            },
            ConfigEntry {
                key: "hqflow.cache_dir".into(),
                value: self.cache_dir.clone(),
                description: "Directory of the model-output cache (empty: no cache)",
            },
        ];
        entries.extend(self.models.iter().map(|(name, location)| ConfigEntry {
            key: format!("hqflow.model.{name}"),
            value: Some(location.as_str().to_string()),
            description: "A registered model: checkpoint directory or endpoint",
        }));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_registration_checks_name_and_location() -> Result<()> {
        let dir = std::env::temp_dir();
        let dir = dir.to_str().expect("temp dir is UTF-8");
        let mut o = HqflowOptions::default();
        o.set("model.tiny", dir)?;
        assert_eq!(o.model("tiny")?.as_str(), dir);
        o.set("model.remote", "http://127.0.0.1:8000/v1?model=qwen")?;
        assert!(matches!(o.model("remote")?, ModelLocation::Endpoint(_)));
        assert!(o.set("model.bad name", dir).is_err());
        let missing = o
            .set("model.x", "/no/such/checkpoint")
            .expect_err("must fail")
            .to_string();
        assert!(missing.contains("/no/such/checkpoint"), "{missing}");
        let unknown = o.model("nope").expect_err("must fail").to_string();
        assert!(unknown.contains("remote, tiny"), "{unknown}");
        o.set("model.tiny", "")?;
        assert!(o.model("tiny").is_err());
        Ok(())
    }

    #[test]
    fn on_error_accepts_only_null_or_fail() -> Result<()> {
        let mut o = HqflowOptions::default();
        o.set("on_error", "FAIL")?;
        assert_eq!(o.on_error, OnError::Fail);
        assert!(o.set("on_error", "ignore").is_err());
        assert!(o.set("no_such_key", "1").is_err());
        Ok(())
    }
}
