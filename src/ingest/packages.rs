//! `ingest package`: pools made from Debian and npm packages, fetched without installing and
//! unpacked (`tests/data/packages/fetch_pools.sh`):
//!
//! | name | package(s) | rows | `txt` | `label` |
//! |---|---|---|---|---|
//! | `openclipart` | Debian `openclipart-png` + `openclipart-svg` | 8,121 | SVG title, description, keywords | category directory |
//! | `tuxpaint-stamps` | Debian `tuxpaint-stamps-default` | stamps with a PNG | the stamp's English sentence | category directory |
//! | `fashion-mnist` | Debian `dataset-fashion-mnist` | 70,000 | class name | class name |
//! | `emoji` | npm `emoji-datasource-google` | 3,786 | Unicode name (and skin tone) | category |
//!
//! Keys start with the package's name (`openclipart/animals/cat`), so pools can be unioned;
//! uids are md5 of the key.

pub mod emoji;
pub mod fashion_mnist;
pub mod openclipart;
pub mod svg_metadata;
pub mod tuxpaint;

use std::path::{Path, PathBuf};

use datafusion::common::{DataFusionError, Result};

use super::image_header::dimensions;
use super::problems::Problem;
use super::progress::Progress;
use super::row::{Row, uid_from_key};
use super::sink::PoolSink;

/// A packaged pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Package {
    /// Debian openclipart-png + openclipart-svg, unpacked into the same DIR.
    Openclipart,
    /// Debian tuxpaint-stamps-default.
    TuxpaintStamps,
    /// Debian dataset-fashion-mnist.
    FashionMnist,
    /// npm emoji-datasource-google.
    Emoji,
}

impl Package {
    /// The name on the command line and in keys.
    pub fn word(self) -> &'static str {
        match self {
            Package::Openclipart => "openclipart",
            Package::TuxpaintStamps => "tuxpaint-stamps",
            Package::FashionMnist => "fashion-mnist",
            Package::Emoji => "emoji",
        }
    }
}

/// Ingests the unpacked package under `dir`.
pub fn ingest(
    package: Package,
    dir: &Path,
    sink: &mut PoolSink,
    progress: &mut Progress,
) -> Result<()> {
    match package {
        Package::Openclipart => openclipart::ingest(dir, sink, progress),
        Package::TuxpaintStamps => tuxpaint::ingest(dir, sink, progress),
        Package::FashionMnist => fashion_mnist::ingest(dir, sink, progress),
        Package::Emoji => emoji::ingest(dir, sink, progress),
    }
}

/// `dir/sub` when it is a directory (or file); else an error that says how to unpack
/// `packages` there.
pub fn locate(dir: &Path, sub: &str, packages: &str) -> Result<PathBuf> {
    let path = dir.join(sub);
    if path.exists() {
        return Ok(path);
    }
    Err(DataFusionError::Plan(format!(
        "'{}' has no {sub}: unpack {packages} there (tests/data/packages/fetch_pools.sh does)",
        dir.display()
    )))
}

/// Reads an image file and pushes its row, or counts why not.
pub fn push_image_file(
    sink: &mut PoolSink,
    path: &Path,
    key: String,
    txt: Option<String>,
    label: Option<String>,
) -> Result<()> {
    let img = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            return sink.problem(Problem::Unreadable, format!("'{}': {e}", path.display()));
        }
    };
    push_image(sink, &path.display().to_string(), img, key, txt, label)
}

/// Pushes a row for encoded image bytes, or counts why not; `origin` names them in messages.
pub fn push_image(
    sink: &mut PoolSink,
    origin: &str,
    img: Vec<u8>,
    key: String,
    txt: Option<String>,
    label: Option<String>,
) -> Result<()> {
    let (width, height) = match dimensions(&img) {
        Ok(dims) => dims,
        Err(e) => return sink.problem(Problem::NotAnImage, format!("'{origin}': {e}")),
    };
    sink.push(Row {
        uid: uid_from_key(&key),
        key,
        url: None,
        txt,
        img,
        width,
        height,
        label,
    })
}
