//! `lvlm_refine(img, txt [, backend])`: the four HQ-CLIP texts of an image, written by a
//! vision-language model behind an OpenAI-compatible chat-completions server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, ListBuilder, StringBuilder, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result, internal_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::cached::{checkpoint_cache, fingerprint_cache, through_cache};
use super::clip_common::{
    BoundOptions, RowFailure, arrays, columnar, expect_binary, expect_text, model_argument,
    model_name_at, off_worker, options_of, rows_failed,
};
use super::columns::{binary_rows, text_rows};
use crate::cache::{Key, key_of};
use crate::models::openai_chat::{
    ClientSettings, Endpoint, Refinement, RowInput, RowOutcome, api_key_from_env, refine_rows,
};
use crate::models::vlm_checkpoint::VLM_FILES;
use crate::models::vlm_config::VlmConfig;
use crate::models::{embedded, registry};
use crate::options::{HqflowOptions, ModelLocation, OnError};

/// `lvlm_refine(img, txt [, backend])` → Struct{`long_pos` Utf8, `long_neg` Utf8,
/// `short_pos` List<Utf8>, `short_neg` List<Utf8>}: HQ-CLIP's four texts for an image, written
/// by a vision-language model that reads the image with its alt-text as a hint.
///
/// - `img`: encoded image bytes (JPEG, PNG, WebP, GIF, BMP); `txt`: the raw alt-text.
/// - `backend`: a registered backend name (constant); default `hqflow.refine_backend`, else
///   the built-in refiner (`hqflow-world-vlm`). A backend is an OpenAI-compatible server
///   (`-m NAME=http://HOST:PORT/v1?model=MODEL_ID`; the API key, if the server needs one,
///   comes from `HQFLOW_API_KEY` or `OPENAI_API_KEY`) or a refiner checkpoint directory
///   written by `hqflow-train refiner` (`-m NAME=DIR`), run here on `hqflow.device`.
///
/// NULL when `img` or `txt` is NULL (nothing is sent), and when the backend failed for the
/// row after its retries (timeouts, connection errors, 429 and 5xx are retried; answers that
/// are not valid JSON of the four fields are asked again twice): counted by reason and
/// reported at the end of the run; `SET hqflow.on_error = 'fail'` makes it fatal. A backend
/// that refuses the credentials (401/403) or does not know the model or path (404) fails the
/// query. Settings: `hqflow.refine.{prompt,concurrency,timeout_ms,retries,backoff_ms,max_tokens}`.
///
/// ```sql
/// SELECT uid, lvlm_refine(img, txt, 'qwen').* FROM pool WHERE dfn_score(img, txt) > 0.3;
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LvlmRefine {
    signature: Signature,
    options: BoundOptions,
}

impl LvlmRefine {
    /// The function for a session with `options`.
    pub fn new(options: HqflowOptions) -> Self {
        LvlmRefine {
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
            options: BoundOptions(options),
        }
    }
}

const NAME: &str = "lvlm_refine";

/// The four fields of a refinement (all nullable: a failed row is NULL).
pub fn refinement_fields() -> Fields {
    let tags = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Fields::from(vec![
        Field::new("long_pos", DataType::Utf8, true),
        Field::new("long_neg", DataType::Utf8, true),
        Field::new("short_pos", tags(), true),
        Field::new("short_neg", tags(), true),
    ])
}

/// Where a call's texts come from.
enum Backend {
    /// An OpenAI-compatible server.
    Server { name: String, endpoint: Endpoint },
    /// A refiner checkpoint, run in this process.
    Local { name: String, dir: PathBuf },
}

