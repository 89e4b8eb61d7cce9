//! One ingested image-text pair, the pool schema ingest writes, and uids from keys.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryBuilder, Int32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result;
use md5::{Digest, Md5};

/// An image-text pair ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Unique key (DataComp-style 32 hex characters unless the input gave its own).
    pub uid: String,
    /// The input's own name for the pair (tar key, relative path, img2dataset key).
    pub key: String,
    /// Where the image came from, when the input says.
    pub url: Option<String>,
    /// The caption.
    pub txt: Option<String>,
    /// Encoded image bytes.
    pub img: Vec<u8>,
    /// Width from the image header.
    pub width: i32,
    /// Height from the image header.
    pub height: i32,
    /// A class or category, for package pools (`label` column).
    pub label: Option<String>,
}

/// The uid of a key without one of its own: md5 of the key's UTF-8 bytes as 32 hex
/// characters, the same as hqflow's SQL `md5(key)`.
pub fn uid_from_key(key: &str) -> String {
    hex(&Md5::digest(key.as_bytes()))
}

/// A 128-bit fingerprint of a string, for uniqueness checks that keep 16 bytes per row.
pub fn fingerprint(s: &str) -> u128 {
    let digest = Md5::digest(s.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The schema ingest writes: the pool contract's columns plus `key` (and `label` for
/// package pools).
pub fn schema(with_label: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("uid", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, true),
        Field::new("txt", DataType::Utf8, true),
        Field::new("img", DataType::Binary, false),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
    ];
    if with_label {
        fields.push(Field::new("label", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// Rows as one record batch of [`schema`].
pub fn to_batch(schema: &SchemaRef, rows: &[Row]) -> Result<RecordBatch> {
    let mut uid = StringBuilder::new();
    let mut key = StringBuilder::new();
    let mut url = StringBuilder::new();
    let mut txt = StringBuilder::new();
    let mut img = BinaryBuilder::new();
    let mut width = Int32Builder::new();
    let mut height = Int32Builder::new();
    let mut label = StringBuilder::new();
    for row in rows {
        uid.append_value(&row.uid);
        key.append_value(&row.key);
        url.append_option(row.url.as_deref());
        txt.append_option(row.txt.as_deref());
        img.append_value(&row.img);
        width.append_value(row.width);
        height.append_value(row.height);
        label.append_option(row.label.as_deref());
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(uid.finish()),
        Arc::new(key.finish()),
        Arc::new(url.finish()),
        Arc::new(txt.finish()),
        Arc::new(img.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
    ];
    if schema.fields().len() > columns.len() {
        columns.push(Arc::new(label.finish()));
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_md5_hex_of_the_key() {
        // md5("") and md5("abc") from RFC 1321.
        assert_eq!(uid_from_key(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(uid_from_key("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
