//! `hqflow ingest`: webdataset shards written by Python's tarfile, img2dataset Parquet output
//! and folders, through the real binary; bad input counted (or fatal with --strict); the
//! output passes the pool contract.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::Int32Type;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;

use super::support::{fixture, hqflow_in, root};

/// One row of an ingested table.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    uid: String,
    key: String,
    url: Option<String>,
    txt: Option<String>,
    img: Vec<u8>,
    width: i32,
    height: i32,
}

fn read_table(dir: &Path) -> Vec<Out> {
    let mut shards: Vec<PathBuf> = fs::read_dir(dir)
        .expect("output directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    shards.sort();
    let mut rows = Vec::new();
    for shard in shards {
        let file = fs::File::open(&shard).expect("shard opens");
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("a Parquet file")
            .build()
            .expect("a reader")
        {
            let b = batch.expect("a batch");
            let text = |name: &str| {
                b.column_by_name(name)
                    .expect(name)
                    .as_string::<i32>()
                    .clone()
            };
            let int = |name: &str| {
                b.column_by_name(name)
                    .expect(name)
                    .as_primitive::<Int32Type>()
                    .clone()
            };
            let (uid, key, url, txt) = (text("uid"), text("key"), text("url"), text("txt"));
            let img = b
                .column_by_name("img")
                .expect("img")
                .as_binary::<i32>()
                .clone();
            let (width, height) = (int("width"), int("height"));
            let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
            for i in 0..b.num_rows() {
                rows.push(Out {
                    uid: uid.value(i).to_string(),
                    key: key.value(i).to_string(),
                    url: opt(&url, i),
                    txt: opt(&txt, i),
                    img: img.value(i).to_vec(),
                    width: width.value(i),
                    height: height.value(i),
                });
            }
        }
    }
    rows
}

fn md5_hex(s: &str) -> String {
    // The same definition as hqflow's: SQL md5() of the key.
    let run = hqflow_in(
        &root(),
        &["sql", "--format", "csv", &format!("SELECT md5('{s}') AS h")],
    );
    run.ok().lines().nth(1).expect("a value").to_string()
}

fn conforms(dir: &Path) {
    hqflow_in(
        dir,
        &["schema", "check", "-t", &format!("p={}", dir.display())],
    )
    .ok();
    assert!(dir.join("ingest.json").is_file(), "ingest.json is written");
}

/// Writes the webdataset test shards with the system python3's tarfile.
fn python_shards(out: &Path) {
    let status = Command::new("python3")
        .arg(fixture("webdataset/make_shards.py"))
        .arg(out)
        .status()
        .expect("python3 runs (tests/run.sh needs it too)");
    assert!(status.success(), "make_shards.py failed");
}

#[derive(Debug, Deserialize)]
struct Expected {
    key: String,
    txt: String,
    uid: Option<String>,
    url: Option<String>,
    size: Option<(i32, i32)>,
}

#[test]
fn webdataset_from_python_tarfile_keeps_every_caption() {
    let dir = tempfile::tempdir().expect("temp dir");
    python_shards(dir.path());
    let run = hqflow_in(
        dir.path(),
        &[
            "ingest",
            "webdataset",
            "good-000.tar",
            "good-001.tar",
            "--out",
            "pool",
            "--shard-rows",
            "3",
        ],
    );
    run.ok();
    assert!(
        run.stderr
            .contains("ingest webdataset: 7 rows in 3 shard(s)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("bad input"), "{}", run.stderr);
    // Not a terminal: no progress line.
    assert!(!run.stderr.contains('\r'), "{:?}", run.stderr);
    let out = dir.path().join("pool");
    conforms(&out);
    let rows = read_table(&out);
    let expected: Vec<Expected> = serde_json::from_str(
        &fs::read_to_string(dir.path().join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json parses");
    assert_eq!(rows.len(), expected.len());
    for e in &expected {
        let row = rows
            .iter()
            .find(|r| r.key == e.key)
            .unwrap_or_else(|| panic!("no row for key {}", e.key));
        assert_eq!(
            row.txt.as_deref(),
            Some(e.txt.as_str()),
            "caption of {}",
            e.key
        );
        let uid = e.uid.clone().unwrap_or_else(|| md5_hex(&e.key));
        assert_eq!(row.uid, uid, "uid of {}", e.key);
        assert_eq!(row.url, e.url, "url of {}", e.key);
        if let Some(size) = e.size {
            assert_eq!((row.width, row.height), size, "size of {}", e.key);
        }
        let decoded = image::load_from_memory(&row.img).expect("img decodes");
        assert_eq!(
            (decoded.width() as i32, decoded.height() as i32),
            (row.width, row.height),
            "header size of {}",
            e.key
        );
    }
}

#[test]
fn webdataset_bad_input_is_counted_or_fatal_with_strict() {
    let dir = tempfile::tempdir().expect("temp dir");
    python_shards(dir.path());
    let run = hqflow_in(
        dir.path(),
        &[
            "ingest",
            "webdataset",
            "bad.tar",
            "truncated.tar",
            "truncated-header.tar",
            "missing.tar",
            "--out",
            "pool",
        ],
    );
    run.ok();
    for needle in [
        "ingest webdataset: 4 rows",
        "7 bad input(s) skipped",
        "image without a caption: 1 (e.g. bad.tar: 'nocaption.png' has no 'nocaption.txt')",
        "not an image: 1 (e.g. bad.tar: 'notimage.jpg'",
        "sample without an image: 1 (e.g. bad.tar: key 'onlytext' has no image, only 'onlytext.pdf')",
        "duplicate key or uid (first kept): 1 (e.g. key 'dup')",
        "truncated tar shard: 2 (e.g. truncated.tar: ends early after 't2.png' ('t2.png' has 10 of its",
        "truncated-header.tar: ends early after 't1.txt'",
        "unreadable input: 1 (e.g. missing.tar:",
    ] {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            run.stderr
        );
    }
    let out = dir.path().join("pool");
    conforms(&out);
    let rows = read_table(&out);
    let got: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.key.as_str(), r.txt.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("ok1", Some("the first good sample")),
            ("dup", Some("the first dup")),
            ("ok2", Some("the second good sample")),
            ("t1", Some("kept: before the cut")),
        ]
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("ingest.json")).expect("manifest"))
            .expect("manifest parses");
    assert_eq!(manifest["rows"], 4);
    assert_eq!(manifest["problems"]["truncated_tar"]["count"], 2);
    assert_eq!(manifest["problems"]["duplicate_key"]["count"], 1);

    let strict = hqflow_in(
        dir.path(),
        &[
            "ingest",
            "webdataset",
            "bad.tar",
            "--out",
            "strict",
            "--strict",
        ],
    );
    strict.fails_with(
        1,
        &["image without a caption: bad.tar: 'nocaption.png' has no 'nocaption.txt' (--strict"],
    );
    assert!(!dir.path().join("strict/ingest.json").exists());
    let strict = hqflow_in(
        dir.path(),
        &[
            "ingest",
            "webdataset",
            "truncated.tar",
            "--out",
            "strict2",
            "--strict",
        ],
    );
    strict.fails_with(1, &["truncated tar shard: truncated.tar: ends early"]);
}

#[test]
fn ingest_refuses_a_non_empty_output_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("out")).expect("mkdir");
    fs::write(dir.path().join("out/x"), b"x").expect("write");
    hqflow_in(dir.path(), &["ingest", "folder", ".", "--out", "out"])
        .fails_with(1, &["'out' already exists and is not empty"]);
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(width, height, image::Rgb([9, 99, 199]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encodes");
    bytes
}

#[test]
fn folder_with_sidecar_captions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
    let write = |rel: &str, bytes: &[u8]| fs::write(src.join(rel), bytes).expect("write");
    write("a.png", &png(5, 4));
    write("a.txt", "a caption with ü and a newline\n".as_bytes());
    write(
        "sub/b.JPG",
        &fs::read(fixture("clip/images/landscape.jpg")).expect("jpg"),
    );
    write("sub/b.txt", b"b caption");
    write(
        "sub/b.json",
        br#"{"uid": "0123456789abcdef0123456789abcdef", "url": "https://e.x/b.jpg"}"#,
    );
    write(
        "sub/deeper/c.webp",
        &fs::read(fixture("clip/images/lossless.webp")).expect("webp"),
    );
    write("sub/deeper/c.txt", b"c caption");
    write("nocap.png", &png(2, 2));
    write("orphan.txt", b"no image for me");
    write("fake.jpg", b"not a jpeg");
    write("fake.txt", b"fake caption");
    write("notes.md", b"# ignored");
    let run = hqflow_in(dir.path(), &["ingest", "folder", "src", "--out", "pool"]);
    run.ok();
    for needle in [
        "ingest folder: 3 rows",
        "skipped 1 files that are not images, .txt or .json",
        "3 bad input(s) skipped",
        "image without a caption: 1 (e.g. src: 'nocap.png' has no 'nocap.txt')",
        "sample without an image: 1 (e.g. src: key 'orphan' has no image member)",
        "not an image: 1 (e.g. src: 'fake.jpg'",
    ] {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            run.stderr
        );
    }
    let out = dir.path().join("pool");
    conforms(&out);
    let rows = read_table(&out);
    let got: Vec<(&str, &str, i32, i32)> = rows
        .iter()
        .map(|r| {
            (
                r.key.as_str(),
                r.txt.as_deref().unwrap_or("NULL"),
                r.width,
                r.height,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", "a caption with ü and a newline\n", 5, 4),
            ("sub/b", "b caption", 200, 90),
            ("sub/deeper/c", "c caption", 70, 70),
        ]
    );
    assert_eq!(rows[0].uid, md5_hex("a"));
    assert_eq!(rows[1].uid, "0123456789abcdef0123456789abcdef");
    assert_eq!(rows[1].url.as_deref(), Some("https://e.x/b.jpg"));
    assert_eq!(rows[0].img, fs::read(src.join("a.png")).expect("a.png"));
}

