//! Fashion-MNIST (Debian `dataset-fashion-mnist`): the original idx files
//! (`train-images-idx3-ubyte.gz`, …), 60,000 training and 10,000 test images of 28×28
//! gray pixels with labels 0–9; each image becomes a PNG captioned with its class name.
//! Read as a stream: one image in memory at a time.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use datafusion::common::{DataFusionError, Result};
use flate2::read::GzDecoder;
use image::ImageEncoder;

use super::super::progress::Progress;
use super::super::sink::PoolSink;
use super::{locate, push_image};

const DATA_DIR: &str = "usr/share/datasets/fashion-mnist";

/// The class names, by label.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// idx magic numbers: unsigned bytes, 1 and 3 dimensions.
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_MAGIC: u32 = 0x0000_0803;

fn data_error(path: &Path, what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("'{}': {what}", path.display()))
}

/// An idx file opened for streaming: its dimensions, then the data.
struct Idx {
    path: std::path::PathBuf,
    reader: GzDecoder<BufReader<File>>,
    dims: Vec<u32>,
}

impl Idx {
    fn open(path: &Path, magic: u32) -> Result<Idx> {
        let file = File::open(path).map_err(|e| data_error(path, e))?;
        let mut idx = Idx {
            path: path.to_path_buf(),
            reader: GzDecoder::new(BufReader::new(file)),
            dims: Vec::new(),
        };
        let found = idx.u32()?;
        if found != magic {
            return Err(data_error(
                path,
                format!(
                    "not an idx file of unsigned bytes (magic {found:#010x}, expected {magic:#010x})"
                ),
            ));
        }
        for _ in 0..(magic & 0xff) {
            let d = idx.u32()?;
            idx.dims.push(d);
        }
        Ok(idx)
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.reader
            .read_exact(buf)
            .map_err(|e| data_error(&self.path, format!("ends early or is not gzip: {e}")))
    }
}

/// Encodes gray pixels as a PNG.
pub fn gray_png(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(pixels, width, height, image::ExtendedColorType::L8)
        .map_err(|e| DataFusionError::Execution(format!("cannot encode a PNG: {e}")))?;
    Ok(out)
}

/// Ingests the unpacked package under `dir`: `train` then `t10k`.
pub fn ingest(dir: &Path, sink: &mut PoolSink, progress: &mut Progress) -> Result<()> {
    let data = locate(dir, DATA_DIR, "dataset-fashion-mnist (dpkg-deb -x)")?;
    let splits = ["train", "t10k"];
    let mut opened = Vec::new();
    let mut total = 0u64;
    for split in splits {
        let images = Idx::open(
            &data.join(format!("{split}-images-idx3-ubyte.gz")),
            IMAGES_MAGIC,
        )?;
        let labels = Idx::open(
            &data.join(format!("{split}-labels-idx1-ubyte.gz")),
            LABELS_MAGIC,
        )?;
        if images.dims[0] != labels.dims[0] {
            return Err(data_error(
                &images.path,
                format!(
                    "has {} images but its labels file has {} labels",
                    images.dims[0], labels.dims[0]
                ),
            ));
        }
        total += u64::from(images.dims[0]);
        opened.push((split, images, labels));
    }
    progress.set_total(total, "images");
    let mut done = 0u64;
    for (split, mut images, mut labels) in opened {
        let (count, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
        let mut pixels = vec![0u8; rows as usize * cols as usize];
        let mut label = [0u8; 1];
        for i in 0..count {
            images.exact(&mut pixels)?;
            labels.exact(&mut label)?;
            let class = CLASSES.get(label[0] as usize).ok_or_else(|| {
                data_error(
                    &labels.path,
                    format!("label {} of item {i} is not 0–9", label[0]),
                )
            })?;
            let png = gray_png(&pixels, cols, rows)?;
            let key = format!("fashion-mnist/{split}/{i:05}");
            push_image(
                sink,
                &key,
                png,
                key.clone(),
                Some(class.to_lowercase()),
                Some((*class).to_string()),
            )?;
            done += 1;
            progress.update(done, sink.rows(), sink.problem_count());
        }
    }
    Ok(())
}
