//! An OpenAI-compatible chat-completions client that asks a vision-language model for the
//! four HQ-CLIP texts of an image (no SQL here). vLLM, SGLang, Ollama, llama.cpp's server and
//! OpenAI's API all speak this protocol.
//!
//! One request per row: `POST {base}/chat/completions` with the image as a base64 data URL
//! and the prompt template filled with the row's alt-text, asking for a JSON object (a JSON
//! schema where the server supports it, else JSON mode, else nothing; what a backend refused is
//! remembered for the process). The answer is parsed strictly into a [`Refinement`].
//!
//! Requests run on a small process-wide tokio runtime of this module's own, whatever runtime
//! (or none) the caller is on: the HTTP connection pool lives as long as its runtime, and
//! DataFusion's runtime, a test's runtime or no runtime at all then behave the same. The
//! calling thread waits; on a multi-threaded runtime inside `block_in_place`, so the worker's
//! other tasks move on. In-flight requests are bounded per backend across all callers (the
//! partitions of a query, concurrent queries), and every answer is put back on its own row.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{ModelError, ModelResult};

/// The built-in prompt template (`udfs/prompts/refine.txt`).
pub const DEFAULT_PROMPT: &str = include_str!("../../prompts/refine.txt");

/// Where a prompt template takes the row's alt-text.
pub const ALT_TEXT_SLOT: &str = "{alt_text}";

/// Environment variables read for the API key, in this order. Keys are never taken from the
/// command line or settings, and never appear in messages.
pub const API_KEY_VARS: [&str; 2] = ["HQFLOW_API_KEY", "OPENAI_API_KEY"];

/// Alt-texts longer than this (in characters) are cut: web junk can be kilobytes long.
const MAX_ALT_TEXT_CHARS: usize = 2000;

/// Extra tries of a row whose answer was not a valid refinement.
const INVALID_ANSWER_RETRIES: u32 = 2;

/// Temperature of the first try (greedy) and of tries after an invalid answer (a greedy
/// decode would repeat the same mistake).
const TEMPERATURES: [f64; 2] = [0.0, 0.7];

/// Answers longer than this are refused, not read into memory.
const MAX_BODY_BYTES: usize = 4 << 20;

/// The longest wait between tries, whatever backoff or Retry-After say.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// The four texts HQ-CLIP's LVLM writes for an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refinement {
    /// A long description of what the image shows.
    pub long_pos: String,
    /// A long description that is plausible but wrong about the image.
    pub long_neg: String,
    /// Short tags of what is in the image.
    pub short_pos: Vec<String>,
    /// Short tags of what is plausible but not in the image.
    pub short_neg: Vec<String>,
}

impl Refinement {
    /// As stored in the model-output cache: a JSON object.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored refinement (`None` when the bytes are not a valid one).
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        validate(&value).ok()
    }
}

/// A chat-completions server and the model it serves, from
/// `http(s)://HOST[:PORT]/PATH?model=MODEL_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The API base (e.g. `http://localhost:8000/v1`), without query or trailing slash.
    base: Url,
    model: String,
}

/// `location` with any `user:password@` removed, for messages about a URL that did not parse.
fn without_userinfo(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => location.to_string(),
    }
}

