//! `model_id(name)`: what a registered model name stands for, for provenance columns.

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result, ScalarValue, internal_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::clip_common::{BoundOptions, model_argument, model_name_at, options_of};
use crate::models::embedded;
use crate::models::openai_chat::Endpoint;
use crate::options::{HqflowOptions, ModelLocation};

/// `model_id([name])` → Utf8: the model a registered name stands for (without a name: the
/// backend `lvlm_refine` uses without one, `hqflow.refine_backend` or the built-in refiner). For a server, its base
/// URL without credentials and the model it serves (`http://host:8000/v1 (model
/// Qwen/Qwen2-VL-7B-Instruct)`); for a checkpoint directory, the directory; for
/// `hqflow-world-dfn` or `hqflow-world-vlm` when that name is not registered, the built-in
/// model and its version.
/// `queries/refine.sql` writes it as `refine_model`, so a refined table says which VLM wrote
/// its texts, not only the name it was registered under.
///
/// ```sql
/// SELECT uid, lvlm_refine(img, txt, 'refiner') AS r, model_id('refiner') AS refine_model FROM kept;
/// SELECT uid, lvlm_refine(img, txt) AS r, model_id() AS refine_model FROM kept;
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ModelId {
    signature: Signature,
    options: BoundOptions,
}

impl ModelId {
    /// The function for a session with `options`.
    pub fn new(options: HqflowOptions) -> Self {
        ModelId {
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::Any(1)],
                Volatility::Stable,
            ),
            options: BoundOptions(options),
        }
    }
}

const NAME: &str = "model_id";

/// The backend `lvlm_refine` uses without a backend argument.
fn refine_default(options: &HqflowOptions) -> String {
    options
        .refine_backend
        .clone()
        .unwrap_or_else(|| embedded::VLM_NAME.to_string())
}

/// What `name` stands for in `options`.
fn describe(options: &HqflowOptions, name: &str) -> Result<String> {
    for model in [&embedded::DFN, &embedded::VLM] {
        if name == model.name && !options.models.contains_key(name) {
            return Ok(format!("{} (built-in, {})", model.name, model.version()));
        }
    }
    let location = options.model(name).map_err(|e| match e {
        DataFusionError::Plan(message) => DataFusionError::Plan(format!("{NAME}: {message}")),
        other => other,
    })?;
    Ok(match location {
        ModelLocation::Endpoint(url) => match Endpoint::parse(url) {
            Ok(endpoint) => endpoint.describe(),
            Err(e) => {
                return Err(DataFusionError::Plan(format!(
                    "{NAME}: model '{name}': {e}"
                )));
            }
        },
        ModelLocation::Directory(dir) => dir.clone(),
    })
}

impl ScalarUDFImpl for ModelId {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        internal_err!("model_id's type comes from return_field_from_args")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = match args.scalar_arguments.first() {
            Some(arg) => model_argument(NAME, 1, *arg)?.unwrap_or_default(),
            None => refine_default(&self.options.0),
        };
        describe(&self.options.0, &name)?;
        Ok(Field::new(NAME, DataType::Utf8, false).into())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = if args.args.is_empty() {
            refine_default(&self.options.0)
        } else {
            let Some(name) = model_name_at(&args.args, 0) else {
                return internal_err!("{NAME}: the model name was checked at planning");
            };
            name
        };
        let id = describe(&self.options.0, &name)?;
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(id))))
    }

    // Rebuilt when `SET hqflow.model.…` changes what names stand for.
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        Some(ScalarUDF::new_from_impl(ModelId::new(options_of(config))))
    }
}
