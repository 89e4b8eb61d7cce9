//! The report's HTML: one self-contained page (inline CSS and SVG, images as data URLs, no
//! scripts), with every text from the table escaped.

use std::io::Cursor;

use base64::Engine;

/// Longest side of an image thumbnail, in pixels; smaller images keep their size and are
/// scaled up by the browser.
const THUMB: u32 = 128;

/// `text` safe inside HTML elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A PNG data URL of the image in `bytes`, shrunk to fit [`THUMB`]; the decoder's message
/// when it is not an image.
pub fn thumbnail(bytes: &[u8]) -> Result<String, String> {
    let image = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())?;
    let image = if image.width() > THUMB || image.height() > THUMB {
        image.thumbnail(THUMB, THUMB)
    } else {
        image
    };
    let mut png = Vec::new();
    image
        .to_rgb8()
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    ))
}

/// One row shown in a grid.
#[derive(Debug, Clone, Default)]
pub struct Card {
    /// The row's id, when the table has `uid`.
    pub uid: Option<String>,
    /// The image bytes.
    pub img: Option<Vec<u8>>,
    /// The alt-text.
    pub txt: Option<String>,
    /// The score, NULL when the row has none.
    pub score: Option<f64>,
    /// The world's hidden truth, when the table has `truth_quality`.
    pub truth: Option<String>,
    /// Refined texts, when the table has them.
    pub long_pos: Option<String>,
    /// See `long_pos`.
    pub long_neg: Option<String>,
    /// Positive tags.
    pub short_pos: Vec<String>,
    /// Negative tags.
    pub short_neg: Vec<String>,
    /// Why refinement failed for the row.
    pub refine_error: Option<String>,
}

fn field(class: &str, name: &str, value: &str) -> String {
    format!(
        "<div class=\"{class}\"><span class=\"k\">{name}</span> {}</div>",
        escape(value)
    )
}

/// A card's HTML.
pub fn card_html(card: &Card, kept: bool) -> String {
    let mut html = format!(
        "<figure class=\"card {}\">",
        if kept { "kept" } else { "dropped" }
    );
    match card.img.as_deref().map(thumbnail) {
        Some(Ok(url)) => html.push_str(&format!("<img src=\"{url}\" alt=\"\">")),
        Some(Err(e)) => html.push_str(&format!(
            "<div class=\"noimg\">undecodable image: {}</div>",
            escape(&e)
        )),
        None => html.push_str("<div class=\"noimg\">no image (NULL)</div>"),
    }
    html.push_str("<figcaption>");
    let score = card
        .score
        .map_or_else(|| "NULL".to_string(), |s| format!("{s:.4}"));
    html.push_str(&format!("<div class=\"score\">score {score}</div>"));
    if let Some(truth) = &card.truth {
        html.push_str(&field("truth", "truth", truth));
    }
    let txt = card.txt.as_deref().unwrap_or("(NULL)");
    html.push_str(&field(
        "txt",
        "alt",
        if txt.is_empty() { "(empty)" } else { txt },
    ));
    if let Some(t) = &card.long_pos {
        html.push_str(&field("pos", "long+", t));
    }
    if let Some(t) = &card.long_neg {
        html.push_str(&field("neg", "long−", t));
    }
    for (tags, class) in [(&card.short_pos, "tag pos"), (&card.short_neg, "tag neg")] {
        if !tags.is_empty() {
            html.push_str("<div>");
            for t in tags {
                html.push_str(&format!("<span class=\"{class}\">{}</span>", escape(t)));
            }
            html.push_str("</div>");
        }
    }
    if let Some(e) = &card.refine_error {
        html.push_str(&field("err", "refine error", e));
    }
    if let Some(uid) = &card.uid {
        html.push_str(&format!("<div class=\"uid\">{}</div>", escape(uid)));
    }
    html.push_str("</figcaption></figure>");
    html
}

/// A titled grid of cards with a line saying what it shows.
pub fn grid_html(title: &str, note: &str, cards: &[Card], kept: bool) -> String {
    let mut html = format!(
        "<section><h2>{}</h2><p class=\"note\">{}</p><div class=\"grid\">",
        escape(title),
        escape(note)
    );
    if cards.is_empty() {
        html.push_str("<p class=\"note\">(no rows)</p>");
    }
    for card in cards {
        html.push_str(&card_html(card, kept));
    }
    html.push_str("</div></section>");
    html
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px}.note{color:#555}\
table.facts td{padding:2px 12px 2px 0}.grid{display:flex;flex-wrap:wrap;gap:10px}\
.card{width:260px;margin:0;border:2px solid #ccc;border-radius:6px;padding:6px;background:#fafafa}\
.card.kept{border-color:#2e7d32}.card.dropped{border-color:#9e9e9e}\
.card img{width:128px;height:128px;object-fit:contain;image-rendering:pixelated;display:block;margin:0 auto 4px}\
.noimg{height:128px;display:flex;align-items:center;justify-content:center;background:#fdecea;color:#b71c1c;text-align:center}\
.score{font-weight:600}.k{color:#777;font-size:12px}.txt,.pos,.neg,.truth,.err{font-size:12px;word-wrap:break-word}\
.neg{color:#8e2424}.err{color:#b71c1c}.uid{color:#999;font-size:10px}\
.tag{display:inline-block;font-size:11px;border-radius:3px;padding:0 4px;margin:1px}\
.tag.pos{background:#e8f5e9}.tag.neg{background:#fdecea}";

/// The whole page: a title, facts as rows of a table, then the sections in order.
pub fn page_html(title: &str, facts: &[(String, String)], sections: &[String]) -> String {
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body><h1>{}</h1><table class=\"facts\">",
        escape(title),
        escape(title)
    );
    for (k, v) in facts {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(k),
            escape(v)
        ));
    }
    html.push_str("</table>");
    for s in sections {
        html.push_str(s);
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn a_card_shows_a_bad_image_as_a_placeholder() {
        let card = Card {
            img: Some(b"not an image".to_vec()),
            txt: Some("<b>bold</b>".into()),
            score: Some(0.25),
            ..Card::default()
        };
        let html = card_html(&card, false);
        assert!(html.contains("undecodable image"), "{html}");
        assert!(
            html.contains("&lt;b&gt;bold") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("score 0.2500"));
    }

    #[test]
    fn thumbnails_are_png_data_urls_no_larger_than_the_limit() {
        let big = image::RgbImage::from_pixel(300, 150, image::Rgb([10, 200, 30]));
        let mut bytes = Vec::new();
        big.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .expect("png");
        let url = thumbnail(&bytes).expect("thumbnail");
        let png = base64::engine::general_purpose::STANDARD
            .decode(url.trim_start_matches("data:image/png;base64,"))
            .expect("base64");
        let back = image::load_from_memory(&png).expect("decodes");
        assert_eq!((back.width(), back.height()), (128, 64));
    }
}
