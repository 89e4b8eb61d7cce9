//! `preprocessor_config.json` of a CLIP checkpoint and the pipeline it describes, as
//! transformers' `CLIPImageProcessorPil` runs it: convert to RGB, resize (shortest edge, or
//! squash to height×width) with Pillow's filter, center crop, rescale, normalize.

use candle_core::{DType, Tensor};
use image::RgbImage;
use serde::Deserialize;
use serde_json::Value;

use super::image_decode::{DecodeError, decode_rgb};
use super::resize::{Filter, resize};
use super::{ModelError, ModelResult};

/// How to bring an image to the model's input size.
#[derive(Debug, Clone, PartialEq)]
pub enum ResizeMode {
    /// Scale so the shorter side is this long, keeping the aspect ratio.
    ShortestEdge(u32),
    /// Scale to exactly height × width ("squash", as DFN-5B preprocesses).
    Exact {
        /// Target height.
        height: u32,
        /// Target width.
        width: u32,
    },
}

/// A checkpoint's preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    /// Resize step, if any.
    pub resize: Option<ResizeMode>,
    /// Resampling filter.
    pub filter: Filter,
    /// Center crop to (height, width), if any.
    pub crop: Option<(u32, u32)>,
    /// Multiplier applied to 8-bit values (1/255 normally), if rescaling.
    pub rescale: Option<f32>,
    /// Per-channel mean and std, if normalizing.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default = "yes")]
    do_resize: bool,
    size: Option<Value>,
    #[serde(default = "bicubic")]
    resample: i64,
    #[serde(default = "yes")]
    do_center_crop: bool,
    crop_size: Option<Value>,
    #[serde(default = "yes")]
    do_rescale: bool,
    #[serde(default = "one_over_255")]
    rescale_factor: f64,
    #[serde(default = "yes")]
    do_normalize: bool,
    image_mean: Option<Vec<f64>>,
    image_std: Option<Vec<f64>>,
}

fn yes() -> bool {
    true
}
fn bicubic() -> i64 {
    3
}
fn one_over_255() -> f64 {
    1.0 / 255.0
}

/// OpenAI CLIP's normalization, transformers' default for CLIP processors.
const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

fn as_u32(v: &Value, what: &str) -> ModelResult<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            ModelError(format!(
                "preprocessor_config.json: {what} must be a positive integer, got {v}"
            ))
        })
}

fn three(v: Option<Vec<f64>>, default: [f32; 3], what: &str) -> ModelResult<[f32; 3]> {
    match v {
        None => Ok(default),
        Some(v) if v.len() == 3 => Ok([v[0] as f32, v[1] as f32, v[2] as f32]),
        Some(v) => Err(ModelError(format!(
            "preprocessor_config.json: {what} needs 3 values, got {}",
            v.len()
        ))),
    }
}

/// The forms `size` and `crop_size` take in `preprocessor_config.json`.
enum SizeSpec {
    /// A bare number (legacy configs).
    Number(u32),
    /// `{"shortest_edge": n}`.
    ShortestEdge(u32),
    /// `{"height": h, "width": w}`.
    HeightWidth(u32, u32),
}

fn size_spec(v: &Value, what: &str) -> ModelResult<SizeSpec> {
    match v {
        Value::Number(_) => Ok(SizeSpec::Number(as_u32(v, what)?)),
        Value::Object(m) => match (m.get("shortest_edge"), m.get("height"), m.get("width")) {
            (Some(s), _, _) => Ok(SizeSpec::ShortestEdge(as_u32(
                s,
                &format!("{what}.shortest_edge"),
            )?)),
            (None, Some(h), Some(w)) => Ok(SizeSpec::HeightWidth(
                as_u32(h, &format!("{what}.height"))?,
                as_u32(w, &format!("{what}.width"))?,
            )),
            _ => Err(ModelError(format!(
                "preprocessor_config.json: unsupported {what} {v}"
            ))),
        },
        other => Err(ModelError(format!(
            "preprocessor_config.json: unsupported {what} {other}"
        ))),
    }
}