/// An img2dataset-style Parquet file: key, url, caption, status, error_message, jpg, width,
/// height (as img2dataset writes them, with a failed download).
fn img2dataset_file(path: &Path, keys: &[&str], images: Vec<Option<Vec<u8>>>, status: &[&str]) {
    let n = keys.len();
    let text = |v: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "key",
            text(keys.iter().map(|k| Some(k.to_string())).collect()),
        ),
        (
            "url",
            text(
                keys.iter()
                    .map(|k| Some(format!("https://img.example/{k}")))
                    .collect(),
            ),
        ),
        (
            "caption",
            text(
                keys.iter()
                    .map(|k| Some(format!("caption of {k}")))
                    .collect(),
            ),
        ),
        (
            "status",
            text(status.iter().map(|s| Some(s.to_string())).collect()),
        ),
        ("error_message", text(vec![None; n])),
        (
            "jpg",
            Arc::new(BinaryArray::from(
                images.iter().map(|i| i.as_deref()).collect::<Vec<_>>(),
            )),
        ),
        (
            "width",
            Arc::new(arrow::array::Int64Array::from(vec![Some(1); n])),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).expect("a batch");
    let mut writer = ArrowWriter::try_new(
        fs::File::create(path).expect("create"),
        batch.schema(),
        None,
    )
    .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

