//! `dfn_score(img, txt [, model])`: how well a caption fits its image, as a Data Filtering
//! Network scores it.

use std::sync::Arc;

use datafusion::arrow::array::Float32Array;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::cached::{row_cache, through_cache};
use super::clip_common::{
    BoundOptions, DefaultModel, arrays, columnar, embed_rows, expect_binary, expect_text,
    model_argument, model_for, model_name_at, off_worker, options_of,
};
use super::columns::{binary_rows, text_rows};
use crate::cache::{Key, key_of};
use crate::options::HqflowOptions;

/// `dfn_score(img, txt [, model])` → Float32: the cosine similarity of the L2-normalized
/// image and text embeddings under a CLIP model (no logit scale), the score DFN filters on.
///
/// - `img`: encoded image bytes; `txt`: the caption.
/// - `model`: a registered model name (constant); default `hqflow.dfn_model`.
///
/// NULL when `img` or `txt` is NULL, or the image cannot be decoded (counted and reported at
/// the end of the run; `SET hqflow.on_error = 'fail'` makes it fatal). Scores are comparable
/// within one model only: choose a cut as a fraction of the pool, not a fixed number.
///
/// ```sql
/// SELECT uid, dfn_score(img, txt, 'dfn') AS s FROM pool ORDER BY s DESC;
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DfnScore {
    signature: Signature,
    options: BoundOptions,
}

impl DfnScore {
    /// The function for a session with `options`.
    pub fn new(options: HqflowOptions) -> Self {
        DfnScore {
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
            options: BoundOptions(options),
        }
    }
}

const NAME: &str = "dfn_score";

impl ScalarUDFImpl for DfnScore {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        internal_err!("dfn_score's type comes from return_field_from_args")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        expect_binary(NAME, 1, "img", &args.arg_fields[0])?;
        expect_text(NAME, 2, "txt", &args.arg_fields[1])?;
        let explicit = match args.arg_fields.len() {
            3 => model_argument(NAME, 3, args.scalar_arguments[2])?,
            _ => None,
        };
        model_for(
            NAME,
            &self.options.0,
            explicit.as_deref(),
            DefaultModel::Dfn,
        )?;
        Ok(Field::new(NAME, DataType::Float32, true).into())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let options = options_of(&args.config_options);
        let model = model_for(
            NAME,
            &self.options.0,
            model_name_at(&args.args, 2).as_deref(),
            DefaultModel::Dfn,
        )?;
        let scalar = args.args[..2]
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let columns = arrays(&args.args[..2], rows)?;
        let images = binary_rows(&columns[0])?;
        let texts = text_rows(&columns[1])?;
        // Only rows with both inputs are worth a forward pass.
        let both = |r: usize| images[r].is_some() && texts[r].is_some();
        let keys: Vec<Option<Key>> = (0..rows)
            .map(|r| both(r).then(|| key_of(&[images[r], texts[r].map(str::as_bytes)])))
            .collect();
        let cache = row_cache(&options, &model.checkpoint().dir);
        let scores = through_cache(
            NAME,
            &options,
            cache.as_ref(),
            &keys,
            |score: &f32| score.to_le_bytes().to_vec(),
            |bytes| Some(f32::from_le_bytes(bytes.try_into().ok()?)),
            |needed| {
                let images: Vec<Option<&[u8]>> =
                    (0..rows).map(|r| images[r].filter(|_| needed[r])).collect();
                let texts: Vec<Option<&str>> =
                    (0..rows).map(|r| texts[r].filter(|_| needed[r])).collect();
                let embeddings =
                    off_worker(|| embed_rows(NAME, &model, &options, &images, &texts))?;
                Ok((0..rows)
                    .map(|r| {
                        let (i, t) = (embeddings.images.get(r)?, embeddings.texts.get(r)?);
                        Some(i.iter().zip(t).map(|(a, b)| a * b).sum::<f32>())
                    })
                    .collect())
            },
        )?;
        let scores = Float32Array::from(scores);
        columnar(Arc::new(scores), scalar)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        Some(ScalarUDF::new_from_impl(DfnScore::new(options_of(config))))
    }
}
