//! Image dimensions from the encoded header, without decoding pixels.

use std::io::Cursor;

/// Width and height of encoded image bytes (any format the `image` crate is built with:
/// JPEG, PNG, WebP, GIF, BMP), or why they are not an image we can read.
pub fn dimensions(bytes: &[u8]) -> Result<(i32, i32), String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        let head: String = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(format!("unknown format (first bytes {head})"));
    }
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    match (i32::try_from(w), i32::try_from(h)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!("impossible dimensions {w}x{h}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_png_dimensions_and_refuses_text() {
        let mut png = Vec::new();
        image::RgbImage::new(3, 2)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encodes");
        assert_eq!(dimensions(&png), Ok((3, 2)));
        assert!(dimensions(b"hello, world").is_err());
        assert!(dimensions(&png[..20]).is_err());
        assert!(dimensions(&[]).is_err());
    }
}
