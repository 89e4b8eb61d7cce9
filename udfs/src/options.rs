//! The `hqflow.*` session settings.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{DataFusionError, Result};

use crate::models::{DeviceSpec, Precision};

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

/// `lvlm_refine`'s prompt template: the default one, or a file the user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefinePrompt {
    /// The file it was read from (`None`: the built-in default).
    pub path: Option<String>,
    /// The template's text; `{alt_text}` marks where the row's alt-text goes.
    pub text: Arc<str>,
}

impl Default for RefinePrompt {
    fn default() -> Self {
        RefinePrompt {
            path: None,
            text: Arc::from(crate::models::openai_chat::DEFAULT_PROMPT),
        }
    }
}

impl RefinePrompt {
    /// Reads a template file; it must hold the `{alt_text}` slot.
    pub fn read(path: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_err(format!(
                "hqflow.refine.prompt: cannot read the prompt template '{path}': {e}"
            ))
        })?;
        let slot = crate::models::openai_chat::ALT_TEXT_SLOT;
        if !text.contains(slot) {
            return Err(config_err(format!(
                "hqflow.refine.prompt: the template '{path}' has no {slot} (where the row's \
                 alt-text goes)"
            )));
        }
        Ok(RefinePrompt {
            path: Some(path.to_string()),
            text: Arc::from(text),
        })
    }
}

/// How `lvlm_refine` talks to a chat-completions server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefineSettings {
    /// Requests in flight per backend, across all partitions and queries of the process.
    pub concurrency: usize,
    /// Limit on one request, in milliseconds.
    pub timeout_ms: u64,
    /// Extra tries after a timeout, a connection error, a 429 or a 5xx.
    pub retries: u32,
    /// The first retry's delay in milliseconds (doubling, with jitter; a 429's Retry-After
    /// wins).
    pub backoff_ms: u64,
    /// The longest answer asked for, in tokens.
    pub max_tokens: u32,
    /// The prompt template.
    pub prompt: RefinePrompt,
}

impl Default for RefineSettings {
    fn default() -> Self {
        RefineSettings {
            concurrency: 16,
            timeout_ms: 120_000,
            retries: 3,
            backoff_ms: 500,
            max_tokens: 1024,
            prompt: RefinePrompt::default(),
        }
    }
}