impl Endpoint {
    /// Parses a backend location; the query must name the model (`?model=ID`) and nothing else.
    pub fn parse(location: &str) -> ModelResult<Self> {
        let shown = without_userinfo(location.trim());
        let bad = |why: String| {
            ModelError(format!(
                "'{shown}' is not a chat-completions backend: {why} (expected \
                 http(s)://HOST:PORT/v1?model=MODEL_ID)"
            ))
        };
        let mut url = Url::parse(location.trim()).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("the scheme is '{}'", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("it names no host".to_string()));
        }
        let mut model = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "model" if model.is_none() => model = Some(value.trim().to_string()),
                "model" => return Err(bad("model= is given twice".to_string())),
                other => return Err(bad(format!("unknown parameter '{other}'"))),
            }
        }
        let model = match model {
            Some(m) if !m.is_empty() => m,
            Some(_) => return Err(bad("model= is empty".to_string())),
            None => return Err(bad("it names no model (add ?model=MODEL_ID)".to_string())),
        };
        url.set_query(None);
        url.set_fragment(None);
        let path = url.path().trim_end_matches('/').to_string();
        url.set_path(&path);
        Ok(Endpoint { base: url, model })
    }

    /// The model id sent with every request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The API base without credentials, for messages and fingerprints.
    pub fn base_display(&self) -> String {
        let mut url = self.base.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.as_str().trim_end_matches('/').to_string()
    }

    /// `BASE (model ID)`, for messages.
    pub fn describe(&self) -> String {
        format!("{} (model {})", self.base_display(), self.model)
    }

    fn chat_url(&self) -> Url {
        let mut url = self.base.clone();
        let path = format!(
            "{}/chat/completions",
            self.base.path().trim_end_matches('/')
        );
        url.set_path(&path);
        url
    }

    /// A fingerprint (32 hex digits) of what decides this backend's answers: the server, the
    /// model and the prompt template. The model-output cache keeps answers under it.
    pub fn fingerprint(&self, prompt_template: &str) -> String {
        let mut hasher = blake3::Hasher::new();
        for part in [
            "openai-chat/lvlm_refine/1",
            &self.base_display(),
            &self.model,
            prompt_template,
        ] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().to_hex().as_str()[..32].to_string()
    }
}

/// The API key from the environment: (variable, value), the first of [`API_KEY_VARS`] that
/// is set and not empty.
pub fn api_key_from_env() -> Option<(&'static str, String)> {
    API_KEY_VARS.iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| (*var, v))
    })
}

/// The image type from its first bytes: JPEG, PNG, WebP, GIF or BMP.
pub fn image_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 14 && bytes.starts_with(b"BM") {
        Some("image/bmp")
    } else {
        None
    }
}

/// The prompt for one row: the template with the alt-text in its slot (cut to
/// [`MAX_ALT_TEXT_CHARS`]).
pub fn render_prompt(template: &str, alt_text: &str) -> String {
    let alt_text = match alt_text.char_indices().nth(MAX_ALT_TEXT_CHARS) {
        Some((cut, _)) => &alt_text[..cut],
        None => alt_text,
    };
    template.replace(ALT_TEXT_SLOT, alt_text.trim())
}

/// The JSON schema of an answer.
pub fn answer_schema() -> Value {
    let text = json!({"type": "string"});
    let tags = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "properties": {
            "long_pos": text,
            "long_neg": text,
            "short_pos": tags,
            "short_neg": tags,
        },
        "required": ["long_pos", "long_neg", "short_pos", "short_neg"],
        "additionalProperties": false,
    })
}

/// How the answer's shape is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `{"type": "json_schema", …}` with [`answer_schema`].
    JsonSchema = 0,
    /// `{"type": "json_object"}` (JSON mode).
    JsonObject = 1,
    /// No `response_format`: the prompt alone asks for JSON.
    Prompt = 2,
}

impl ResponseFormat {
    fn from_u8(n: u8) -> Self {
        match n {
            0 => ResponseFormat::JsonSchema,
            1 => ResponseFormat::JsonObject,
            _ => ResponseFormat::Prompt,
        }
    }

    fn request_value(self) -> Option<Value> {
        match self {
            ResponseFormat::JsonSchema => Some(json!({
                "type": "json_schema",
                "json_schema": {"name": "refinement", "strict": true, "schema": answer_schema()},
            })),
            ResponseFormat::JsonObject => Some(json!({"type": "json_object"})),
            ResponseFormat::Prompt => None,
        }
    }
}

