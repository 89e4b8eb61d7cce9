//! `clip_embed(img [, model])` and `clip_embed_text(txt [, model])`: L2-normalized CLIP
//! embeddings of images and of texts. One implementation, two SQL names: they differ only
//! in which tower the input goes through.

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::cached::{RowCache, decode_f32s, encode_f32s, row_cache, through_cache};
use super::clip_common::{
    BoundOptions, DefaultModel, arrays, columnar, embed_rows, embedding_array, embedding_type,
    expect_binary, expect_text, model_argument, model_for, model_name_at, off_worker, options_of,
};
use super::columns::{binary_rows, text_rows};
use crate::cache::{Key, key_of};
use crate::options::HqflowOptions;

/// Which tower a CLIP embedding function feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tower {
    /// `clip_embed(img [, model])` → FixedSizeList<Float32, D>: the image's embedding,
    /// L2-normalized (D is the model's projection width). `img` is encoded image bytes (JPEG,
    /// PNG, WebP, GIF, BMP). NULL when `img` is NULL or cannot be decoded (counted and reported
    /// at the end of the run; `SET hqflow.on_error = 'fail'` makes it fatal).
    ///
    /// ```sql
    /// SELECT uid, clip_embed(img, 'dfn') AS e FROM pool;
    /// ```
    Image,
    /// `clip_embed_text(txt [, model])` → FixedSizeList<Float32, D>: the text's embedding,
    /// L2-normalized; the text is truncated to the model's context (77 tokens for CLIP) with
    /// its end token kept. NULL when `txt` is NULL. A constant text is computed once, at
    /// planning.
    ///
    /// ```sql
    /// SELECT uid FROM pool
    /// ORDER BY array_distance(clip_embed(img, 'dfn'), clip_embed_text('a red circle', 'dfn')) LIMIT 10;
    /// ```
    Text,
}

/// `clip_embed` or `clip_embed_text`; `model` is a registered model name (constant),
/// default `hqflow.clip_model`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ClipEmbed {
    tower: Tower,
    signature: Signature,
    options: BoundOptions,
}

impl ClipEmbed {
    /// The function for `tower` in a session with `options`.
    pub fn new(tower: Tower, options: HqflowOptions) -> Self {
        ClipEmbed {
            tower,
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
            options: BoundOptions(options),
        }
    }
}

impl ScalarUDFImpl for ClipEmbed {
    fn name(&self) -> &str {
        match self.tower {
            Tower::Image => "clip_embed",
            Tower::Text => "clip_embed_text",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        internal_err!("{}'s type comes from return_field_from_args", self.name())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.name();
        match self.tower {
            Tower::Image => expect_binary(name, 1, "img", &args.arg_fields[0])?,
            Tower::Text => expect_text(name, 1, "txt", &args.arg_fields[0])?,
        }
        let explicit = match args.arg_fields.len() {
            2 => model_argument(name, 2, args.scalar_arguments[1])?,
            _ => None,
        };
        let model = model_for(
            name,
            &self.options.0,
            explicit.as_deref(),
            DefaultModel::Clip,
        )?;
        let dim = model.checkpoint().model.config().projection_dim;
        Ok(Field::new(name, embedding_type(dim), true).into())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let options = options_of(&args.config_options);
        let model = model_for(
            name,
            &self.options.0,
            model_name_at(&args.args, 1).as_deref(),
            DefaultModel::Clip,
        )?;
        let dim = model.checkpoint().model.config().projection_dim;
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let rows = if scalar { 1 } else { args.number_rows };
        let columns = arrays(&args.args[..1], rows)?;
        let cache = row_cache(&options, &model.checkpoint().dir);
        let embeddings = match self.tower {
            Tower::Image => {
                let images = binary_rows(&columns[0])?;
                embed_column(
                    name,
                    &options,
                    cache.as_ref(),
                    &images,
                    |i| i,
                    |wanted| {
                        off_worker(|| embed_rows(name, &model, &options, wanted, &[]))
                            .map(|e| e.images.into_rows())
                    },
                )?
            }
            Tower::Text => {
                let texts = text_rows(&columns[0])?;
                embed_column(
                    name,
                    &options,
                    cache.as_ref(),
                    &texts,
                    str::as_bytes,
                    |wanted| {
                        off_worker(|| embed_rows(name, &model, &options, &[], wanted))
                            .map(|e| e.texts.into_rows())
                    },
                )?
            }
        };
        let array = embedding_array(embeddings, dim)?;
        columnar(array, scalar)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        Some(ScalarUDF::new_from_impl(ClipEmbed::new(
            self.tower,
            options_of(config),
        )))
    }
}

/// One column's embeddings through the model-output cache: each row keyed by its bytes, the
/// model asked (`embed`) only for the rows the cache does not hold.
fn embed_column<'a, T: Copy + 'a>(
    name: &str,
    options: &HqflowOptions,
    cache: Option<&RowCache>,
    rows: &[Option<T>],
    bytes: impl Fn(T) -> &'a [u8],
    embed: impl FnOnce(&[Option<T>]) -> Result<Vec<Option<Vec<f32>>>>,
) -> Result<Vec<Option<Vec<f32>>>> {
    let keys: Vec<Option<Key>> = rows
        .iter()
        .map(|r| r.map(|v| key_of(&[Some(bytes(v))])))
        .collect();
    through_cache(
        name,
        options,
        cache,
        &keys,
        |v| encode_f32s(v),
        decode_f32s,
        |needed| {
            let wanted: Vec<Option<T>> = rows
                .iter()
                .zip(needed)
                .map(|(r, n)| r.filter(|_| *n))
                .collect();
            embed(&wanted)
        },
    )
}
