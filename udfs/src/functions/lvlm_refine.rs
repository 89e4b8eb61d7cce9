//! `lvlm_refine(img, txt [, backend])`: the four HQ-CLIP texts of an image, written by a
//! vision-language model behind an OpenAI-compatible chat-completions server.

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

use super::cached::{fingerprint_cache, through_cache};
use super::clip_common::{
    BoundOptions, RowFailure, arrays, columnar, expect_binary, expect_text, model_argument,
    model_name_at, options_of, rows_failed,
};
use super::columns::{binary_rows, text_rows};
use crate::cache::{Key, key_of};
use crate::models::openai_chat::{
    ClientSettings, Endpoint, Refinement, RowInput, RowOutcome, api_key_from_env, refine_rows,
};
use crate::options::{HqflowOptions, ModelLocation, OnError};

/// `lvlm_refine(img, txt [, backend])` → Struct{`long_pos` Utf8, `long_neg` Utf8,
/// `short_pos` List<Utf8>, `short_neg` List<Utf8>}: HQ-CLIP's four texts for an image, written
/// by a vision-language model that reads the image with its alt-text as a hint.
///
/// - `img`: encoded image bytes (JPEG, PNG, WebP, GIF, BMP); `txt`: the raw alt-text.
/// - `backend`: a registered backend name (constant); default `hqflow.refine_backend`. A
///   backend is an OpenAI-compatible server: `-m NAME=http://HOST:PORT/v1?model=MODEL_ID`.
///   The API key, if the server needs one, comes from `HQFLOW_API_KEY` or `OPENAI_API_KEY`.
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

/// The backend a call uses (explicit name, else the session default), parsed.
fn backend_for(options: &HqflowOptions, explicit: Option<&str>) -> Result<(String, Endpoint)> {
    let Some(name) = explicit.or(options.refine_backend.as_deref()) else {
        return plan_err!(
            "{NAME} needs a backend: register an OpenAI-compatible server (vLLM, SGLang, \
             Ollama, llama.cpp) with `hqflow sql -m NAME=http://HOST:PORT/v1?model=MODEL_ID` (or \
             SET hqflow.model.NAME = '…') and pass 'NAME' as the third argument, or SET \
             hqflow.refine_backend = 'NAME'"
        );
    };
    match options.model(name)? {
        ModelLocation::Endpoint(url) => {
            let endpoint = Endpoint::parse(url)
                .map_err(|e| DataFusionError::Plan(format!("{NAME}: backend '{name}': {e}")))?;
            Ok((name.to_string(), endpoint))
        }
        ModelLocation::Directory(dir) => plan_err!(
            "{NAME}: backend '{name}' is a directory ({dir}); {NAME} needs an OpenAI-compatible \
             server registered as http(s)://HOST:PORT/v1?model=MODEL_ID"
        ),
    }
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
        backend_for(&self.options.0, explicit.as_deref())?;
        Ok(Field::new(NAME, DataType::Struct(refinement_fields()), true).into())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let options = options_of(&args.config_options);
        let (backend, endpoint) =
            backend_for(&self.options.0, model_name_at(&args.args, 2).as_deref())?;
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
        let prompt = &options.refine.prompt;
        let description = format!(
            "{} (prompt: {})",
            endpoint.describe(),
            prompt.path.as_deref().unwrap_or("built-in")
        );
        let cache = fingerprint_cache(&options, &endpoint.fingerprint(&prompt.text), &description);
        let settings = client_settings(&options);
        let refinements = through_cache(
            NAME,
            &options,
            cache.as_ref(),
            &keys,
            Refinement::to_json,
            Refinement::from_json,
            |needed| {
                let inputs: Vec<Option<RowInput<'_>>> = (0..rows)
                    .map(|r| match (images[r], texts[r]) {
                        (Some(image), Some(alt_text)) if needed[r] => {
                            Some(RowInput { image, alt_text })
                        }
                        _ => None,
                    })
                    .collect();
                let key = api_key_from_env();
                let api_key = key.as_ref().map(|(var, key)| (*var, key.as_str()));
                let outcomes = refine_rows(&endpoint, &prompt.text, &settings, api_key, &inputs)
                    .map_err(|e| {
                        DataFusionError::Execution(format!("{NAME}: backend '{backend}': {e}"))
                    })?;
                let mut out = Vec::with_capacity(rows);
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
                rows_failed(NAME, &options, failures)?;
                Ok(out)
            },
        )?;
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
    fn a_backend_must_be_a_registered_server_with_a_model() -> Result<()> {
        let mut options = HqflowOptions::default();
        let none = backend_for(&options, None)
            .expect_err("no backend")
            .to_string();
        assert!(none.contains("hqflow.refine_backend"), "{none}");
        use datafusion::common::config::ExtensionOptions;
        options.set("model.nomodel", "http://127.0.0.1:9/v1")?;
        options.set("model.ok", "http://127.0.0.1:9/v1?model=m")?;
        let bad = backend_for(&options, Some("nomodel"))
            .expect_err("no model id")
            .to_string();
        assert!(bad.contains("names no model"), "{bad}");
        options.set("refine_backend", "ok")?;
        let (name, endpoint) = backend_for(&options, None)?;
        assert_eq!((name.as_str(), endpoint.model()), ("ok", "m"));
        Ok(())
    }
}
