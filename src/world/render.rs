//! Rendering: a scene to anti-aliased pixels with tiny-skia, then to PNG or JPEG bytes.
//!
//! Outlines are fixed point lists (no trigonometry at run time), so the pixels depend only
//! on the scene, the side and tiny-skia.

use datafusion::common::{DataFusionError, Result};
use image::ImageEncoder;
use tiny_skia::{
    FillRule, GradientStop, LinearGradient, Paint, Path, PathBuilder, Pixmap, Point, Rect,
    SpreadMode, Transform,
};

use super::scene::{Background, Object, Pattern, Scene};
use super::vocab::{BackgroundKind, Shape};

/// How an image is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lossless PNG (fast compression).
    Png,
    /// JPEG at quality 90.
    Jpeg,
}

impl Encoding {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Png => "png",
            Encoding::Jpeg => "jpg",
        }
    }
}

/// Star vertices (outer radius 1, inner 0.42), from the top, clockwise.
const STAR: [(f32, f32); 10] = [
    (0.0, -1.0),
    (0.246_87, -0.339_79),
    (0.951_057, -0.309_017),
    (0.399_44, 0.129_79),
    (0.587_785, 0.809_017),
    (0.0, 0.42),
    (-0.587_785, 0.809_017),
    (-0.399_44, 0.129_79),
    (-0.951_057, -0.309_017),
    (-0.246_87, -0.339_79),
];

const HEXAGON: [(f32, f32); 6] = [
    (1.0, 0.0),
    (0.5, 0.866_025),
    (-0.5, 0.866_025),
    (-1.0, 0.0),
    (-0.5, -0.866_025),
    (0.5, -0.866_025),
];

const TRIANGLE: [(f32, f32); 3] = [(0.0, -1.0), (0.866_025, 0.5), (-0.866_025, 0.5)];

const DIAMOND: [(f32, f32); 4] = [(0.0, -1.0), (0.72, 0.0), (0.0, 1.0), (-0.72, 0.0)];

const SQUARE: [(f32, f32); 4] = [(-0.7, -0.7), (0.7, -0.7), (0.7, 0.7), (-0.7, 0.7)];

const CROSS: [(f32, f32); 12] = [
    (-0.3, -0.95),
    (0.3, -0.95),
    (0.3, -0.3),
    (0.95, -0.3),
    (0.95, 0.3),
    (0.3, 0.3),
    (0.3, 0.95),
    (-0.3, 0.95),
    (-0.3, 0.3),
    (-0.95, 0.3),
    (-0.95, -0.3),
    (-0.3, -0.3),
];

fn polygon(points: &[(f32, f32)], cx: f32, cy: f32, r: f32) -> Option<Path> {
    let mut pb = PathBuilder::new();
    let (x0, y0) = points.first()?;
    pb.move_to(cx + x0 * r, cy + y0 * r);
    for (x, y) in &points[1..] {
        pb.line_to(cx + x * r, cy + y * r);
    }
    pb.close();
    pb.finish()
}

fn heart(cx: f32, cy: f32, r: f32) -> Option<Path> {
    let p = |x: f32, y: f32| (cx + x * r * 0.95, cy + (y + 0.05) * r * 0.95);
    let mut pb = PathBuilder::new();
    let (x, y) = p(0.0, 0.85);
    pb.move_to(x, y);
    let segments = [
        [(-0.2, 0.65), (-1.0, 0.2), (-1.0, -0.3)],
        [(-1.0, -0.78), (-0.42, -0.98), (0.0, -0.52)],
        [(0.42, -0.98), (1.0, -0.78), (1.0, -0.3)],
        [(1.0, 0.2), (0.2, 0.65), (0.0, 0.85)],
    ];
    for [a, b, c] in segments {
        let (ax, ay) = p(a.0, a.1);
        let (bx, by) = p(b.0, b.1);
        let (x, y) = p(c.0, c.1);
        pb.cubic_to(ax, ay, bx, by, x, y);
    }
    pb.close();
    pb.finish()
}

