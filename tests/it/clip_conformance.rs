//! hqflow's CLIP against Hugging Face transformers on the same checkpoints and inputs
//! (fixtures from `tests/data/clip/make_clip_fixtures.py`): identical token ids, text
//! embeddings within 1e-4, Pillow-identical preprocessing for lossless images, and image
//! embeddings within 1e-4 (lossless) or cosine ≥ 0.999 (JPEG, whose decoders round
//! differently).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use hqflow_udfs::models::ClipCheckpoint;
use serde::Deserialize;

#[derive(Deserialize)]
struct TextRef {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ImageRef {
    file: String,
    what: String,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Reference {
    /// For a checkpoint kept elsewhere: the SHA-256 of the weights the reference was made from.
    model_sha256: Option<String>,
    texts: Vec<TextRef>,
    images: Vec<ImageRef>,
}

fn clip_dir() -> PathBuf {
    super::support::root().join("tests/data/clip")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn lossless(file: &str) -> bool {
    !file.ends_with(".jpg")
}

fn conforms(name: &str) {
    let dir = clip_dir().join(name);
    conforms_at(name, &dir, &dir);
}

/// The checkpoint in `model` against the reference in `dir` (reference.json and
/// pixel_values.safetensors).
fn conforms_at(name: &str, model: &std::path::Path, dir: &std::path::Path) {
    let ckpt = ClipCheckpoint::load(model, &Device::Cpu).expect("the checkpoint loads");
    let reference: Reference = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reference.json")).expect("reference.json"),
    )
    .expect("reference.json parses");
    if let Some(expected) = &reference.model_sha256 {
        use sha2::Digest;
        let weights = std::fs::read(model.join("model.safetensors")).expect("weights");
        let got: String = sha2::Sha256::digest(&weights)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            &got, expected,
            "{name}: the weights changed since the reference was made; run {}",
            "tests/data/clip/make_trained_fixture.py"
        );
    }

    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    let ids = ckpt.tokenize(&texts).expect("tokenizes");
    for (t, got) in reference.texts.iter().zip(&ids) {
        assert_eq!(got, &t.input_ids, "{name}: token ids of {:?}", t.text);
    }
    let embeddings = ckpt.embed_texts(&texts).expect("embeds texts");
    for (t, got) in reference.texts.iter().zip(&embeddings) {
        let d = max_abs_diff(got, &t.embedding);
        assert!(
            d <= 1e-4,
            "{name}: text embedding of {:?} differs by {d}",
            t.text
        );
    }

    let pixels: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.join("pixel_values.safetensors"), &Device::Cpu)
            .expect("pixel values");
    for image in &reference.images {
        let bytes = std::fs::read(clip_dir().join("images").join(&image.file)).expect("image file");
        let ours = ckpt
            .pixels(&bytes)
            .unwrap_or_else(|e| panic!("{name}: {} ({}): {e}", image.file, image.what));
        let theirs: Vec<f32> = pixels[&image.file]
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("pixel tensor");
        let pixel_diff = max_abs_diff(&ours, &theirs);
        if lossless(&image.file) {
            // Identical 8-bit pixels after Pillow's resample; only float rounding remains.
            assert!(
                pixel_diff <= 1e-5,
                "{name}: preprocessing of {} ({}) differs by {pixel_diff}",
                image.file,
                image.what
            );
        }
        // The model alone: the reference's own pixels give the reference's embedding.
        let from_theirs = ckpt
            .embed_pixels(std::slice::from_ref(&theirs))
            .expect("embeds")[0]
            .clone();
        let d = max_abs_diff(&from_theirs, &image.embedding);
        assert!(
            d <= 1e-4,
            "{name}: image embedding of {} from reference pixels differs by {d}",
            image.file
        );
        // End to end from encoded bytes, the way the SQL functions do it: 8-bit planes,
        // rescaled and normalized on the model's device.
        let input = ckpt.image_input(&bytes).expect("decodes");
        let from_bytes = ckpt
            .embed_image_inputs(std::slice::from_ref(&input))
            .expect("embeds")[0]
            .clone();
        let cos = cosine(&from_bytes, &image.embedding);
        assert!(
            cos >= 0.999,
            "{name}: {} ({}) end to end cosine {cos}",
            image.file,
            image.what
        );
        if lossless(&image.file) {
            let d = max_abs_diff(&from_bytes, &image.embedding);
            assert!(
                d <= 1e-4,
                "{name}: {} end to end differs by {d}",
                image.file
            );
        }
    }
}

#[test]
fn quick_gelu_checkpoint_matches_transformers() {
    conforms("tiny-quickgelu");
}

#[test]
fn gelu_checkpoint_matches_transformers() {
    conforms("tiny-gelu");
}