/// The request body for one try.
fn request_body(
    model: &str,
    prompt: &str,
    image_url: &str,
    format: ResponseFormat,
    max_tokens: u32,
    temperature: f64,
) -> Vec<u8> {
    let mut body = json!({
        "model": model,
        "messages": [{
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": prompt},
            ],
        }],
        "max_tokens": max_tokens,
        "temperature": temperature,
    });
    if let (Some(format), Some(map)) = (format.request_value(), body.as_object_mut()) {
        map.insert("response_format".to_string(), format);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The end of the first balanced `{…}` starting at `text[start]` (which is `{`), string-aware.
fn balanced_object_end(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(start + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Parses a model's answer into a refinement: the whole answer as JSON, else the first
/// balanced JSON object in it that is a valid refinement (models wrap JSON in ```json
/// fences or prose). Strict: the four fields with their types, no empty text.
pub fn parse_answer(content: &str) -> Result<Refinement, String> {
    let content = content.trim();
    if let Ok(value) = serde_json::from_str::<Value>(content) {
        return validate(&value);
    }
    let mut first_error = None;
    for (start, _) in content.match_indices('{') {
        let Some(end) = balanced_object_end(content, start) else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&content[start..end]) else {
            continue;
        };
        match validate(&value) {
            Ok(refinement) => return Ok(refinement),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error
        .unwrap_or_else(|| format!("no JSON object in the answer: {}", snippet(content))))
}

fn validate(value: &Value) -> Result<Refinement, String> {
    let Some(object) = value.as_object() else {
        return Err("the answer is JSON but not an object".to_string());
    };
    let text = |key: &str| -> Result<String, String> {
        match object.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(Value::String(_)) => Err(format!("{key} is empty")),
            Some(other) => Err(format!(
                "{key} is not a string: {}",
                snippet(&other.to_string())
            )),
            None => Err(format!("{key} is missing")),
        }
    };
    let tags = |key: &str| -> Result<Vec<String>, String> {
        let Some(value) = object.get(key) else {
            return Err(format!("{key} is missing"));
        };
        let Some(items) = value.as_array() else {
            return Err(format!(
                "{key} is not a list: {}",
                snippet(&value.to_string())
            ));
        };
        if items.is_empty() {
            return Err(format!("{key} is empty"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Value::String(_) => Err(format!("{key}[{i}] is empty")),
                other => Err(format!("{key}[{i}] is not a string: {other}")),
            })
            .collect()
    };
    Ok(Refinement {
        long_pos: text("long_pos")?,
        long_neg: text("long_neg")?,
        short_pos: tags("short_pos")?,
        short_neg: tags("short_neg")?,
    })
}

/// The first characters of `text`, for messages.
fn snippet(text: &str) -> String {
    const CHARS: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The assistant's text in a chat-completions response (`content` as a string or as parts).
fn completion_text(body: &[u8]) -> Result<(String, Option<String>), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the response is not JSON ({e}): {}",
            snippet(&String::from_utf8_lossy(body))
        )
    })?;
    let choice = value.get("choices").and_then(|c| c.get(0)).ok_or_else(|| {
        format!(
            "the response has no choices: {}",
            snippet(&value.to_string())
        )
    })?;
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let content = choice.get("message").and_then(|m| m.get("content"));
    let text = match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => {
            return Err(format!(
                "the response's message has no text content: {}",
                snippet(&choice.to_string())
            ));
        }
    };
    Ok((text, finish))
}

/// How a batch of rows is sent.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Requests in flight per backend, across all callers in the process.
    pub concurrency: usize,
    /// Limit on one request (connecting, sending, the whole answer).
    pub timeout: Duration,
    /// Extra tries after a timeout, a connection error, a 429 or a 5xx.
    pub retries: u32,
    /// The first retry's delay (doubling per try, with jitter).
    pub backoff: Duration,
    /// `max_tokens` of each request.
    pub max_tokens: u32,
    /// Stop sending once a row has failed (its error will fail the query).
    pub stop_at_first_failure: bool,
}

/// A row's input.
#[derive(Debug, Clone, Copy)]
pub struct RowInput<'a> {
    /// Encoded image bytes.
    pub image: &'a [u8],
    /// The alt-text.
    pub alt_text: &'a str,
}

