//! openclipart: the PNGs of Debian `openclipart-png`, captioned from the metadata of the
//! matching SVG in `openclipart-svg` (same relative path). Some PNGs are symbolic links to the
//! same picture under another category; each path is a row, as the package lists it.

use std::path::Path;

use datafusion::common::Result;

use super::super::problems::Problem;
use super::super::progress::Progress;
use super::super::sink::PoolSink;
use super::super::walk::{files, split_ext};
use super::svg_metadata::SvgMetadata;
use super::{locate, push_image_file};

const PNG_DIR: &str = "usr/share/openclipart/png";
const SVG_DIR: &str = "usr/share/openclipart/svg";
const PACKAGES: &str = "openclipart-png and openclipart-svg (dpkg-deb -x)";

/// Ingests the unpacked packages under `dir`.
pub fn ingest(dir: &Path, sink: &mut PoolSink, progress: &mut Progress) -> Result<()> {
    let png_dir = locate(dir, PNG_DIR, PACKAGES)?;
    let svg_dir = locate(dir, SVG_DIR, PACKAGES)?;
    let pngs: Vec<String> = files(&png_dir)?
        .into_iter()
        .filter(|rel| split_ext(rel).1 == "png")
        .collect();
    progress.set_total(pngs.len() as u64, "images");
    for (done, rel) in pngs.iter().enumerate() {
        let stem = split_ext(rel).0;
        let svg_path = svg_dir.join(format!("{stem}.svg"));
        let txt = match std::fs::read(&svg_path) {
            Ok(bytes) => SvgMetadata::parse(&String::from_utf8_lossy(&bytes)).caption(),
            Err(e) => {
                sink.problem(Problem::NoCaption, format!("'{}': {e}", svg_path.display()))?;
                continue;
            }
        };
        let label = stem
            .rsplit_once('/')
            .map(|(category, _)| category.to_string());
        push_image_file(
            sink,
            &png_dir.join(rel),
            format!("openclipart/{stem}"),
            txt,
            label,
        )?;
        progress.update(done as u64 + 1, sink.rows(), sink.problem_count());
    }
    Ok(())
}