/// A checkpoint `hqflow-train` wrote (the built-in DFN, with its own BPE tokenizer), as
/// transformers' `from_pretrained` loads it.
#[test]
fn trained_checkpoint_matches_transformers() {
    let model = super::support::root().join("udfs/models/world-dfn");
    conforms_at("world-dfn", &model, &clip_dir().join("world-dfn"));
}

/// `hqflow.precision = 'bf16'` against transformers' f32 embeddings: the dense layers' inputs
/// and weights keep 8 significant bits, so the bounds are looser than f32's 1e-4 (measured:
/// cosine ≥ 0.99997, values within 0.0036 on these checkpoints).
#[test]
fn bf16_embeddings_point_where_transformers_f32_ones_do() {
    use hqflow_udfs::models::bf16_matmul;
    use hqflow_udfs::models::clip::Mode;
    if !bf16_matmul::available() {
        eprintln!("skipped: this CPU lacks AVX512-BF16");
        return;
    }
    let trained = super::support::root().join("udfs/models/world-dfn");
    for (name, model, dir) in [
        ("world-dfn", trained, clip_dir().join("world-dfn")),
        (
            "tiny-gelu",
            clip_dir().join("tiny-gelu"),
            clip_dir().join("tiny-gelu"),
        ),
    ] {
        let ckpt = ClipCheckpoint::load_in(&model, &Device::Cpu, Mode::InferenceBf16)
            .expect("the checkpoint loads in bf16");
        let reference: Reference = serde_json::from_str(
            &std::fs::read_to_string(dir.join("reference.json")).expect("reference.json"),
        )
        .expect("reference.json parses");
        let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
        let embeddings = ckpt.embed_texts(&texts).expect("embeds texts");
        let pixels: HashMap<String, Tensor> =
            candle_core::safetensors::load(dir.join("pixel_values.safetensors"), &Device::Cpu)
                .expect("pixel values");
        let mut pairs: Vec<(String, Vec<f32>, &[f32])> = reference
            .texts
            .iter()
            .zip(embeddings)
            .map(|(t, got)| (format!("text {:?}", t.text), got, t.embedding.as_slice()))
            .collect();
        for image in &reference.images {
            let theirs: Vec<f32> = pixels[&image.file]
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("pixel tensor");
            let got = ckpt.embed_pixels(&[theirs]).expect("embeds")[0].clone();
            pairs.push((
                format!("image {}", image.file),
                got,
                image.embedding.as_slice(),
            ));
        }
        for (what, got, want) in pairs {
            let cos = cosine(&got, want);
            let d = max_abs_diff(&got, want);
            assert!(
                cos >= 0.9999 && d <= 1e-2,
                "{name}: {what}: cosine {cos}, max diff {d}"
            );
        }
    }
}

#[test]
fn batching_does_not_change_embeddings() {
    let ckpt = ClipCheckpoint::load(&clip_dir().join("tiny-gelu"), &Device::Cpu).expect("loads");
    let texts = [
        "a photo of a cat",
        "",
        "a much longer caption with several words in it",
        "東京",
    ];
    let together = ckpt.embed_texts(&texts).expect("batch");
    for (i, t) in texts.iter().enumerate() {
        let alone = ckpt.embed_texts(&[t]).expect("single");
        assert!(
            max_abs_diff(&alone[0], &together[i]) <= 1e-6,
            "text {i} depends on its batch"
        );
    }
}

#[test]
fn resize_is_pillow_exact() {
    use hqflow_udfs::models::resize::{Filter, resize};
    let cases: HashMap<String, Tensor> =
        candle_core::safetensors::load(clip_dir().join("resize_cases.safetensors"), &Device::Cpu)
            .expect("cases");
    let mut names: Vec<&String> = cases.keys().filter(|k| !k.ends_with("_src")).collect();
    names.sort();
    assert_eq!(names.len(), 40);
    for name in names {
        let (case, filter) = name.split_once('_').expect("case name");
        let filter = if filter == "bicubic" {
            Filter::Bicubic
        } else {
            Filter::Bilinear
        };
        let src = &cases[&format!("{case}_src")];
        let (h, w, _) = src.dims3().expect("HWC");
        let expected = &cases[name];
        let (oh, ow, _) = expected.dims3().expect("HWC");
        let src_bytes: Vec<u8> = src.flatten_all().and_then(|t| t.to_vec1()).expect("bytes");
        let image = image::RgbImage::from_raw(w as u32, h as u32, src_bytes).expect("rgb");
        let ours = resize(&image, ow as u32, oh as u32, filter);
        let theirs: Vec<u8> = expected
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("bytes");
        let differing = ours
            .as_raw()
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: {w}x{h} -> {ow}x{oh}: {differing} values differ from Pillow"
        );
    }
}
