//! `clip_embed(img [, model])`: the L2-normalized CLIP embedding of an image.

use std::hash::{Hash, Hasher};

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::clip_common::{
    DefaultModel, arrays, binary_rows, embed_image_rows, embedding_array, embedding_type,
    expect_binary, model_argument, model_for, model_name_at, options_of,
};
use crate::options::HqflowOptions;

/// `clip_embed(img [, model])` → FixedSizeList<Float32, D>: the image's embedding under a
/// CLIP model, L2-normalized (D is the model's projection width).
///
/// - `img`: encoded image bytes (JPEG, PNG, WebP, GIF, BMP).
/// - `model`: a registered model name (constant); default `hqflow.clip_model`.
///
/// NULL when `img` is NULL or cannot be decoded (the error is counted and reported at the end
/// of the run; `SET hqflow.on_error = 'fail'` makes it fatal).
///
/// ```sql
/// SELECT uid, clip_embed(img, 'dfn') AS e FROM pool;
/// ```
#[derive(Debug)]
pub struct ClipEmbed {
    signature: Signature,
    options: HqflowOptions,
}

impl ClipEmbed {
    /// The function for a session with `options`.
    pub fn new(options: HqflowOptions) -> Self {
        ClipEmbed {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
            options,
        }
    }
}

impl PartialEq for ClipEmbed {
    fn eq(&self, other: &Self) -> bool {
        self.options.model_fingerprint() == other.options.model_fingerprint()
    }
}

impl Eq for ClipEmbed {}

impl Hash for ClipEmbed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.options.model_fingerprint().hash(state);
    }
}

const NAME: &str = "clip_embed";

impl ScalarUDFImpl for ClipEmbed {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        internal_err!("clip_embed's type comes from return_field_from_args")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        expect_binary(NAME, 1, "img", &args.arg_fields[0])?;
        let explicit = match args.arg_fields.len() {
            2 => model_argument(NAME, 2, args.scalar_arguments[1])?,
            _ => None,
        };
        let model = model_for(NAME, &self.options, explicit.as_deref(), DefaultModel::Clip)?;
        let dim = model.model.config().projection_dim;
        Ok(Field::new(NAME, embedding_type(dim), true).into())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let options = options_of(&args.config_options);
        let model = model_for(
            NAME,
            &self.options,
            model_name_at(&args.args, 1).as_deref(),
            DefaultModel::Clip,
        )?;
        let dim = model.model.config().projection_dim;
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let rows = if scalar { 1 } else { args.number_rows };
        let columns = arrays(&args.args[..1], rows)?;
        let images = binary_rows(&columns[0])?;
        let embeddings = embed_image_rows(NAME, &model, &options, &images)?;
        let array = embedding_array(embeddings, dim)?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        Some(ScalarUDF::new_from_impl(ClipEmbed::new(options_of(config))))
    }
}
