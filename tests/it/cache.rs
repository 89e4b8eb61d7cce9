//! The model-output cache through the real `hqflow` binary: a re-run computes nothing and
//! answers the same, a changed checkpoint is never served stale outputs, failed rows are
//! reported on every run, and `hqflow cache stats|clear` see and empty it.

use std::path::Path;

use crate::support::{Run, fixture, hqflow_command, root};

/// `hqflow ARGS` in the repository root with the cache in `cache`.
fn cached(cache: &Path, args: &[&str]) -> Run {
    let output = hqflow_command()
        .env_remove("HQFLOW_NO_CACHE")
        .arg("--cache")
        .arg(cache)
        .args(args)
        .current_dir(root())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the hqflow binary runs");
    Run::from(output)
}

fn score_query(model: &str, sql: &str) -> Vec<String> {
    let pool = format!("p={}", fixture("clip_pool.parquet"));
    vec![
        "sql".into(),
        "-t".into(),
        pool,
        "-m".into(),
        format!("tiny={model}"),
        sql.into(),
    ]
}

fn run_query(cache: &Path, model: &str, sql: &str) -> Run {
    let args = score_query(model, sql);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cached(cache, &args)
}

const SCORES: &str = "SELECT uid, dfn_score(img, txt, 'tiny') AS s FROM p ORDER BY uid";

#[test]
fn a_rerun_computes_nothing_and_answers_the_same() {
    let cache = tempfile::tempdir().expect("tempdir");
    let model = "tests/data/clip/tiny-quickgelu";
    let first = run_query(cache.path(), model, SCORES);
    let scores = first.ok().to_string();
    assert!(
        first.stderr.contains("dfn_score 0 from cache, 11 computed"),
        "{}",
        first.stderr
    );
    let second = run_query(cache.path(), model, SCORES);
    assert_eq!(
        second.ok(),
        scores,
        "cached scores differ from computed ones"
    );
    assert!(
        second
            .stderr
            .contains("dfn_score 11 from cache, 0 computed"),
        "{}",
        second.stderr
    );
    // Rows that failed are not stored: their errors are reported again.
    assert!(
        second.stderr.contains("dfn_score: 1 x corrupt image"),
        "{}",
        second.stderr
    );
    // Another threshold over the same rows: nothing to compute.
    let filtered = run_query(
        cache.path(),
        model,
        "SELECT count(*) AS n FROM p WHERE dfn_score(img, txt, 'tiny') > 0.01",
    );
    filtered.ok();
    assert!(
        filtered
            .stderr
            .contains("dfn_score 11 from cache, 0 computed"),
        "{}",
        filtered.stderr
    );
    // Embeddings are cached per tower and function.
    let embed = "SELECT uid, clip_embed(img, 'tiny') AS e, clip_embed_text(txt, 'tiny') AS t \
                 FROM p ORDER BY uid";
    let embedded = run_query(cache.path(), model, embed);
    let vectors = embedded.ok().to_string();
    let again = run_query(cache.path(), model, embed);
    assert_eq!(again.ok(), vectors);
    assert!(
        again
            .stderr
            .contains("clip_embed 12 from cache, 0 computed")
            && again
                .stderr
                .contains("clip_embed_text 16 from cache, 0 computed"),
        "{}",
        again.stderr
    );

    let stats = cached(cache.path(), &["cache", "stats"]);
    let listing = stats.ok();
    for needle in ["dfn_score", "clip_embed_text", "tiny-quickgelu", "| 11 "] {
        assert!(
            listing.contains(needle),
            "stats lack {needle:?}:\n{listing}"
        );
    }
    cached(cache.path(), &["cache", "clear"]).ok();
    let after = run_query(cache.path(), model, SCORES);
    assert_close(after.ok(), &scores);
    assert!(
        after.stderr.contains("dfn_score 0 from cache, 11 computed"),
        "{}",
        after.stderr
    );
}

