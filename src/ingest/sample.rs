//! A sample as webdataset shards and folders hold it: members sharing a key (`KEY.jpg`,
//! `KEY.txt`, `KEY.json`), turned into a [`Row`] or a counted problem.

use datafusion::common::Result;

use super::image_header::dimensions;
use super::problems::Problem;
use super::row::{Row, uid_from_key};
use super::sink::PoolSink;

/// Extensions read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// What a member is, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    /// An image (see [`IMAGE_EXTENSIONS`]).
    Image,
    /// The caption (`txt`).
    Caption,
    /// Metadata (`json`).
    Json,
    /// Anything else (ignored).
    Other,
}

impl Member {
    /// The kind of a member with extension `ext` (lowercase).
    pub fn of(ext: &str) -> Member {
        match ext {
            "txt" => Member::Caption,
            "json" => Member::Json,
            e if IMAGE_EXTENSIONS.contains(&e) => Member::Image,
            _ => Member::Other,
        }
    }
}

/// The members of one key.
#[derive(Debug, Default)]
pub struct Sample {
    /// The key.
    pub key: String,
    /// The image: its member name and bytes.
    pub image: Option<(String, Vec<u8>)>,
    /// The caption's bytes.
    pub caption: Option<Vec<u8>>,
    /// The JSON's bytes.
    pub json: Option<Vec<u8>>,
    /// Names of members that were not images, captions or JSON.
    pub others: Vec<String>,
}

impl Sample {
    /// An empty sample for `key`.
    pub fn new(key: String) -> Self {
        Sample {
            key,
            ..Sample::default()
        }
    }

    /// Adds a member; a second image, caption or JSON for the key is a duplicate key.
    pub fn add(
        &mut self,
        name: String,
        kind: Member,
        bytes: Vec<u8>,
        sink: &mut PoolSink,
        origin: &str,
    ) -> Result<()> {
        let slot_taken = match kind {
            Member::Image => self.image.is_some(),
            Member::Caption => self.caption.is_some(),
            Member::Json => self.json.is_some(),
            Member::Other => false,
        };
        if slot_taken {
            return sink.problem(
                Problem::DuplicateKey,
                format!(
                    "{origin}: '{name}' is a second member for key '{}'",
                    self.key
                ),
            );
        }
        match kind {
            Member::Image => self.image = Some((name, bytes)),
            Member::Caption => self.caption = Some(bytes),
            Member::Json => self.json = Some(bytes),
            Member::Other => self.others.push(name),
        }
        Ok(())
    }

    /// Checks the sample and hands its row to `sink` (or counts why not). `origin` names
    /// the shard or directory for messages.
    pub fn finish(self, sink: &mut PoolSink, origin: &str) -> Result<()> {
        let key = self.key;
        let Some((image_name, img)) = self.image else {
            let what = match self.others.first() {
                Some(other) => format!("{origin}: key '{key}' has no image, only '{other}'"),
                None => format!("{origin}: key '{key}' has no image member"),
            };
            return sink.problem(Problem::NoImage, what);
        };
        let meta = match self
            .json
            .as_deref()
            .map(serde_json::from_slice::<serde_json::Value>)
        {
            None => None,
            Some(Ok(serde_json::Value::Object(map))) => Some(map),
            Some(Ok(_)) => {
                return sink.problem(
                    Problem::BadMetadata,
                    format!("{origin}: '{key}.json' is not a JSON object"),
                );
            }
            Some(Err(e)) => {
                return sink.problem(
                    Problem::BadMetadata,
                    format!("{origin}: '{key}.json' does not parse: {e}"),
                );
            }
        };
        let meta_text = |field: &str| -> Option<String> {
            match meta.as_ref()?.get(field)? {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let txt = match self.caption {
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    return sink.problem(
                        Problem::BadMetadata,
                        format!("{origin}: '{key}.txt' is not UTF-8"),
                    );
                }
            },
            None => match meta_text("caption") {
                Some(text) => text,
                None => {
                    return sink.problem(
                        Problem::NoCaption,
                        format!("{origin}: '{image_name}' has no '{key}.txt'"),
                    );
                }
            },
        };
        let (width, height) = match dimensions(&img) {
            Ok(dims) => dims,
            Err(e) => {
                return sink.problem(
                    Problem::NotAnImage,
                    format!("{origin}: '{image_name}': {e}"),
                );
            }
        };
        let uid = meta_text("uid").unwrap_or_else(|| uid_from_key(&key));
        let url = meta_text("url");
        sink.push(Row {
            uid,
            key,
            url,
            txt: Some(txt),
            img,
            width,
            height,
            label: None,
        })
    }
}
