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

/// Per output pixel of a run of output pixels: the first input index, and fixed-point
/// weights for the inputs from it.
struct Coefficients {
    starts: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

impl Coefficients {
    /// The input indices these coefficients read.
    fn span(&self) -> std::ops::Range<usize> {
        let first = self.starts.iter().copied().min().unwrap_or(0);
        let end = (self.starts.iter().zip(&self.weights))
            .map(|(s, w)| s + w.len())
            .max()
            .unwrap_or(first);
        first..end.max(first)
    }
}

/// Coefficients for output pixels `outputs` (a sub-range of `0..out_size`). An output
/// pixel's coefficients depend only on its own index, so these are the same as that run of
/// the coefficients of the whole output.
fn coefficients(
    in_size: usize,
    out_size: usize,
    outputs: std::ops::Range<usize>,
    filter: Filter,
) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut starts = Vec::with_capacity(outputs.len());
    let mut weights = Vec::with_capacity(outputs.len());
    for xx in outputs {
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

/// The horizontal pass over rows `rows` of `src`, one output column per coefficient entry;
/// `src`'s column 0 is input column `offset`.
fn horizontal(
    src: &RgbImage,
    c: &Coefficients,
    rows: std::ops::Range<usize>,
    offset: usize,
) -> RgbImage {
    let in_w = src.width() as usize;
    let out_w = c.starts.len();
    let data = src.as_raw();
    let mut out = Vec::with_capacity(out_w * rows.len() * 3);
    for y in rows.clone() {
        let row = &data[y * in_w * 3..(y + 1) * in_w * 3];
        for (&start, weights) in c.starts.iter().zip(&c.weights) {
            let start = start - offset;
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (k, &w) in weights.iter().enumerate() {
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

/// The vertical pass over columns `cols` of `src`, one output row per coefficient entry;
/// `src`'s row 0 is input row `offset`.
fn vertical(
    src: &RgbImage,
    c: &Coefficients,
    offset: usize,
    cols: std::ops::Range<usize>,
) -> RgbImage {
    let w = src.width() as usize;
    let data = src.as_raw();
    let mut out = Vec::with_capacity(cols.len() * c.starts.len() * 3);
    for (&start, weights) in c.starts.iter().zip(&c.weights) {
        let start = start - offset;
        for x in cols.clone() {
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (k, &wt) in weights.iter().enumerate() {
                let i = ((start + k) * w + x) * 3;
                for ch in 0..3 {
                    acc[ch] += i64::from(data[i + ch]) * i64::from(wt);
                }
            }
            out.extend(acc.iter().map(|&a| clip8(a)));
        }
    }
    RgbImage::from_raw(cols.len() as u32, c.starts.len() as u32, out)
        .expect("buffer size matches dimensions")
}

/// Columns `cols` and rows `rows` of `src`, copied.
fn sub_image(
    src: &RgbImage,
    cols: std::ops::Range<usize>,
    rows: std::ops::Range<usize>,
) -> RgbImage {
    let w = src.width() as usize;
    let data = src.as_raw();
    let mut out = Vec::with_capacity(cols.len() * rows.len() * 3);
    for y in rows.clone() {
        out.extend_from_slice(&data[(y * w + cols.start) * 3..(y * w + cols.end) * 3]);
    }
    RgbImage::from_raw(cols.len() as u32, rows.len() as u32, out)
        .expect("buffer size matches dimensions")
}

/// Resizes `src` to `width`×`height` exactly as Pillow's `resize(..., resample=filter)`.
///
/// Pass order matters for the 8-bit intermediate: Pillow (since 12) runs the vertical pass
/// first when the height shrinks by more than twice as many pixels as the width, and the
/// horizontal pass first otherwise (rule checked against Pillow 13 on random sizes).
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    resize_window(src, width, height, filter, (0..width, 0..height))
}

/// The window `cols`×`rows` of [`resize`]`(src, width, height, filter)`, computed without
/// the rest of it: the same values, in time and memory that follow the window and the input
/// rather than the whole output (a center crop of an image with an extreme aspect ratio
/// would otherwise resize to billions of pixels first). The window is clamped to the image.
pub fn resize_window(
    src: &RgbImage,
    width: u32,
    height: u32,
    filter: Filter,
    (cols, rows): (std::ops::Range<u32>, std::ops::Range<u32>),
) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let clamp = |r: std::ops::Range<u32>, n: usize| {
        let end = (r.end as usize).min(n);
        (r.start as usize).min(end)..end
    };
    let (cols, rows) = (clamp(cols, out_w), clamp(rows, out_h));
    if cols.is_empty() || rows.is_empty() {
        return RgbImage::new(cols.len() as u32, rows.len() as u32);
    }
    if (in_w, in_h) == (out_w, out_h) {
        return sub_image(src, cols, rows);
    }
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    let horz = need_h.then(|| coefficients(in_w, out_w, cols.clone(), filter));
    let vert = need_v.then(|| coefficients(in_h, out_h, rows.clone(), filter));
    // The input columns and rows the window reads.
    let in_cols = horz.as_ref().map_or(cols.clone(), Coefficients::span);
    let in_rows = vert.as_ref().map_or(rows.clone(), Coefficients::span);
    let shrink_h = in_h as i64 - out_h as i64;
    let shrink_w = in_w as i64 - out_w as i64;
    let vertical_first = in_h > out_h && shrink_h > 2 * shrink_w;
    if vertical_first {
        let tmp = match &vert {
            Some(vert) => vertical(src, vert, 0, in_cols.clone()),
            None => sub_image(src, in_cols.clone(), rows.clone()),
        };
        return match &horz {
            Some(horz) => horizontal(&tmp, horz, 0..tmp.height() as usize, in_cols.start),
            None => tmp,
        };
    }
    let tmp = match &horz {
        Some(horz) => horizontal(src, horz, in_rows.clone(), 0),
        None => sub_image(src, in_cols.clone(), in_rows.clone()),
    };
    match &vert {
        Some(vert) => vertical(&tmp, vert, in_rows.start, 0..tmp.width() as usize),
        None => tmp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise: the worst case for resampling, every pixel different.
    fn noise(width: u32, height: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed)
                .wrapping_mul(2_246_822_519);
            image::Rgb([(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8])
        })
    }

    #[test]
    fn a_window_is_that_part_of_the_whole_resize() {
        // Both pass orders, one pass only, up- and downscaling, degenerate sizes.
        let sizes = [
            (1, 1),
            (1, 7),
            (7, 1),
            (5, 40),
            (40, 5),
            (30, 170),
            (64, 48),
        ];
        let outs = [
            (1, 1),
            (3, 9),
            (9, 3),
            (16, 16),
            (28, 20),
            (50, 20),
            (20, 48),
            (64, 20),
            (128, 96),
        ];
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            for (seed, &(w, h)) in sizes.iter().enumerate() {
                let src = noise(w, h, seed as u32);
                for &(ow, oh) in &outs {
                    let whole = resize(&src, ow, oh, filter);
                    assert_eq!(whole.dimensions(), (ow, oh));
                    let windows = [
                        (ow / 3..ow / 3 + ow / 2 + 1, oh / 4..oh - oh / 4),
                        (ow - 1..ow, 0..1),
                        (0..ow + 5, oh / 2..oh + 3),
                        (2..2, 0..oh),
                    ];
                    for (cols, rows) in windows {
                        let part =
                            resize_window(&src, ow, oh, filter, (cols.clone(), rows.clone()));
                        let (x0, x1) = (cols.start.min(ow), cols.end.min(ow));
                        let (y0, y1) = (rows.start.min(oh), rows.end.min(oh));
                        let (pw, ph) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
                        let expected = image::imageops::crop_imm(&whole, x0, y0, pw, ph).to_image();
                        assert_eq!(
                            part, expected,
                            "{w}x{h} -> {ow}x{oh} {filter:?}, window {cols:?} x {rows:?}"
                        );
                    }
                }
            }
        }
    }
}