/// The object's outline in pixels, and the fill rule it needs.
fn outline(object: &Object, side: f32) -> Option<(Path, FillRule)> {
    let (cx, cy) = (object.center.0 * side, object.center.1 * side);
    let r = object.radius * side;
    let path = match object.shape {
        Shape::Circle => PathBuilder::from_circle(cx, cy, r * 0.95)?,
        Shape::Ring => {
            let mut pb = PathBuilder::new();
            pb.push_circle(cx, cy, r * 0.95);
            pb.push_circle(cx, cy, r * 0.55);
            return Some((pb.finish()?, FillRule::EvenOdd));
        }
        Shape::Square => polygon(&SQUARE, cx, cy, r)?,
        Shape::Triangle => polygon(&TRIANGLE, cx, cy + r * 0.12, r)?,
        Shape::Star => polygon(&STAR, cx, cy + r * 0.05, r)?,
        Shape::Heart => heart(cx, cy, r)?,
        Shape::Cross => polygon(&CROSS, cx, cy, r)?,
        Shape::Diamond => polygon(&DIAMOND, cx, cy, r)?,
        Shape::Hexagon => polygon(&HEXAGON, cx, cy, r)?,
    };
    Some((path, FillRule::Winding))
}

fn color(rgb: [u8; 3]) -> tiny_skia::Color {
    tiny_skia::Color::from_rgba8(rgb[0], rgb[1], rgb[2], 255)
}

/// `rgb` moved towards white (`amount` > 0) or black (`amount` < 0).
fn shade(rgb: [u8; 3], amount: f32) -> [u8; 3] {
    rgb.map(|c| {
        let c = f32::from(c);
        let target = if amount > 0.0 { 255.0 } else { 0.0 };
        (c + (target - c) * amount.abs()).round().clamp(0.0, 255.0) as u8
    })
}

/// A lighter or darker shade that stays recognisably the same color.
fn contrast_shade(rgb: [u8; 3], amount: f32) -> [u8; 3] {
    let luma = 0.299 * f32::from(rgb[0]) + 0.587 * f32::from(rgb[1]) + 0.114 * f32::from(rgb[2]);
    if luma > 150.0 {
        shade(rgb, -amount)
    } else {
        shade(rgb, amount)
    }
}

fn paint_background(pixmap: &mut Pixmap, background: &Background, side: f32) -> Option<()> {
    pixmap.fill(color(background.rgb));
    let full = Rect::from_xywh(0.0, 0.0, side, side)?;
    match background.kind {
        BackgroundKind::Solid => {}
        BackgroundKind::Gradient => {
            // One of 8 compass directions, corner to corner or edge to edge.
            const DIRS: [(f32, f32, f32, f32); 8] = [
                (0.0, 0.0, 1.0, 0.0),
                (0.0, 0.0, 1.0, 1.0),
                (0.0, 0.0, 0.0, 1.0),
                (1.0, 0.0, 0.0, 1.0),
                (1.0, 0.0, 0.0, 0.0),
                (1.0, 1.0, 0.0, 0.0),
                (0.0, 1.0, 0.0, 0.0),
                (0.0, 1.0, 1.0, 0.0),
            ];
            let (x0, y0, x1, y1) = DIRS[background.direction % DIRS.len()];
            let shader = LinearGradient::new(
                Point::from_xy(x0 * side, y0 * side),
                Point::from_xy(x1 * side, y1 * side),
                vec![
                    GradientStop::new(0.0, color(shade(background.rgb, 0.28))),
                    GradientStop::new(1.0, color(shade(background.rgb, -0.22))),
                ],
                SpreadMode::Pad,
                Transform::identity(),
            )?;
            let paint = Paint {
                shader,
                ..Paint::default()
            };
            pixmap.fill_rect(full, &paint, Transform::identity(), None);
        }
        BackgroundKind::Textured => {
            let mut paint = Paint::default();
            paint.set_color(color(contrast_shade(background.rgb, 0.22)));
            let period = (background.period * side).max(3.0);
            let mut pb = PathBuilder::new();
            let cells = (side / period).ceil() as i32 + 1;
            match background.pattern {
                Pattern::Stripes => {
                    // Diagonal bands half a period wide.
                    let w = period / 2.0;
                    for k in -cells..=cells {
                        let x = k as f32 * period;
                        pb.move_to(x, 0.0);
                        pb.line_to(x + w, 0.0);
                        pb.line_to(x + w + side, side);
                        pb.line_to(x + side, side);
                        pb.close();
                    }
                }
                Pattern::Dots => {
                    for i in 0..cells {
                        for j in 0..cells {
                            let x = (i as f32 + 0.5) * period;
                            let y = (j as f32 + 0.5) * period;
                            pb.push_circle(x, y, period * 0.2);
                        }
                    }
                }
                Pattern::Checks => {
                    for i in 0..cells {
                        for j in 0..cells {
                            if (i + j) % 2 == 0
                                && let Some(rect) = Rect::from_xywh(
                                    i as f32 * period,
                                    j as f32 * period,
                                    period,
                                    period,
                                )
                            {
                                pb.push_rect(rect);
                            }
                        }
                    }
                }
            }
            if let Some(path) = pb.finish() {
                pixmap.fill_path(
                    &path,
                    &paint,
                    FillRule::Winding,
                    Transform::identity(),
                    None,
                );
            }
        }
    }
    Some(())
}