/// An integer setting within `range`, or an error naming it.
fn bounded<T>(key: &str, value: &str, range: std::ops::RangeInclusive<T>) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    match value.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(config_err(format!(
            "hqflow.{key} must be an integer from {} to {}, not '{value}'",
            range.start(),
            range.end()
        ))),
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
/// | `hqflow.precision` | CLIP models' number format: `f32` (default) or `bf16` (CPUs with AVX512-BF16) |
/// | `hqflow.cache_dir` | the model-output cache's directory; empty (the default) is off |
/// | `hqflow.refine.prompt` | `lvlm_refine`'s prompt template file (must hold `{alt_text}`); empty: the built-in one |
/// | `hqflow.refine.concurrency` | `lvlm_refine` requests in flight per backend (default 16) |
/// | `hqflow.refine.timeout_ms` | limit on one `lvlm_refine` request (default 120000) |
/// | `hqflow.refine.retries` | extra tries after a timeout, connection error, 429 or 5xx (default 3) |
/// | `hqflow.refine.backoff_ms` | the first retry's delay, doubling with jitter (default 500) |
/// | `hqflow.refine.max_tokens` | the longest answer asked for, in tokens (default 1024) |
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
    /// The number format CLIP models compute in.
    pub precision: Precision,
    /// The model-output cache's directory (`None`: no cache).
    pub cache_dir: Option<String>,
    /// How `lvlm_refine` talks to its backend.
    pub refine: RefineSettings,
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
            precision: Precision::F32,
            cache_dir: None,
            refine: RefineSettings::default(),
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
            "{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{}|{}|{:?}|{:?}",
            self.models,
            self.dfn_model,
            self.clip_model,
            self.refine_backend,
            self.on_error,
            self.model_batch,
            self.batch_wait_ms,
            self.device,
            self.precision,
            self.cache_dir,
            self.refine
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
            "refine.prompt" => {
                let value = value.trim();
                self.refine.prompt = if value.is_empty() {
                    RefinePrompt::default()
                } else {
                    RefinePrompt::read(value)?
                };
            }
            "refine.concurrency" => {
                self.refine.concurrency = bounded("refine.concurrency", value, 1..=1024)?;
            }
            "refine.timeout_ms" => {
                self.refine.timeout_ms = bounded("refine.timeout_ms", value, 1..=3_600_000)?;
            }
            "refine.retries" => self.refine.retries = bounded("refine.retries", value, 0..=20)?,
            "refine.backoff_ms" => {
                self.refine.backoff_ms = bounded("refine.backoff_ms", value, 0..=600_000)?;
            }
            "refine.max_tokens" => {
                self.refine.max_tokens = bounded("refine.max_tokens", value, 16..=131_072)?;
            }
            "cache_dir" => {
                let value = value.trim();
                self.cache_dir = (!value.is_empty()).then(|| value.to_string());
            }
            "device" => {
                self.device = DeviceSpec::parse(value)
                    .map_err(|e| config_err(format!("hqflow.device: {e}")))?;
            }
            "precision" => {
                self.precision = Precision::parse(value)
                    .map_err(|e| config_err(format!("hqflow.precision: {e}")))?;
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
                     hqflow.batch_wait_ms, hqflow.device, hqflow.precision, hqflow.cache_dir, hqflow.refine.prompt, \
                     hqflow.refine.concurrency, hqflow.refine.timeout_ms, hqflow.refine.retries, \
                     hqflow.refine.backoff_ms, hqflow.refine.max_tokens)"
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
                key: "hqflow.precision".into(),
                value: Some(self.precision.to_string()),
                description: "CLIP models' number format: f32 or bf16 (CPUs with AVX512-BF16)",
            },
            ConfigEntry {
                key: "hqflow.cache_dir".into(),
                value: self.cache_dir.clone(),
                description: "Directory of the model-output cache (empty: no cache)",
            },
            ConfigEntry {
                key: "hqflow.refine.prompt".into(),
                value: self.refine.prompt.path.clone(),
                description: "lvlm_refine's prompt template file, with {alt_text} (empty: the built-in one)",
            },
            ConfigEntry {
                key: "hqflow.refine.concurrency".into(),
                value: Some(self.refine.concurrency.to_string()),
                description: "lvlm_refine requests in flight per backend",
            },
            ConfigEntry {
                key: "hqflow.refine.timeout_ms".into(),
                value: Some(self.refine.timeout_ms.to_string()),
                description: "Milliseconds one lvlm_refine request may take",
            },
            ConfigEntry {
                key: "hqflow.refine.retries".into(),
                value: Some(self.refine.retries.to_string()),
                description: "Extra tries of an lvlm_refine request after a timeout, connection error, 429 or 5xx",
            },
            ConfigEntry {
                key: "hqflow.refine.backoff_ms".into(),
                value: Some(self.refine.backoff_ms.to_string()),
                description: "Milliseconds before the first retry (doubling, with jitter)",
            },
            ConfigEntry {
                key: "hqflow.refine.max_tokens".into(),
                value: Some(self.refine.max_tokens.to_string()),
                description: "The longest lvlm_refine answer asked for, in tokens",
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
    fn refine_settings_are_bounded_and_the_prompt_needs_its_slot() -> Result<()> {
        let mut o = HqflowOptions::default();
        assert!(o.refine.prompt.text.contains("{alt_text}"));
        o.set("refine.concurrency", "4")?;
        o.set("refine.timeout_ms", "250")?;
        o.set("refine.retries", "0")?;
        assert_eq!(
            (o.refine.concurrency, o.refine.timeout_ms, o.refine.retries),
            (4, 250, 0)
        );
        assert!(o.set("refine.concurrency", "0").is_err());
        assert!(o.set("refine.retries", "-1").is_err());
        let dir = tempfile::tempdir().map_err(|e| config_err(e.to_string()))?;
        let good = dir.path().join("good.txt");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&good, "Alt: {alt_text}").map_err(|e| config_err(e.to_string()))?;
        std::fs::write(&bad, "no slot").map_err(|e| config_err(e.to_string()))?;
        let good = good.to_str().expect("utf-8");
        o.set("refine.prompt", good)?;
        assert_eq!(&*o.refine.prompt.text, "Alt: {alt_text}");
        let listed = o
            .entries()
            .into_iter()
            .find(|e| e.key == "hqflow.refine.prompt")
            .and_then(|e| e.value);
        assert_eq!(listed.as_deref(), Some(good));
        let err = o
            .set("refine.prompt", bad.to_str().expect("utf-8"))
            .expect_err("a template without the slot is refused")
            .to_string();
        assert!(err.contains("{alt_text}"), "{err}");
        o.set("refine.prompt", "")?;
        assert_eq!(o.refine.prompt, RefinePrompt::default());
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