/// The backend a call uses (explicit name, else the session default, else the built-in
/// refiner), parsed.
fn backend_for(options: &HqflowOptions, explicit: Option<&str>) -> Result<Backend> {
    let name = explicit
        .or(options.refine_backend.as_deref())
        .unwrap_or(embedded::VLM_NAME);
    if name == embedded::VLM_NAME && !options.models.contains_key(name) {
        let dir = embedded::VLM
            .directory()
            .map_err(|e| DataFusionError::Plan(format!("{NAME}: {e}")))?;
        return Ok(Backend::Local {
            name: name.to_string(),
            dir,
        });
    }
    match options.model(name)? {
        ModelLocation::Endpoint(url) => {
            let endpoint = Endpoint::parse(url)
                .map_err(|e| DataFusionError::Plan(format!("{NAME}: backend '{name}': {e}")))?;
            Ok(Backend::Server {
                name: name.to_string(),
                endpoint,
            })
        }
        ModelLocation::Directory(dir) => Ok(Backend::Local {
            name: name.to_string(),
            dir: PathBuf::from(dir),
        }),
    }
}

/// [`backend_for`], with a checkpoint directory checked to hold a refiner: at planning, so
/// that a CLIP or a missing directory is a plan error before any row runs (rows then load
/// the checkpoint once, through the model registry).
fn planned_backend(options: &HqflowOptions, explicit: Option<&str>) -> Result<Backend> {
    let backend = backend_for(options, explicit)?;
    if let Backend::Local { name, dir } = &backend {
        let config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| e.to_string())
            .and_then(|text| VlmConfig::from_json(&text));
        if let Err(e) = config {
            return plan_err!(
                "{NAME}: backend '{name}': '{}' is not a refiner checkpoint ({e}); {NAME} runs \
                 refiners written by `hqflow-train refiner`, or an OpenAI-compatible server \
                 registered as http(s)://HOST:PORT/v1?model=MODEL_ID",
                dir.display()
            );
        }
    }
    Ok(backend)
}

fn client_settings(options: &HqflowOptions) -> ClientSettings {
    let refine = &options.refine;
    ClientSettings {
        concurrency: refine.concurrency,
        timeout: Duration::from_millis(refine.timeout_ms),
        retries: refine.retries,
        backoff: Duration::from_millis(refine.backoff_ms),
        max_tokens: refine.max_tokens,
        stop_at_first_failure: options.on_error == OnError::Fail,
    }
}