/// Renders a scene as `side`×`side` RGB8 pixels, anti-aliased.
pub fn rasterize(scene: &Scene, side: u32) -> Result<Vec<u8>> {
    let failed = || DataFusionError::Execution(format!("cannot render a {side}x{side} scene"));
    let mut pixmap = Pixmap::new(side, side).ok_or_else(failed)?;
    let s = side as f32;
    paint_background(&mut pixmap, &scene.background, s).ok_or_else(failed)?;
    for object in &scene.objects {
        let (path, rule) = outline(object, s).ok_or_else(failed)?;
        let mut paint = Paint::default();
        paint.set_color(color(object.rgb));
        paint.anti_alias = true;
        pixmap.fill_path(&path, &paint, rule, Transform::identity(), None);
    }
    // Every pixel is opaque (the background covers the canvas), so premultiplied RGBA is RGBA.
    Ok(pixmap
        .data()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect())
}

/// Encodes RGB8 pixels.
pub fn encode(rgb: &[u8], side: u32, encoding: Encoding) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rgb.len() / 4);
    let result = match encoding {
        Encoding::Png => image::codecs::png::PngEncoder::new_with_quality(
            &mut out,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        )
        .write_image(rgb, side, side, image::ExtendedColorType::Rgb8),
        Encoding::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(rgb, side, side, image::ExtendedColorType::Rgb8),
    };
    result.map_err(|e| DataFusionError::Execution(format!("cannot encode an image: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::rng::Rng;

    #[test]
    fn objects_are_drawn_in_their_color_with_soft_edges() {
        let mut rng = Rng::stream(11, &[0]);
        let mut scene = Scene::single(&mut rng, Shape::Circle, crate::world::vocab::Color::Red);
        scene.background.kind = BackgroundKind::Solid;
        let side = 64;
        let rgb = rasterize(&scene, side).expect("renders");
        assert_eq!(rgb.len(), (side * side * 3) as usize);
        let object = &scene.objects[0];
        let pixel = |x: usize, y: usize| -> [u8; 3] {
            let i = (y * side as usize + x) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        let (cx, cy) = (
            (object.center.0 * side as f32) as usize,
            (object.center.1 * side as f32) as usize,
        );
        assert_eq!(pixel(cx, cy), object.rgb);
        assert_eq!(pixel(0, 0), scene.background.rgb);
        // Anti-aliasing: the edge has pixels that are neither color.
        let blended = (0..side as usize)
            .flat_map(|y| (0..side as usize).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let p = pixel(x, y);
                p != object.rgb && p != scene.background.rgb
            })
            .count();
        assert!(blended > 10, "{blended} blended pixels");
        let png = encode(&rgb, side, Encoding::Png).expect("encodes");
        assert!(png.starts_with(b"\x89PNG"));
        let jpeg = encode(&rgb, side, Encoding::Jpeg).expect("encodes");
        assert!(jpeg.starts_with(&[0xFF, 0xD8]));
    }
}
