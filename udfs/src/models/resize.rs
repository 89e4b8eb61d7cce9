//! Image resampling that reproduces Pillow's `Image.resize` for 8-bit RGB
//! (`libImaging/Resample.c`): separable convolution, horizontal pass first, with the filter
//! support widened by the scale when downsampling (antialiasing), coefficients in 22-bit
//! fixed point, and an 8-bit intermediate image. CLIP checkpoints are preprocessed with
//! Pillow, so matching it bit for bit keeps embeddings equal to the reference.

use image::RgbImage;

/// A resampling filter, as `preprocessor_config.json`'s `resample` numbers them (PIL's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `resample = 2`.
    Bilinear,
    /// `resample = 3` (CLIP's).
    Bicubic,
}

impl Filter {
    /// PIL's resample number to a filter we implement.
    pub fn from_pil(code: i64) -> Option<Filter> {
        match code {
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input index, and fixed-point weights for the inputs from it.
struct Coefficients {
    starts: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut starts = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // `as i64` truncates toward zero, as C's (int) cast does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let raw: Vec<f64> = (0..count)
            .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        starts.push(xmin);
        weights.push(fixed);
    }
    Coefficients { starts, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

fn horizontal(
    src: &RgbImage,
    out_w: usize,
    rows: std::ops::Range<usize>,
    filter: Filter,
) -> RgbImage {
    let in_w = src.width() as usize;
    let c = coefficients(in_w, out_w, filter);
    let data = src.as_raw();
    let mut out = Vec::with_capacity(out_w * rows.len() * 3);
    for y in rows.clone() {
        let row = &data[y * in_w * 3..(y + 1) * in_w * 3];
        for xx in 0..out_w {
            let start = c.starts[xx];
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (k, &w) in c.weights[xx].iter().enumerate() {
                let p = &row[(start + k) * 3..(start + k) * 3 + 3];
                for ch in 0..3 {
                    acc[ch] += i64::from(p[ch]) * i64::from(w);
                }
            }
            out.extend(acc.iter().map(|&a| clip8(a)));
        }
    }
    RgbImage::from_raw(out_w as u32, rows.len() as u32, out)
        .expect("buffer size matches dimensions")
}

fn vertical(src: &RgbImage, out_h: usize, c: &Coefficients, offset: usize) -> RgbImage {
    let w = src.width() as usize;
    let data = src.as_raw();
    let mut out = Vec::with_capacity(w * out_h * 3);
    for yy in 0..out_h {
        let start = c.starts[yy] - offset;
        for x in 0..w {
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (k, &wt) in c.weights[yy].iter().enumerate() {
                let i = ((start + k) * w + x) * 3;
                for ch in 0..3 {
                    acc[ch] += i64::from(data[i + ch]) * i64::from(wt);
                }
            }
            out.extend(acc.iter().map(|&a| clip8(a)));
        }
    }
    RgbImage::from_raw(w as u32, out_h as u32, out).expect("buffer size matches dimensions")
}

/// Resizes `src` to `width`×`height` exactly as Pillow's `resize(..., resample=filter)`.
///
/// Pass order matters for the 8-bit intermediate: Pillow (since 12) runs the vertical pass
/// first when the height shrinks by more than twice as many pixels as the width, and the
/// horizontal pass first otherwise (rule checked against Pillow 13 on random sizes).
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if out_w == 0 || out_h == 0 {
        return RgbImage::new(width, height);
    }
    if (in_w, in_h) == (out_w, out_h) {
        return src.clone();
    }
    let vert = coefficients(in_h, out_h, filter);
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    let shrink_h = in_h as i64 - out_h as i64;
    let shrink_w = in_w as i64 - out_w as i64;
    let vertical_first = in_h > out_h && shrink_h > 2 * shrink_w;
    if vertical_first {
        let tmp = if need_v {
            vertical(src, out_h, &vert, 0)
        } else {
            src.clone()
        };
        return if need_h {
            horizontal(&tmp, out_w, 0..out_h, filter)
        } else {
            tmp
        };
    }
    // Only the input rows the vertical pass reads go through the horizontal pass.
    let first = vert.starts[0];
    let last = vert.starts[out_h - 1] + vert.weights[out_h - 1].len();
    let tmp;
    let (stage, offset) = if need_h {
        tmp = horizontal(src, out_w, first..last, filter);
        (&tmp, first)
    } else {
        (src, 0)
    };
    if need_v {
        vertical(stage, out_h, &vert, offset)
    } else {
        stage.clone()
    }
}