/// Why a row has no refinement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Stable, for counting: `not an image`, `timed out`, `connection failed`,
    /// `rate limited`, `server error`, `request rejected`, `invalid answer`.
    pub reason: &'static str,
    /// What happened, for the first few rows of each reason.
    pub detail: String,
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// The backend's valid answer.
    Refined(Refinement),
    /// The row failed after the tries it was allowed.
    Failed(RowError),
    /// Not sent: no input, or the call stopped early.
    Skipped,
}

/// A backend's state shared by every caller in the process.
struct BackendState {
    /// The [`ResponseFormat`] to use; only ever moves down the list.
    format: AtomicU8,
    /// Whether a request has been answered (so the credentials are accepted).
    answered: AtomicBool,
    /// The in-flight limit and its permits.
    permits: Mutex<(usize, Arc<Semaphore>)>,
}

impl BackendState {
    fn permits(&self, concurrency: usize) -> Arc<Semaphore> {
        let Ok(mut permits) = self.permits.lock() else {
            return Arc::new(Semaphore::new(concurrency));
        };
        if permits.0 != concurrency {
            *permits = (concurrency, Arc::new(Semaphore::new(concurrency)));
        }
        Arc::clone(&permits.1)
    }

    fn format(&self) -> ResponseFormat {
        ResponseFormat::from_u8(self.format.load(Ordering::Relaxed))
    }

    /// After a refusal of `refused`: the next format down, unless another caller has already
    /// moved on. `false` when there is none left.
    fn fall_back_from(&self, refused: ResponseFormat) -> bool {
        if refused == ResponseFormat::Prompt {
            return false;
        }
        let _ = self.format.compare_exchange(
            refused as u8,
            refused as u8 + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        true
    }
}

fn backend_state(endpoint: &Endpoint) -> Arc<BackendState> {
    static STATES: OnceLock<Mutex<HashMap<String, Arc<BackendState>>>> = OnceLock::new();
    let key = format!("{}\u{0}{}", endpoint.chat_url(), endpoint.model);
    let fresh = || {
        Arc::new(BackendState {
            format: AtomicU8::new(ResponseFormat::JsonSchema as u8),
            answered: AtomicBool::new(false),
            permits: Mutex::new((0, Arc::new(Semaphore::new(0)))),
        })
    };
    let Ok(mut states) = STATES.get_or_init(Mutex::default).lock() else {
        return fresh();
    };
    Arc::clone(states.entry(key).or_insert_with(fresh))
}

/// The runtime requests run on (two I/O threads; started on first use).
fn runtime() -> ModelResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("hqflow-http")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ModelError(format!("cannot start the HTTP runtime: {e}")))
}

fn http_client() -> ModelResult<&'static reqwest::Client> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("hqflow/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ModelError(format!("cannot build the HTTP client: {e}")))
}

/// Runs `work` on this module's runtime and waits for it, from any thread: a tokio worker
/// (inside `block_in_place`), a current-thread runtime (from a helper thread, since that
/// runtime's only thread cannot block on another runtime), or no runtime at all.
fn run_blocking<F>(work: F) -> ModelResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let runtime = runtime()?;
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| runtime.block_on(work)))
        }
        Ok(_) => std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(work))
                .join()
                .map_err(|_| ModelError("the HTTP thread panicked".to_string()))
        }),
        Err(_) => Ok(runtime.block_on(work)),
    }
}

