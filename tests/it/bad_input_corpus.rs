//! More than a thousand malformed inputs through every model function: each row gets its own
//! result or NULL plus a counted error, and the query finishes; with `on_error = 'fail'` it
//! fails with a clear message. Never a panic.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use hqflow::world::rng::Rng;
use parquet::arrow::ArrowWriter;

use crate::fake_openai::{FakeConfig, FakeOpenAi};
use crate::support::{hqflow, root};

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    // The CRC is left wrong on purpose for some inputs; decoders must cope either way.
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// A PNG whose header claims `width`×`height` pixels, with a few bytes of data.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

/// The corpus: truncations, byte flips and overwritten runs of every fixture image, random
/// bytes, headers claiming absurd sizes; texts NULL, empty, huge, control characters.
fn corpus() -> Vec<(String, Option<Vec<u8>>, Option<String>)> {
    let images = root().join("tests/data/clip/images");
    let mut names: Vec<_> = std::fs::read_dir(&images)
        .expect("fixture images")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    // The world's generator: a fixed stream, so the corpus is the same on every run.
    let mut rng = Rng::stream(20261127, &[]);
    let mut rows: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for path in &names {
        let bytes = std::fs::read(path).expect("image");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("image");
        for k in 0..40 {
            let cut = bytes.len() * k / 40;
            rows.push((format!("{name}/cut-{cut}"), Some(bytes[..cut].to_vec())));
        }
        for k in 0..40 {
            let mut b = bytes.clone();
            let at = rng.below(b.len());
            b[at] ^= (rng.next_u64() % 255 + 1) as u8;
            rows.push((format!("{name}/flip-{k}"), Some(b)));
        }
        for k in 0..20 {
            let mut b = bytes.clone();
            let at = rng.below(b.len());
            for byte in b.iter_mut().skip(at).take(16) {
                *byte = rng.next_u64() as u8;
            }
            rows.push((format!("{name}/run-{k}"), Some(b)));
        }
    }
    for k in 0..200 {
        let len = rng.below(4096);
        let b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        rows.push((format!("random-{k}"), Some(b)));
    }
    for (w, h) in [
        (30000, 30000),
        (100_000, 1),
        (1, 100_000),
        (0, 0),
        (u32::MAX, u32::MAX),
    ] {
        rows.push((format!("claims-{w}x{h}"), Some(png_claiming(w, h))));
    }
    rows.push(("null-image".into(), None));
    let texts = [
        None,
        Some(String::new()),
        Some("a red circle on a blue background".to_string()),
        Some("word ".repeat(20_000)),
        Some("\u{0}\u{1}\u{7f}\t\r\n".to_string()),
        Some("画像 🙂 ﷽ \u{202e}reversed".to_string()),
    ];
    rows.into_iter()
        .enumerate()
        .map(|(i, (uid, img))| (uid, img, texts[i % texts.len()].clone()))
        .collect()
}

fn write_corpus(path: &Path) -> usize {
    let rows = corpus();
    let schema = Arc::new(Schema::new(vec![
        Field::new("uid", DataType::Utf8, false),
        Field::new("img", DataType::Binary, true),
        Field::new("txt", DataType::Utf8, true),
    ]));
    let uid = StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()));
    let img: BinaryArray = rows.iter().map(|r| r.1.as_deref()).collect();
    let txt: StringArray = rows.iter().map(|r| r.2.as_deref()).collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(uid), Arc::new(img), Arc::new(txt)],
    )
    .expect("batch");
    let file = std::fs::File::create(path).expect("corpus file");
    let mut writer = ArrowWriter::try_new(file, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    rows.len()
}

/// The per-function error counts in the end-of-run report (`  FUNCTION: N x REASON …`).
fn reported(stderr: &str, function: &str) -> usize {
    stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{function}: ")))
        .filter_map(|rest| rest.split(" x ").next()?.parse::<usize>().ok())
        .sum()
}

#[test]
fn a_thousand_bad_inputs_are_counted_never_fatal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("corpus.parquet");
    let rows = write_corpus(&path);
    assert!(rows >= 1000, "corpus of {rows} rows");
    let table = format!("c={}", path.display());
    // lvlm_refine talks to a fake OpenAI-compatible server on loopback (tests/it/fake_openai.rs).
    let fake = FakeOpenAi::start(FakeConfig::default());
    let backend = format!("fake={}", fake.location());
    let query = "SELECT count(*) AS n, count(img) AS images, count(txt) AS texts, \
                 count(clip_embed(img, 'tiny')) AS embedded, \
                 count(clip_embed_text(txt, 'tiny')) AS embedded_texts, \
                 count(dfn_score(img, txt, 'tiny')) AS scored, \
                 sum(CASE WHEN img IS NOT NULL AND txt IS NOT NULL THEN 1 ELSE 0 END) AS pairs, \
                 count(lvlm_refine(img, txt, 'fake')) AS refined FROM c";
    let run = hqflow(&[
        "sql",
        "-t",
        &table,
        "-m",
        "tiny=tests/data/clip/tiny-quickgelu",
        "-m",
        &backend,
        "-s",
        "hqflow.refine.backoff_ms=1",
        "--format",
        "csv",
        query,
    ]);
    let out = run.ok().to_string();
    let values: Vec<usize> = out
        .lines()
        .nth(1)
        .expect("a result row")
        .split(',')
        .map(|v| v.parse().expect("a count"))
        .collect();
    let [
        n,
        images,
        texts,
        embedded,
        embedded_texts,
        scored,
        pairs,
        refined,
    ] = values[..]
    else {
        panic!("unexpected result {out}");
    };
    assert_eq!(n, rows);
    assert!(!run.stderr.contains("internal error"), "{}", run.stderr);
    // Every image either embeds or is a counted error; some of each.
    let image_errors = reported(&run.stderr, "clip_embed");
    assert_eq!(embedded + image_errors, images, "{}", run.stderr);
    assert!(
        image_errors > 500 && embedded > 100,
        "{embedded} embedded, {image_errors} errors"
    );
    // Every text embeds (long ones are truncated, odd characters are tokens too).
    assert_eq!(embedded_texts, texts);
    assert_eq!(reported(&run.stderr, "clip_embed_text"), 0);
    // A score needs both; the rows that have both and still fail are counted.
    assert!(scored <= embedded.min(embedded_texts));
    assert!(reported(&run.stderr, "dfn_score") > 0);
    // Every pair is refined by the server or is a counted error (not an image: no request).
    let refine_errors = reported(&run.stderr, "lvlm_refine");
    assert_eq!(refined + refine_errors, pairs, "{}", run.stderr);
    assert!(
        refined > 0 && refine_errors > 0,
        "{refined} refined, {refine_errors} errors"
    );
    for line in run.stderr.lines().filter(|l| l.contains("lvlm_refine:")) {
        eprintln!("{}", &line[..line.len().min(200)]);
    }
    eprintln!(
        "corpus: {rows} rows, {images} images: {embedded} embedded, {image_errors} counted errors; \
         {texts} texts embedded; {scored} scored; {refined} of {pairs} pairs refined, {} requests",
        fake.requests()
    );

    let strict = hqflow(&[
        "sql",
        "-t",
        &table,
        "-m",
        "tiny=tests/data/clip/tiny-quickgelu",
        "-s",
        "hqflow.on_error=fail",
        "SELECT count(clip_embed(img, 'tiny')) FROM c",
    ]);
    strict.fails_with(1, &["clip_embed: row", "hqflow.on_error = 'fail'"]);
    assert!(
        !strict.stderr.contains("internal error"),
        "{}",
        strict.stderr
    );
}
