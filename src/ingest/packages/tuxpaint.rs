//! Tux Paint stamps (Debian `tuxpaint-stamps-default`, GPL: fetched at test time, never
//! committed): each stamp's `NAME.txt` starts with a human-written English sentence (the lines
//! after it are translations, `lang.utf8=…`). Stamps drawn only as SVG (no PNG) are counted
//! as skipped: hqflow does not rasterize SVG.

use std::collections::HashSet;
use std::path::Path;

use datafusion::common::Result;

use super::super::problems::Problem;
use super::super::progress::Progress;
use super::super::sink::PoolSink;
use super::super::walk::{files, split_ext};
use super::{locate, push_image_file};

const STAMPS_DIR: &str = "usr/share/tuxpaint/stamps";

/// The English sentence of a stamp description: its first line that is not a translation.
pub fn english(description: &str) -> Option<String> {
    description
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !is_translation(line))
        .map(str::to_string)
}

/// `de.utf8=…`, `ca@valencia.utf8=…`, `pt_BR.utf8=…`.
fn is_translation(line: &str) -> bool {
    line.split_once(".utf8=").is_some_and(|(lang, _)| {
        !lang.is_empty()
            && lang
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '-'))
    })
}

/// Ingests the unpacked package under `dir`.
pub fn ingest(dir: &Path, sink: &mut PoolSink, progress: &mut Progress) -> Result<()> {
    let stamps = locate(dir, STAMPS_DIR, "tuxpaint-stamps-default (dpkg-deb -x)")?;
    let all = files(&stamps)?;
    let descriptions: Vec<&String> = all.iter().filter(|r| split_ext(r).1 == "txt").collect();
    progress.set_total(descriptions.len() as u64, "stamps");
    for (done, rel) in descriptions.iter().enumerate() {
        let stem = split_ext(rel).0;
        let png = stamps.join(format!("{stem}.png"));
        let svg = stamps.join(format!("{stem}.svg"));
        if !png.is_file() {
            if svg.is_file() {
                sink.skip("stamps drawn only as SVG");
            } else {
                sink.problem(Problem::NoImage, format!("stamp '{rel}' has no picture"))?;
            }
            continue;
        }
        let text = match std::fs::read(stamps.join(rel)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                sink.problem(Problem::Unreadable, format!("stamp '{rel}': {e}"))?;
                continue;
            }
        };
        let Some(txt) = english(&text) else {
            sink.problem(
                Problem::NoCaption,
                format!("stamp '{rel}' has no English sentence"),
            )?;
            continue;
        };
        let label = stem
            .rsplit_once('/')
            .map(|(category, _)| category.to_string());
        push_image_file(
            sink,
            &png,
            format!("tuxpaint-stamps/{stem}"),
            Some(txt),
            label,
        )?;
        progress.update(done as u64 + 1, sink.rows(), sink.problem_count());
    }
    let described: HashSet<&str> = descriptions.iter().map(|r| split_ext(r).0).collect();
    for rel in &all {
        let (stem, ext) = split_ext(rel);
        if ext == "png" && !described.contains(stem) {
            sink.skip("stamp pictures without a description (mirror images)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_is_the_first_line_that_is_not_a_translation() {
        let text = "\nA US 25 cent piece ($.25) called a quarter.\nde.utf8=Eine Münze.\n";
        assert_eq!(
            english(text).as_deref(),
            Some("A US 25 cent piece ($.25) called a quarter.")
        );
        assert_eq!(
            english("ca@valencia.utf8=Una moneda.\npt_BR.utf8=Uma."),
            None
        );
        assert_eq!(english(""), None);
    }
}