/// Asks `endpoint` for the refinement of every row, with `prompt_template` and `api_key`
/// (sent as a bearer token). Returns one outcome per row, in row order. An error is a
/// failure of the whole backend: refused credentials (401/403) or an unknown model or path
/// (404); it stops the call.
pub fn refine_rows(
    endpoint: &Endpoint,
    prompt_template: &str,
    settings: &ClientSettings,
    api_key: Option<(&str, &str)>,
    rows: &[Option<RowInput<'_>>],
) -> ModelResult<Vec<RowOutcome>> {
    let mut outcomes = vec![RowOutcome::Skipped; rows.len()];
    let mut todo = Vec::new();
    for (row, input) in rows.iter().enumerate() {
        let Some(input) = input else { continue };
        match image_mime(input.image) {
            Some(mime) => todo.push((row, mime, *input)),
            None => {
                outcomes[row] = RowOutcome::Failed(RowError {
                    reason: "not an image",
                    detail: format!(
                        "{} bytes that are not JPEG, PNG, WebP, GIF or BMP",
                        input.image.len()
                    ),
                });
            }
        }
    }
    if todo.is_empty() {
        return Ok(outcomes);
    }
    let state = backend_state(endpoint);
    let call = Call {
        endpoint,
        prompt_template,
        settings,
        api_key,
        http: http_client()?,
        permits: state.permits(settings.concurrency),
        state,
        stop: AtomicBool::new(false),
    };
    let call = &call;
    let answered = run_blocking(async {
        let mut rest = &todo[..];
        let mut answered = Vec::with_capacity(todo.len());
        // Until the backend has answered once, one row goes alone: refused credentials or a
        // wrong model then cost one request, not one per row.
        if !call.state.answered.load(Ordering::Relaxed)
            && let Some((&(row, mime, input), others)) = rest.split_first()
        {
            answered.push((row, call.row(mime, input).await?));
            rest = others;
        }
        let all = futures::future::join_all(
            rest.iter()
                .map(|&(row, mime, input)| async move { (row, call.row(mime, input).await) }),
        )
        .await;
        for (row, outcome) in all {
            answered.push((row, outcome?));
        }
        Ok::<_, ModelError>(answered)
    })??;
    for (row, outcome) in answered {
        outcomes[row] = outcome;
    }
    Ok(outcomes)
}

/// One call's shared context.
struct Call<'a> {
    endpoint: &'a Endpoint,
    prompt_template: &'a str,
    settings: &'a ClientSettings,
    api_key: Option<(&'a str, &'a str)>,
    http: &'a reqwest::Client,
    state: Arc<BackendState>,
    permits: Arc<Semaphore>,
    stop: AtomicBool,
}

/// A response, read.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// Why a request got no response.
struct Unanswered {
    timed_out: bool,
    detail: String,
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

fn jitter_fraction() -> f64 {
    let random =
        std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id());
    (random >> 11) as f64 / (1u64 << 53) as f64
}

