//! Emoji (npm `emoji-datasource-google`): `package/emoji.json` lists every emoji with its
//! Unicode name, category and image file; `package/img/google/64/` holds the 64 px PNGs. Skin
//! tone variations are rows of their own, named as Unicode names them ("waving hand: medium
//! skin tone").

use std::path::Path;

use datafusion::common::{DataFusionError, Result};
use serde::Deserialize;

use super::super::problems::Problem;
use super::super::progress::Progress;
use super::super::sink::PoolSink;
use super::{locate, push_image_file};

const JSON: &str = "package/emoji.json";
const IMAGES: &str = "package/img/google/64";
const PACKAGE: &str = "emoji-datasource-google (tar -xzf, npm pack's tarball)";

#[derive(Debug, Deserialize)]
struct Emoji {
    name: Option<String>,
    unified: String,
    image: String,
    category: Option<String>,
    #[serde(default)]
    has_img_google: bool,
    #[serde(default)]
    skin_variations: Option<std::collections::BTreeMap<String, Variation>>,
}

#[derive(Debug, Deserialize)]
struct Variation {
    unified: String,
    image: String,
    #[serde(default)]
    has_img_google: bool,
}

/// The Unicode name of a skin tone modifier (`1F3FB` … `1F3FF`).
fn skin_tone(code: &str) -> Option<&'static str> {
    Some(match code {
        "1F3FB" => "light skin tone",
        "1F3FC" => "medium-light skin tone",
        "1F3FD" => "medium skin tone",
        "1F3FE" => "medium-dark skin tone",
        "1F3FF" => "dark skin tone",
        _ => return None,
    })
}

/// "waving hand" for `WAVING HAND`; with variation `1F3FD`: "waving hand: medium skin tone".
pub fn caption(name: &str, variation: Option<&str>) -> String {
    let mut text = name.to_lowercase();
    if let Some(codes) = variation {
        let tones: Vec<&str> = codes.split('-').filter_map(skin_tone).collect();
        if !tones.is_empty() {
            text.push_str(": ");
            text.push_str(&tones.join(", "));
        }
    }
    text
}

/// Ingests the unpacked package under `dir`.
pub fn ingest(dir: &Path, sink: &mut PoolSink, progress: &mut Progress) -> Result<()> {
    let json = locate(dir, JSON, PACKAGE)?;
    let images = locate(dir, IMAGES, PACKAGE)?;
    let text = std::fs::read(&json).map_err(|e| {
        DataFusionError::Execution(format!("cannot read '{}': {e}", json.display()))
    })?;
    let list: Vec<Emoji> = serde_json::from_slice(&text).map_err(|e| {
        DataFusionError::Execution(format!(
            "'{}' is not emoji-datasource's list: {e}",
            json.display()
        ))
    })?;
    let mut rows = Vec::new();
    for emoji in &list {
        let Some(name) = emoji.name.as_deref() else {
            sink.problem(
                Problem::NoCaption,
                format!("emoji {} has no name", emoji.unified),
            )?;
            continue;
        };
        if emoji.has_img_google {
            rows.push((
                &emoji.unified,
                &emoji.image,
                caption(name, None),
                &emoji.category,
            ));
        }
        for (codes, v) in emoji.skin_variations.iter().flatten() {
            if v.has_img_google {
                rows.push((
                    &v.unified,
                    &v.image,
                    caption(name, Some(codes)),
                    &emoji.category,
                ));
            }
        }
    }
    progress.set_total(rows.len() as u64, "emoji");
    for (done, (unified, image, txt, category)) in rows.into_iter().enumerate() {
        push_image_file(
            sink,
            &images.join(image),
            format!("emoji/{}", unified.to_lowercase()),
            Some(txt),
            category.clone(),
        )?;
        progress.update(done as u64 + 1, sink.rows(), sink.problem_count());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_name_skin_tones() {
        assert_eq!(caption("WAVING HAND", None), "waving hand");
        assert_eq!(
            caption("WAVING HAND", Some("1F3FD")),
            "waving hand: medium skin tone"
        );
        assert_eq!(
            caption("HANDSHAKE", Some("1F3FB-1F3FF")),
            "handshake: light skin tone, dark skin tone"
        );
    }
}
