//! `preprocessor_config.json` of a CLIP checkpoint and the pipeline it describes, as
//! transformers' `CLIPImageProcessorPil` runs it: convert to RGB, resize (shortest edge, or
//! squash to height×width) with Pillow's filter, center crop, rescale, normalize.

use candle_core::{DType, Tensor};
use image::RgbImage;
use serde::Deserialize;
use serde_json::Value;

use super::image_decode::{DecodeError, MAX_PIXELS, decode_rgb};
use super::resize::{Filter, resize_window};
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
        let (oh, ow) = self.crop.unwrap_or((rh, rw));
        // numpy center_crop: top-left at half the difference, zero padding when the crop is
        // larger than the image. Only the part of the resized image inside the crop is
        // computed: the same values, but bounded by the crop however long the image's long
        // side resizes to.
        let top = (i64::from(rh) - i64::from(oh)).div_euclid(2);
        let left = (i64::from(rw) - i64::from(ow)).div_euclid(2);
        let inside = |start: i64, len: u32, size: u32| {
            let first = start.clamp(0, i64::from(size)) as u32;
            let end = (start + i64::from(len)).clamp(0, i64::from(size)) as u32;
            first..end.max(first)
        };
        let (cols, rows) = (inside(left, ow, rw), inside(top, oh, rh));
        let (x0, y0) = (i64::from(cols.start), i64::from(rows.start));
        let window = resize_window(rgb, rw, rh, self.filter, (cols, rows));
        let plane = oh as usize * ow as usize;
        let mut out = vec![0u8; 3 * plane];
        for (x, y, px) in window.enumerate_pixels() {
            // Where the window's pixel lands in the crop.
            let (cy, cx) = (
                (y0 + i64::from(y) - top) as usize,
                (x0 + i64::from(x) - left) as usize,
            );
            let at = cy * ow as usize + cx;
            for (c, &v) in px.0.iter().enumerate() {
                out[c * plane + at] = v;
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
        self.normalize_planes(&self.crop_rgb(rgb))
    }

    /// Rescales and normalizes 8-bit CHW planes (from [`Self::crop_bytes`]) into the f32
    /// values the model reads.
    pub fn normalize_planes(&self, planes: &[u8]) -> Vec<f32> {
        let mut values = Vec::with_capacity(planes.len());
        self.normalize_planes_into(planes, &mut values);
        values
    }

    /// [`Self::normalize_planes`], appending to `values` (one image of a batch's buffer).
    pub fn normalize_planes_into(&self, planes: &[u8], values: &mut Vec<f32>) {
        let plane = planes.len() / 3;
        let scale = self.rescale.unwrap_or(1.0);
        values.extend(planes.iter().enumerate().map(|(i, &v)| {
            let v = f32::from(v) * scale;
            match &self.normalize {
                Some((mean, std)) => (v - mean[i / plane]) / std[i / plane],
                None => v,
            }
        }));
    }

    /// Decodes, resizes and crops encoded image bytes (8-bit CHW planes).
    pub fn crop_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        Ok(self.crop_rgb(&self.decode(bytes)?))
    }

    /// Decodes and preprocesses encoded image bytes.
    pub fn process_bytes(&self, bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
        Ok(self.process_rgb(&self.decode(bytes)?))
    }

    /// Decodes, and refuses an image whose output would exceed the decoder's pixel limit:
    /// without a center crop, a shortest-edge resize of an image with an extreme aspect
    /// ratio (1×100000 pixels, a few hundred bytes of PNG) is billions of pixels.
    fn decode(&self, bytes: &[u8]) -> Result<RgbImage, DecodeError> {
        let rgb = decode_rgb(bytes)?;
        let (height, width) = self.output_size((rgb.height(), rgb.width()));
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(DecodeError::TooLarge { width, height });
        }
        Ok(rgb)
    }
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;
    use crate::models::resize::resize;

    /// CLIP's preprocessing at side `n`: shortest-edge resize, center crop if `crop`.
    fn clip(n: u32, crop: bool) -> Preprocessor {
        Preprocessor::from_json(&format!(
            r#"{{"size": {{"shortest_edge": {n}}}, "do_center_crop": {crop}, "crop_size": {n}}}"#
        ))
        .expect("config")
    }

    /// The pipeline as transformers runs it: resize the whole image, then crop (zero
    /// padding where the crop is larger).
    fn crop_of_whole_resize(pre: &Preprocessor, rgb: &RgbImage) -> Vec<u8> {
        let (rh, rw) = pre.resized_size((rgb.height(), rgb.width()));
        let resized = resize(rgb, rw, rh, pre.filter);
        let (oh, ow) = pre.crop.unwrap_or((rh, rw));
        let top = (i64::from(rh) - i64::from(oh)).div_euclid(2);
        let left = (i64::from(rw) - i64::from(ow)).div_euclid(2);
        let plane = (oh * ow) as usize;
        let mut out = vec![0u8; 3 * plane];
        for y in 0..i64::from(oh) {
            for x in 0..i64::from(ow) {
                let (sy, sx) = (y + top, x + left);
                if sy < 0 || sx < 0 || sy >= i64::from(rh) || sx >= i64::from(rw) {
                    continue;
                }
                let px = resized.get_pixel(sx as u32, sy as u32).0;
                for (c, v) in px.into_iter().enumerate() {
                    out[c * plane + (y * i64::from(ow) + x) as usize] = v;
                }
            }
        }
        out
    }

    #[test]
    fn the_crop_alone_has_the_values_of_the_whole_resize_cropped() {
        let squash = |n: u32, crop: u32, resample: u8| {
            Preprocessor::from_json(&format!(
                r#"{{"size": {{"height": {n}, "width": {n}}}, "crop_size": {crop},
                    "resample": {resample}}}"#
            ))
            .expect("config")
        };
        let configs = [
            clip(32, true),
            clip(17, true),
            squash(24, 30, 3), // crop larger than the image: zero padding
            squash(24, 11, 2),
        ];
        for (w, h) in [
            (7, 300),
            (300, 7),
            (50, 37),
            (37, 50),
            (20, 20),
            (5, 5),
            (1, 40),
        ] {
            let rgb = RgbImage::from_fn(w, h, |x, y| {
                Rgb([(x * 7 + y) as u8, (y * 13) as u8, (x * y) as u8])
            });
            for pre in &configs {
                assert_eq!(
                    pre.crop_rgb(&rgb),
                    crop_of_whole_resize(pre, &rgb),
                    "{w}x{h}, {pre:?}"
                );
            }
        }
    }

    /// Found reviewing for the fuzz target, confirmed with it (a libFuzzer timeout, then out
    /// of memory): a 1×100000 gray PNG of 275 bytes
    /// resizes to 224×22,400,000 pixels at shortest edge 224, 15 GB as RGB, before the
    /// center crop keeps 224×224 of it.
    #[test]
    fn an_extreme_aspect_ratio_is_bounded_by_the_crop() {
        let bytes = include_bytes!("../../tests/data/fuzz/tall-1x100000.png");
        assert_eq!(
            decode_rgb(bytes).map(|rgb| rgb.dimensions()),
            Ok((1, 100_000))
        );
        let planes = clip(224, true).crop_bytes(bytes).expect("crops");
        assert_eq!(planes.len(), 3 * 224 * 224);
        // Every pixel is gray 128, and so is every pixel of the crop.
        assert!(planes.iter().all(|&v| v == 128));
        let values = clip(224, true).process_bytes(bytes).expect("processes");
        assert_eq!(values.len(), 3 * 224 * 224);
        // Without a crop the output itself would be that size: refused.
        assert_eq!(
            clip(224, false).crop_bytes(bytes),
            Err(DecodeError::TooLarge {
                width: 224,
                height: 22_400_000
            })
        );
    }

    #[test]
    fn the_batch_buffer_and_the_tensor_steps_normalize_to_the_same_bits() {
        let pre = clip(8, true);
        let planes: Vec<u8> = (0..2 * 3 * 8 * 8).map(|i| (i * 37 % 256) as u8).collect();
        let mut values = Vec::new();
        for image in planes.chunks(3 * 8 * 8) {
            pre.normalize_planes_into(image, &mut values);
        }
        let tensor =
            Tensor::from_vec(planes, (2, 3, 8, 8), &candle_core::Device::Cpu).expect("tensor");
        let through_tensors = pre
            .normalize_tensor(&tensor)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .expect("normalizes");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&values), bits(&through_tensors));
    }
}
