//! Training-time image preprocessing: decode, random resized crop (torchvision's
//! `RandomResizedCrop`: area share and log-uniform aspect ratio, ten tries, then a center
//! crop), bicubic resize to the model's side, rescale and normalize. No horizontal flip: the
//! captions say left and right.

use hqflow_udfs::models::image_decode::{DecodeError, decode_rgb};
use hqflow_udfs::models::preprocess::Preprocessor;
use hqflow_udfs::models::resize::{Filter, resize};
use image::RgbImage;

use crate::world::rng::Rng;

/// The crop's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    /// Output side.
    pub size: u32,
    /// Range of the crop's share of the image area.
    pub scale: [f64; 2],
    /// Range of the crop's aspect ratio (width / height).
    pub ratio: [f64; 2],
}

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.unit()
}

/// The crop window (left, top, width, height) for an image of `w`×`h`.
pub fn crop_window(w: u32, h: u32, crop: &Crop, rng: &mut Rng) -> (u32, u32, u32, u32) {
    let area = f64::from(w) * f64::from(h);
    let (lr0, lr1) = (crop.ratio[0].ln(), crop.ratio[1].ln());
    for _ in 0..10 {
        let target = area * uniform(rng, crop.scale[0], crop.scale[1]);
        let ratio = uniform(rng, lr0, lr1).exp();
        let cw = (target * ratio).sqrt().round() as u32;
        let ch = (target / ratio).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let left = rng.below((w - cw + 1) as usize) as u32;
            let top = rng.below((h - ch + 1) as usize) as u32;
            return (left, top, cw, ch);
        }
    }
    let in_ratio = f64::from(w) / f64::from(h.max(1));
    let (cw, ch) = if in_ratio < crop.ratio[0] {
        (
            w,
            ((f64::from(w) / crop.ratio[0]).round() as u32).clamp(1, h),
        )
    } else if in_ratio > crop.ratio[1] {
        (
            ((f64::from(h) * crop.ratio[1]).round() as u32).clamp(1, w),
            h,
        )
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

/// Decodes `bytes` and returns augmented CHW pixels normalized by `norm` (whose resize and
/// crop are not used).
pub fn augment(
    bytes: &[u8],
    crop: &Crop,
    norm: &Preprocessor,
    rng: &mut Rng,
) -> Result<Vec<f32>, DecodeError> {
    let rgb = decode_rgb(bytes)?;
    let (left, top, cw, ch) = crop_window(rgb.width(), rgb.height(), crop, rng);
    let window: RgbImage = image::imageops::crop_imm(&rgb, left, top, cw, ch).to_image();
    let sized = resize(&window, crop.size, crop.size, norm.filter);
    Ok(normalizer(norm).process_rgb(&sized))
}

/// `pre` without its resize and crop: rescale and normalize only.
fn normalizer(pre: &Preprocessor) -> Preprocessor {
    Preprocessor {
        resize: None,
        filter: Filter::Bicubic,
        crop: None,
        rescale: pre.rescale,
        normalize: pre.normalize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_stay_inside_and_respect_the_area_range() {
        let crop = Crop {
            size: 32,
            scale: [0.5, 1.0],
            ratio: [0.75, 4.0 / 3.0],
        };
        let mut rng = Rng::stream(3, &[4]);
        for _ in 0..500 {
            let (l, t, w, h) = crop_window(64, 48, &crop, &mut rng);
            assert!(l + w <= 64 && t + h <= 48 && w > 0 && h > 0);
            let share = f64::from(w * h) / f64::from(64 * 48);
            assert!(share > 0.4 && share <= 1.0, "{share}");
        }
    }
}