impl Preprocessor {
    /// Parses `preprocessor_config.json` text.
    pub fn from_json(text: &str) -> ModelResult<Self> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| ModelError(format!("preprocessor_config.json is not valid: {e}")))?;
        let filter = Filter::from_pil(raw.resample).ok_or_else(|| {
            ModelError(format!(
                "preprocessor_config.json: resample {} is not supported (2 bilinear, 3 bicubic)",
                raw.resample
            ))
        })?;
        let resize = if raw.do_resize {
            let size = raw
                .size
                .unwrap_or_else(|| serde_json::json!({"shortest_edge": 224}));
            Some(match size_spec(&size, "size")? {
                SizeSpec::Number(n) | SizeSpec::ShortestEdge(n) => ResizeMode::ShortestEdge(n),
                SizeSpec::HeightWidth(height, width) => ResizeMode::Exact { height, width },
            })
        } else {
            None
        };
        let crop = if raw.do_center_crop {
            let size = raw
                .crop_size
                .unwrap_or_else(|| serde_json::json!({"height": 224, "width": 224}));
            Some(match size_spec(&size, "crop_size")? {
                SizeSpec::Number(n) => (n, n),
                SizeSpec::HeightWidth(h, w) => (h, w),
                SizeSpec::ShortestEdge(_) => {
                    return Err(ModelError(format!(
                        "preprocessor_config.json: unsupported crop_size {size}"
                    )));
                }
            })
        } else {
            None
        };
        let normalize = if raw.do_normalize {
            Some((
                three(raw.image_mean, OPENAI_MEAN, "image_mean")?,
                three(raw.image_std, OPENAI_STD, "image_std")?,
            ))
        } else {
            None
        };
        Ok(Preprocessor {
            resize,
            filter,
            crop,
            rescale: raw.do_rescale.then_some(raw.rescale_factor as f32),
            normalize,
        })
    }

    /// The (height, width) of the output.
    pub fn output_size(&self, input: (u32, u32)) -> (u32, u32) {
        let resized = self.resized_size(input);
        self.crop.unwrap_or(resized)
    }

    fn resized_size(&self, (h, w): (u32, u32)) -> (u32, u32) {
        match &self.resize {
            None => (h, w),
            Some(ResizeMode::Exact { height, width }) => (*height, *width),
            // transformers' get_resize_output_image_size(default_to_square=False).
            Some(ResizeMode::ShortestEdge(s)) => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let new_long = (f64::from(*s) * f64::from(long) / f64::from(short)) as u32;
                if w <= h {
                    (new_long, *s)
                } else {
                    (*s, new_long)
                }
            }
        }
    }

    /// Resizes and crops decoded RGB: the 8-bit CHW planes the model's input is made of.
    /// Rescaling and normalizing ([`Self::normalize_tensor`]) happen on the model's device,
    /// so a quarter of the bytes cross to it.
    pub fn crop_rgb(&self, rgb: &RgbImage) -> Vec<u8> {
        let (rh, rw) = self.resized_size((rgb.height(), rgb.width()));
        let resized = resize(rgb, rw, rh, self.filter);
        let (oh, ow) = self.crop.unwrap_or((rh, rw));
        // numpy center_crop: top-left at half the difference, zero padding when the crop is
        // larger than the image.
        let top = (i64::from(rh) - i64::from(oh)).div_euclid(2);
        let left = (i64::from(rw) - i64::from(ow)).div_euclid(2);
        let plane = (oh * ow) as usize;
        let mut out = vec![0u8; 3 * plane];
        for y in 0..oh as i64 {
            for x in 0..ow as i64 {
                let (sy, sx) = (y + top, x + left);
                if sy < 0 || sx < 0 || sy >= i64::from(rh) || sx >= i64::from(rw) {
                    continue;
                }
                let px = resized.get_pixel(sx as u32, sy as u32).0;
                let at = (y as usize) * ow as usize + x as usize;
                for (c, v) in px.into_iter().enumerate() {
                    out[c * plane + at] = v;
                }
            }
        }
        out
    }

    /// Rescales and normalizes 8-bit CHW images `[batch, 3, h, w]` (u8) into the f32 values
    /// the model reads, with the same f32 operations as transformers: `v·scale`, then
    /// `(v − mean) / std` per channel.
    pub fn normalize_tensor(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        let device = images.device();
        let mut xs = images.to_dtype(DType::F32)?;
        if let Some(scale) = self.rescale {
            xs = (xs * f64::from(scale))?;
        }
        if let Some((mean, std)) = &self.normalize {
            let channel = |v: &[f32; 3]| Tensor::from_slice(v, (1, 3, 1, 1), device);
            xs = xs
                .broadcast_sub(&channel(mean)?)?
                .broadcast_div(&channel(std)?)?;
        }
        Ok(xs)
    }

    /// Runs the whole pipeline on decoded RGB on the CPU, returning CHW f32 values: the same
    /// f32 operations as [`Self::normalize_tensor`], element by element.
    pub fn process_rgb(&self, rgb: &RgbImage) -> Vec<f32> {
        let planes = self.crop_rgb(rgb);
        let plane = planes.len() / 3;
        let scale = self.rescale.unwrap_or(1.0);
        planes
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let v = f32::from(v) * scale;
                match &self.normalize {
                    Some((mean, std)) => (v - mean[i / plane]) / std[i / plane],
                    None => v,
                }
            })
            .collect()
    }

    /// Decodes, resizes and crops encoded image bytes (8-bit CHW planes).
    pub fn crop_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        Ok(self.crop_rgb(&decode_rgb(bytes)?))
    }

    /// Decodes and preprocesses encoded image bytes.
    pub fn process_bytes(&self, bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
        Ok(self.process_rgb(&decode_rgb(bytes)?))
    }
}
