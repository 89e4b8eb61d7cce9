//! Encoded image bytes to 8-bit RGB, as `PIL.Image.open(...).convert("RGB")` gives them:
//! JPEG (including CMYK), PNG (any color type and depth), WebP, GIF (first frame) and BMP;
//! alpha is dropped, not composited. Decoding is bounded: a decompression bomb or absurd
//! header is an error for that image, never an allocation the machine cannot afford.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};

/// Why bytes did not become an image. The name is what error counts are keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Zero bytes.
    Empty,
    /// Not a format we decode.
    UnknownFormat,
    /// Dimensions beyond the limits (a decompression bomb or a corrupt header).
    TooLarge {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
    },
    /// The format was recognized but the data is broken (truncated, corrupt).
    Corrupt(String),
}

impl DecodeError {
    /// A short reason, stable for counting.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty image bytes",
            DecodeError::UnknownFormat => "not an image",
            DecodeError::TooLarge { .. } => "image too large",
            DecodeError::Corrupt(_) => "corrupt image",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge { width, height } => {
                write!(
                    f,
                    "image too large: {width}x{height} exceeds {MAX_PIXELS} pixels"
                )
            }
            DecodeError::Corrupt(detail) => write!(f, "corrupt image: {detail}"),
            other => f.write_str(other.reason()),
        }
    }
}

/// Pillow's `MAX_IMAGE_PIXELS`: larger images are treated as decompression bombs.
pub const MAX_PIXELS: u64 = 89_478_485;
/// The decoder's allocation ceiling for one image.
const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// Decodes `bytes` to RGB.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    // The codecs are third-party code reading untrusted bytes: a panic in one is this
    // image's error, not the query's (found by fuzzing: png 0.18.1 indexes out of bounds
    // expanding a palette whose PLTE length is not a multiple of 3).
    std::panic::catch_unwind(|| decode_unguarded(bytes)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(DecodeError::Corrupt(format!("decoder panicked: {message}")))
    })
}

fn decode_unguarded(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnknownFormat)?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
    ) {
        return Err(DecodeError::UnknownFormat);
    }
    if format == ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        // The decoder would fill the missing part with gray and succeed; Pillow refuses
        // ("image file is truncated"), and a half-gray image is not the pair's image.
        return Err(DecodeError::Corrupt(
            "truncated JPEG (no end-of-image marker)".into(),
        ));
    }
    let header = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let (width, height) = header;
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!("{width}x{height} image")));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DecodeError::TooLarge { width, height });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => DecodeError::TooLarge { width, height },
        other => DecodeError::Corrupt(other.to_string()),
    })?;
    Ok(image.to_rgb8())
}

/// Whether a JPEG stream ends: an end-of-image marker (FF D9) near the end of the bytes
/// (writers may append a little trailing data after it).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing finding: a palette PNG whose PLTE chunk is 49 bytes (not a multiple of 3)
    /// panics in png 0.18.1 (`transform/palette.rs`, slice index out of range); the
    /// image is corrupt, and says so.
    #[test]
    fn a_panicking_codec_is_a_corrupt_image() {
        let bytes = include_bytes!("../../tests/data/fuzz/png-plte-49-bytes.png");
        match decode_rgb(bytes) {
            Err(DecodeError::Corrupt(_)) => {}
            other => panic!("expected a corrupt image, got {other:?}"),
        }
    }
}