#[test]
fn img2dataset_parquet_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let jpg = fs::read(fixture("clip/images/landscape.jpg")).expect("jpg");
    img2dataset_file(
        &src.join("00000.parquet"),
        &["000000000", "000000001", "000000002"],
        vec![Some(jpg.clone()), None, Some(png(6, 3))],
        &["success", "failed_to_download", "success"],
    );
    img2dataset_file(
        &src.join("00001.parquet"),
        &["000010000", "000010001", "000000000"],
        vec![
            Some(jpg.clone()),
            Some(b"garbage".to_vec()),
            Some(jpg.clone()),
        ],
        &["success", "success", "success"],
    );
    let run = hqflow_in(
        dir.path(),
        &["ingest", "img2dataset", "src", "--out", "pool"],
    );
    run.ok();
    for needle in [
        "ingest img2dataset: 3 rows",
        "skipped 1 rows with status 'failed_to_download'",
        "not an image: 1 (e.g. src/00001.parquet: row 1 (key '000010001')",
        "duplicate key or uid (first kept): 1 (e.g. key '000000000')",
    ] {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            run.stderr
        );
    }
    let out = dir.path().join("pool");
    conforms(&out);
    let rows = read_table(&out);
    let got: Vec<(&str, &str, Option<&str>, i32, i32)> = rows
        .iter()
        .map(|r| {
            (
                r.key.as_str(),
                r.txt.as_deref().unwrap_or("NULL"),
                r.url.as_deref(),
                r.width,
                r.height,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "000000000",
                "caption of 000000000",
                Some("https://img.example/000000000"),
                200,
                90
            ),
            (
                "000000002",
                "caption of 000000002",
                Some("https://img.example/000000002"),
                6,
                3
            ),
            (
                "000010000",
                "caption of 000010000",
                Some("https://img.example/000010000"),
                200,
                90
            ),
        ]
    );
    assert_eq!(rows[0].uid, md5_hex("000000000"));
    assert_eq!(rows[0].img, jpg);

    let none = dir.path().join("empty");
    fs::create_dir(&none).expect("mkdir");
    hqflow_in(
        dir.path(),
        &["ingest", "img2dataset", "empty", "--out", "p2"],
    )
    .fails_with(1, &["'empty' has no *.parquet files"]);
}