#[test]
fn one_query_evaluating_a_function_twice_computes_it_once() {
    let cache = tempfile::tempdir().expect("tempdir");
    let run = run_query(
        cache.path(),
        "tests/data/clip/tiny-quickgelu",
        "SELECT uid, dfn_score(img, txt, 'tiny') AS s FROM p \
         WHERE dfn_score(img, txt, 'tiny') > -2 ORDER BY uid",
    );
    run.ok();
    assert!(
        run.stderr.contains("dfn_score 11 from cache, 11 computed"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_changed_checkpoint_is_never_served_stale_outputs() {
    let cache = tempfile::tempdir().expect("tempdir");
    let copy = tempfile::tempdir().expect("tempdir");
    let source = root().join("tests/data/clip/tiny-quickgelu");
    for entry in std::fs::read_dir(&source).expect("checkpoint") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy");
    }
    let model = copy.path().to_str().expect("utf-8 path");
    let first = run_query(cache.path(), model, SCORES);
    first.ok();
    // The same preprocessing written differently is another file: a new fingerprint.
    let config = copy.path().join("preprocessor_config.json");
    let text = std::fs::read_to_string(&config).expect("read config");
    std::fs::write(&config, format!("{text}\n")).expect("write config");
    let second = run_query(cache.path(), model, SCORES);
    assert_close(second.ok(), first.ok());
    assert!(
        second
            .stderr
            .contains("dfn_score 0 from cache, 11 computed"),
        "{}",
        second.stderr
    );
}

/// bf16 outputs differ from f32's by ~1e-3, so each precision has its own outputs: a bf16
/// run after an f32 one computes everything, then is answered from the cache itself.
#[test]
fn bf16_and_f32_outputs_are_cached_apart() {
    if !hqflow_udfs::models::bf16_matmul::available() {
        eprintln!("skipped: this CPU lacks AVX512-BF16");
        return;
    }
    let cache = tempfile::tempdir().expect("tempdir");
    let model = "tests/data/clip/tiny-quickgelu";
    run_query(cache.path(), model, SCORES).ok();
    let mut args = score_query(model, SCORES);
    args.splice(
        1..1,
        ["-s".to_string(), "hqflow.precision=bf16".to_string()],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for expected in [
        "dfn_score 0 from cache, 11 computed",
        "dfn_score 11 from cache, 0 computed",
    ] {
        let run = cached(cache.path(), &args);
        run.ok();
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
}

/// Two `uid,score` CSV outputs with the same rows and NULLs, scores within 1e-5: how a
/// batch was composed moves the last bits of a float.
fn assert_close(a: &str, b: &str) {
    let rows = |s: &str| -> Vec<(String, Option<f32>)> {
        s.lines()
            .skip(1)
            .map(|line| {
                let (uid, score) = line.split_once(',').expect("uid,score");
                (uid.to_string(), score.parse().ok())
            })
            .collect()
    };
    let (a, b) = (rows(a), rows(b));
    assert_eq!(a.len(), b.len());
    for ((ua, sa), (ub, sb)) in a.iter().zip(&b) {
        assert_eq!(ua, ub);
        match (sa, sb) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-5, "{ua}: {x} vs {y}"),
            (None, None) => {}
            _ => panic!("{ua}: {sa:?} vs {sb:?}"),
        }
    }
}

#[test]
fn no_cache_computes_and_stores_nothing() {
    let cache = tempfile::tempdir().expect("tempdir");
    let pool = format!("p={}", fixture("clip_pool.parquet"));
    let run = cached(
        cache.path(),
        &[
            "--no-cache",
            "sql",
            "-t",
            &pool,
            "-m",
            "tiny=tests/data/clip/tiny-quickgelu",
            SCORES,
        ],
    );
    run.ok();
    assert!(!run.stderr.contains("model-output cache"), "{}", run.stderr);
    assert!(
        !cache.path().join("outputs.redb").exists(),
        "--no-cache wrote a cache file"
    );
}