/// Refinements (or NULLs) as a struct column.
fn refinement_array(rows: &[Option<Refinement>]) -> Result<ArrayRef> {
    let mut long_pos = StringBuilder::new();
    let mut long_neg = StringBuilder::new();
    let mut short_pos = ListBuilder::new(StringBuilder::new());
    let mut short_neg = ListBuilder::new(StringBuilder::new());
    for row in rows {
        match row {
            Some(r) => {
                long_pos.append_value(&r.long_pos);
                long_neg.append_value(&r.long_neg);
                short_pos.append_value(r.short_pos.iter().map(Some));
                short_neg.append_value(r.short_neg.iter().map(Some));
            }
            None => {
                long_pos.append_null();
                long_neg.append_null();
                short_pos.append_null();
                short_neg.append_null();
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(long_pos.finish()),
        Arc::new(long_neg.finish()),
        Arc::new(short_pos.finish()),
        Arc::new(short_neg.finish()),
    ];
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<bool>>());
    Ok(Arc::new(StructArray::try_new(
        refinement_fields(),
        columns,
        Some(nulls),
    )?))
}

/// Refinements from an OpenAI-compatible server, through the output cache.
fn on_server(
    options: &HqflowOptions,
    backend: &str,
    endpoint: &Endpoint,
    images: &[Option<&[u8]>],
    texts: &[Option<&str>],
    keys: &[Option<Key>],
) -> Result<Vec<Option<Refinement>>> {
    let prompt = &options.refine.prompt;
    let description = format!(
        "{} (prompt: {})",
        endpoint.describe(),
        prompt.path.as_deref().unwrap_or("built-in")
    );
    let cache = fingerprint_cache(options, &endpoint.fingerprint(&prompt.text), &description);
    let settings = client_settings(options);
    through_cache(
        NAME,
        options,
        cache.as_ref(),
        keys,
        Refinement::to_json,
        Refinement::from_json,
        |needed| {
            let inputs: Vec<Option<RowInput<'_>>> = (0..keys.len())
                .map(|r| match (images[r], texts[r]) {
                    (Some(image), Some(alt_text)) if needed[r] => {
                        Some(RowInput { image, alt_text })
                    }
                    _ => None,
                })
                .collect();
            let key = api_key_from_env();
            let api_key = key.as_ref().map(|(var, key)| (*var, key.as_str()));
            let outcomes = refine_rows(endpoint, &prompt.text, &settings, api_key, &inputs)
                .map_err(|e| {
                    DataFusionError::Execution(format!("{NAME}: backend '{backend}': {e}"))
                })?;
            let mut out = Vec::with_capacity(keys.len());
            let mut failures = Vec::new();
            for (row, outcome) in outcomes.into_iter().enumerate() {
                match outcome {
                    RowOutcome::Refined(r) => out.push(Some(r)),
                    RowOutcome::Failed(e) => {
                        failures.push(RowFailure {
                            row,
                            reason: e.reason,
                            detail: format!("backend '{backend}': {}", e.detail),
                        });
                        out.push(None);
                    }
                    RowOutcome::Skipped => out.push(None),
                }
            }
            rows_failed(NAME, options, failures)?;
            Ok(out)
        },
    )
}

/// Refinements from a refiner checkpoint run here, `hqflow.model_batch` rows (four
/// sequences each) per decoding batch, through the output cache.
fn locally(
    options: &HqflowOptions,
    backend: &str,
    dir: &Path,
    images: &[Option<&[u8]>],
    texts: &[Option<&str>],
    keys: &[Option<Key>],
) -> Result<Vec<Option<Refinement>>> {
    let model = registry::refiner(dir, options.device)
        .map_err(|e| DataFusionError::Execution(format!("{NAME}: backend '{backend}': {e}")))?;
    let cache = checkpoint_cache(options, model.dir(), VLM_FILES);
    through_cache(
        NAME,
        options,
        cache.as_ref(),
        keys,
        Refinement::to_json,
        Refinement::from_json,
        |needed| {
            let mut out: Vec<Option<Refinement>> = vec![None; keys.len()];
            let mut failures = Vec::new();
            let mut ready: Vec<(usize, Vec<f32>, &str)> = Vec::new();
            for (row, (image, text)) in images.iter().zip(texts).enumerate() {
                let (Some(image), Some(text), true) = (image, text, needed[row]) else {
                    continue;
                };
                match model.pixels(image) {
                    Ok(pixels) => ready.push((row, pixels, text)),
                    Err(e) => failures.push(RowFailure {
                        row,
                        reason: e.reason(),
                        detail: e.to_string(),
                    }),
                }
            }
            rows_failed(NAME, options, failures)?;
            for chunk in ready.chunks(options.model_batch.max(1)) {
                let inputs: Vec<(&[f32], &str)> = chunk
                    .iter()
                    .map(|(_, pixels, text)| (pixels.as_slice(), *text))
                    .collect();
                let written = off_worker(|| model.refine(&inputs)).map_err(|e| {
                    DataFusionError::Execution(format!("{NAME}: backend '{backend}': {e}"))
                })?;
                for ((row, _, _), refinement) in chunk.iter().zip(written) {
                    out[*row] = Some(refinement);
                }
            }
            Ok(out)
        },
    )
}

impl ScalarUDFImpl for LvlmRefine {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        internal_err!("lvlm_refine's type comes from return_field_from_args")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        expect_binary(NAME, 1, "img", &args.arg_fields[0])?;
        expect_text(NAME, 2, "txt", &args.arg_fields[1])?;
        let explicit = match args.arg_fields.len() {
            3 => model_argument(NAME, 3, args.scalar_arguments[2])?,
            _ => None,
        };
        planned_backend(&self.options.0, explicit.as_deref())?;
        Ok(Field::new(NAME, DataType::Struct(refinement_fields()), true).into())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let options = options_of(&args.config_options);
        let backend = backend_for(&self.options.0, model_name_at(&args.args, 2).as_deref())?;
        let scalar = args.args[..2]
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let columns = arrays(&args.args[..2], rows)?;
        let images = binary_rows(&columns[0])?;
        let texts = text_rows(&columns[1])?;
        // A row without an image or an alt-text is NULL and costs no request.
        let both = |r: usize| images[r].is_some() && texts[r].is_some();
        let keys: Vec<Option<Key>> = (0..rows)
            .map(|r| both(r).then(|| key_of(&[images[r], texts[r].map(str::as_bytes)])))
            .collect();
        let refinements = match &backend {
            Backend::Server { name, endpoint } => {
                on_server(&options, name, endpoint, &images, &texts, &keys)?
            }
            Backend::Local { name, dir } => locally(&options, name, dir, &images, &texts, &keys)?,
        };
        let array = refinement_array(&refinements)?;
        columnar(array, scalar)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        Some(ScalarUDF::new_from_impl(LvlmRefine::new(options_of(
            config,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};

    #[test]
    fn refinements_become_a_struct_with_null_rows() -> Result<()> {
        let r = Refinement {
            long_pos: "a red circle".into(),
            long_neg: "a blue circle".into(),
            short_pos: vec!["red".into(), "circle".into()],
            short_neg: vec!["blue".into()],
        };
        let array = refinement_array(&[Some(r), None])?;
        let array = array.as_struct();
        assert_eq!(array.fields(), &refinement_fields());
        assert!(array.is_valid(0) && array.is_null(1));
        assert_eq!(array.column(0).as_string::<i32>().value(0), "a red circle");
        let tags = array.column(2).as_list::<i32>().value(0);
        assert_eq!(tags.as_string::<i32>().value(1), "circle");
        Ok(())
    }

    #[test]
    fn backends_are_servers_checkpoints_or_the_built_in_refiner() -> Result<()> {
        let mut options = HqflowOptions::default();
        match backend_for(&options, None)? {
            Backend::Local { name, dir } => {
                assert_eq!(name, embedded::VLM_NAME);
                assert!(dir.join("config.json").is_file());
            }
            Backend::Server { .. } => panic!("the default backend is the built-in refiner"),
        }
        use datafusion::common::config::ExtensionOptions;
        options.set("model.nomodel", "http://127.0.0.1:9/v1")?;
        options.set("model.ok", "http://127.0.0.1:9/v1?model=m")?;
        let built_in = embedded::VLM
            .directory()
            .map_err(|e| DataFusionError::Plan(e.0))?;
        options.set("model.mine", &built_in.display().to_string())?;
        options.set(
            "model.clip",
            &embedded::directory()
                .map_err(|e| DataFusionError::Plan(e.0))?
                .display()
                .to_string(),
        )?;
        let bad = backend_for(&options, Some("nomodel"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(bad.contains("names no model"), "{bad}");
        let unknown = backend_for(&options, Some("nobody"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(unknown.contains("not registered"), "{unknown}");
        options.set("refine_backend", "ok")?;
        match backend_for(&options, None)? {
            Backend::Server { name, endpoint } => {
                assert_eq!((name.as_str(), endpoint.model()), ("ok", "m"));
            }
            Backend::Local { .. } => panic!("'ok' is a server"),
        }
        match backend_for(&options, Some("mine"))? {
            Backend::Local { dir, .. } => assert_eq!(dir, built_in),
            Backend::Server { .. } => panic!("'mine' is a directory"),
        }
        let clip = planned_backend(&options, Some("clip"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(clip.contains("is not a refiner checkpoint"), "{clip}");
        Ok(())
    }
}