impl Call<'_> {
    /// The message text of a response body, without the API key.
    fn scrub(&self, body: &[u8]) -> String {
        let text = snippet(&String::from_utf8_lossy(body));
        match self.api_key {
            Some((_, key)) if !key.is_empty() => text.replace(key, "***"),
            _ => text,
        }
    }

    fn fatal(&self, answer: &Answer) -> ModelError {
        let status = answer.status;
        let body = self.scrub(&answer.body);
        let what = self.endpoint.describe();
        let advice = match (status, self.api_key) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, None) => format!(
                "it needs an API key: set {} (or {}) in the environment",
                API_KEY_VARS[0], API_KEY_VARS[1]
            ),
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, Some((var, _))) => {
                format!("it refused the API key in {var}")
            }
            _ => "check the URL (usually ending in /v1) and the model id the server lists at \
                  /v1/models"
                .to_string(),
        };
        ModelError(format!("{what} answered {status}: {advice} ({body})"))
    }

    async fn send(&self, body: Vec<u8>) -> Result<Answer, Unanswered> {
        let unanswered = |e: reqwest::Error| Unanswered {
            timed_out: e.is_timeout(),
            detail: error_chain(&e.without_url()),
        };
        let mut request = self
            .http
            .post(self.endpoint.chat_url())
            .timeout(self.settings.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((_, key)) = self.api_key {
            request = request.bearer_auth(key);
        }
        let mut response = request.send().await.map_err(unanswered)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_DELAY));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unanswered)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Unanswered {
                    timed_out: false,
                    detail: format!("the answer is over {} MiB", MAX_BODY_BYTES >> 20),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// One row, with its tries. `Err` only for a failure of the whole backend.
    async fn row(&self, mime: &str, input: RowInput<'_>) -> ModelResult<RowOutcome> {
        let prompt = render_prompt(self.prompt_template, input.alt_text);
        let mut failed_tries = 0u32;
        let mut invalid_answers = 0u32;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(RowOutcome::Skipped);
            }
            let permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| ModelError(format!("request permits: {e}")))?;
            if self.stop.load(Ordering::Relaxed) {
                return Ok(RowOutcome::Skipped);
            }
            // Encoded only now, with a permit: a batch's rows all wait at once, and their
            // base64 images together would be a second copy of the batch.
            let image_url = format!(
                "data:{mime};base64,{}",
                base64::engine::general_purpose::STANDARD.encode(input.image)
            );
            let format = self.state.format();
            let temperature = TEMPERATURES[usize::from(invalid_answers > 0)];
            let body = request_body(
                &self.endpoint.model,
                &prompt,
                &image_url,
                format,
                self.settings.max_tokens,
                temperature,
            );
            let sent = self.send(body).await;
            drop(permit);
            let (failure, retry_after) = match sent {
                Err(e) => {
                    let reason = if e.timed_out {
                        "timed out"
                    } else {
                        "connection failed"
                    };
                    (
                        RowError {
                            reason,
                            detail: e.detail,
                        },
                        None,
                    )
                }
                Ok(answer) => {
                    let status = answer.status;
                    if matches!(
                        status,
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
                    ) {
                        self.stop.store(true, Ordering::Relaxed);
                        return Err(self.fatal(&answer));
                    }
                    self.state.answered.store(true, Ordering::Relaxed);
                    if status.is_success() {
                        let parsed = completion_text(&answer.body).and_then(|(text, finish)| {
                            parse_answer(&text).map_err(|e| match finish.as_deref() {
                                Some("length") => format!(
                                    "{e} (the answer was cut off at max_tokens = {})",
                                    self.settings.max_tokens
                                ),
                                _ => e,
                            })
                        });
                        match parsed {
                            Ok(refinement) => return Ok(RowOutcome::Refined(refinement)),
                            Err(_) if invalid_answers < INVALID_ANSWER_RETRIES => {
                                invalid_answers += 1;
                                continue;
                            }
                            Err(e) => {
                                return Ok(self.failed(RowError {
                                    reason: "invalid answer",
                                    detail: self.scrub(e.as_bytes()),
                                }));
                            }
                        }
                    }
                    let detail = format!("HTTP {status}: {}", self.scrub(&answer.body));
                    if matches!(
                        status,
                        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
                    ) && refuses_response_format(&answer.body)
                        && self.state.fall_back_from(format)
                    {
                        tracing::info!(
                            "{} refused response_format {format:?}; asking without it",
                            self.endpoint.describe()
                        );
                        continue;
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        (
                            RowError {
                                reason: "rate limited",
                                detail,
                            },
                            answer.retry_after,
                        )
                    } else if status.is_server_error() {
                        (
                            RowError {
                                reason: "server error",
                                detail,
                            },
                            None,
                        )
                    } else {
                        return Ok(self.failed(RowError {
                            reason: "request rejected",
                            detail,
                        }));
                    }
                }
            };
            if failed_tries >= self.settings.retries {
                return Ok(self.failed(failure));
            }
            let backoff = self
                .settings
                .backoff
                .saturating_mul(1u32 << failed_tries.min(16))
                .mul_f64(0.5 + 0.5 * jitter_fraction());
            failed_tries += 1;
            tokio::time::sleep(retry_after.unwrap_or(backoff).min(MAX_DELAY)).await;
        }
    }

    fn failed(&self, error: RowError) -> RowOutcome {
        if self.settings.stop_at_first_failure {
            self.stop.store(true, Ordering::Relaxed);
        }
        RowOutcome::Failed(error)
    }
}

/// Whether a 400/422 body says the request's `response_format` is what the server refused.
fn refuses_response_format(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    ["response_format", "json_schema", "json_object", "guided"]
        .iter()
        .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> &'static str {
        r#"{"long_pos": "A red circle.", "long_neg": "A blue circle.", "short_pos": ["red circle"], "short_neg": ["blue circle"]}"#
    }

    #[test]
    fn endpoints_need_http_a_host_and_a_model() -> ModelResult<()> {
        let e = Endpoint::parse("http://localhost:8000/v1/?model=Qwen/Qwen2-VL-7B-Instruct")?;
        assert_eq!(e.model(), "Qwen/Qwen2-VL-7B-Instruct");
        assert_eq!(
            e.chat_url().as_str(),
            "http://localhost:8000/v1/chat/completions"
        );
        let secret = Endpoint::parse("https://user:hunter22@example.com/v1?model=m")?;
        assert_eq!(secret.base_display(), "https://example.com/v1");
        assert_eq!(
            secret.fingerprint("t"),
            Endpoint::parse("https://example.com/v1?model=m")?.fingerprint("t")
        );
        assert_ne!(secret.fingerprint("t"), secret.fingerprint("u"));
        for (bad, why) in [
            ("http://localhost:8000/v1", "names no model"),
            ("http://localhost:8000/v1?model=", "model= is empty"),
            (
                "http://localhost:8000/v1?model=a&temperature=1",
                "unknown parameter",
            ),
            ("ftp://localhost/v1?model=a", "scheme"),
            (
                "http://u:pw12345@[::1/v1?model=a",
                "not a chat-completions backend",
            ),
        ] {
            let err = Endpoint::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("pw12345"), "{err}");
        }
        Ok(())
    }

    #[test]
    fn image_types_come_from_magic_bytes() {
        assert_eq!(image_mime(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(image_mime(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_mime(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_mime(b"GIF89a.."), Some("image/gif"));
        assert_eq!(image_mime(b"BM\0\0\0\0\0\0\0\0\0\0\0\0"), Some("image/bmp"));
        assert_eq!(image_mime(b"BM"), None);
        assert_eq!(image_mime(b"<html>"), None);
        assert_eq!(image_mime(b""), None);
    }

    #[test]
    fn answers_parse_strictly_from_json_fences_or_prose() -> Result<(), String> {
        let plain = parse_answer(valid())?;
        assert_eq!(plain.short_neg, vec!["blue circle".to_string()]);
        let fenced = format!(
            "Sure! Here it is:\n```json\n{}\n```\nHope that helps {{:}}",
            valid()
        );
        assert_eq!(parse_answer(&fenced)?, plain);
        // Braces inside strings do not end the object; a non-JSON brace group is skipped.
        let tricky = r#"{not json} {"long_pos": "a } b {", "long_neg": "x", "short_pos": ["t"], "short_neg": ["u"]}"#;
        assert_eq!(parse_answer(tricky)?.long_pos, "a } b {");
        for (bad, why) in [
            ("no json here", "no JSON object"),
            (r#"["a"]"#, "not an object"),
            (
                r#"{"long_pos": "a", "long_neg": "b", "short_pos": ["t"]}"#,
                "short_neg is missing",
            ),
            (
                r#"{"long_pos": " ", "long_neg": "b", "short_pos": ["t"], "short_neg": ["u"]}"#,
                "long_pos is empty",
            ),
            (
                r#"{"long_pos": "a", "long_neg": "b", "short_pos": "t", "short_neg": ["u"]}"#,
                "short_pos is not a list",
            ),
            (
                r#"{"long_pos": "a", "long_neg": "b", "short_pos": [], "short_neg": ["u"]}"#,
                "short_pos is empty",
            ),
            (
                r#"{"long_pos": "a", "long_neg": "b", "short_pos": ["t", 3], "short_neg": ["u"]}"#,
                "short_pos[1] is not a string",
            ),
            (
                r#"{"long_pos": "a", "long_neg": "b", "short_pos": ["t"], "short_neg": [""]}"#,
                "short_neg[0] is empty",
            ),
            (
                r#"{"long_pos": 1, "long_neg": "b", "short_pos": ["t"], "short_neg": ["u"]}"#,
                "long_pos is not a string",
            ),
            (
                r#"```json {"long_pos": "a", "long_neg": "b""#,
                "no JSON object",
            ),
        ] {
            let err = parse_answer(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        Ok(())
    }

    #[test]
    fn stored_refinements_round_trip_and_bad_bytes_are_misses() -> Result<(), String> {
        let r = parse_answer(valid())?;
        assert_eq!(Refinement::from_json(&r.to_json()), Some(r));
        assert_eq!(Refinement::from_json(b"{}"), None);
        assert_eq!(Refinement::from_json(b"\xff"), None);
        Ok(())
    }

    #[test]
    fn completions_yield_their_text_as_a_string_or_parts() -> Result<(), String> {
        let body = json!({"choices": [{"message": {"content": valid()}, "finish_reason": "stop"}]});
        let (text, finish) = completion_text(body.to_string().as_bytes())?;
        assert_eq!((text.as_str(), finish.as_deref()), (valid(), Some("stop")));
        let parts = json!({"choices": [{"message": {"content": [{"type": "text", "text": "ab"}, {"type": "text", "text": "c"}]}}]});
        assert_eq!(completion_text(parts.to_string().as_bytes())?.0, "abc");
        assert!(completion_text(b"<html>").is_err());
        assert!(completion_text(br#"{"choices": []}"#).is_err());
        Ok(())
    }

    #[test]
    fn requests_carry_the_image_the_prompt_and_the_format() -> Result<(), String> {
        let prompt = render_prompt(DEFAULT_PROMPT, "  a red circle  ");
        assert!(prompt.contains("\na red circle\n") && !prompt.contains(ALT_TEXT_SLOT));
        let long = "x".repeat(MAX_ALT_TEXT_CHARS + 50);
        assert_eq!(render_prompt("{alt_text}", &long).len(), MAX_ALT_TEXT_CHARS);
        let body = request_body(
            "m",
            &prompt,
            "data:image/png;base64,AAAA",
            ResponseFormat::JsonSchema,
            512,
            0.0,
        );
        let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        assert_eq!(v["model"], "m");
        assert_eq!(v["max_tokens"], 512);
        assert_eq!(
            v["messages"][0]["content"][0]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(v["messages"][0]["content"][1]["text"], prompt.as_str());
        assert_eq!(v["response_format"]["type"], "json_schema");
        assert_eq!(
            v["response_format"]["json_schema"]["schema"],
            answer_schema()
        );
        let plain = request_body("m", "p", "d", ResponseFormat::Prompt, 512, 0.7);
        let v: Value = serde_json::from_slice(&plain).map_err(|e| e.to_string())?;
        assert!(v.get("response_format").is_none());
        assert_eq!(v["temperature"], 0.7);
        Ok(())
    }

    #[test]
    fn response_format_falls_back_once_per_refusal_and_stops() {
        let state = BackendState {
            format: AtomicU8::new(0),
            answered: AtomicBool::new(false),
            permits: Mutex::new((0, Arc::new(Semaphore::new(0)))),
        };
        assert!(state.fall_back_from(ResponseFormat::JsonSchema));
        // A second caller refused with the same format does not skip a level.
        assert!(state.fall_back_from(ResponseFormat::JsonSchema));
        assert_eq!(state.format(), ResponseFormat::JsonObject);
        assert!(state.fall_back_from(ResponseFormat::JsonObject));
        assert_eq!(state.format(), ResponseFormat::Prompt);
        assert!(!state.fall_back_from(ResponseFormat::Prompt));
        assert!(refuses_response_format(
            b"{\"error\": \"response_format json_schema is not supported\"}"
        ));
        assert!(!refuses_response_format(
            b"{\"error\": \"image too large\"}"
        ));
    }
}
