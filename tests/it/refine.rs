//! `lvlm_refine` through the real `hqflow` binary (and an in-process session) against a FAKE
//! OpenAI-compatible server on 127.0.0.1 (`fake_openai.rs`): the client under test is the
//! real one. Every row lands on its own row under concurrency, retries recover, persistent
//! failures are NULL and counted by reason, refused credentials and bad backends fail clearly,
//! `on_error = 'fail'` stops the query, and the model-output cache answers a re-run with no
//! requests.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::fake_openai::{FakeConfig, FakeOpenAi, answer_for};
use crate::support::{Run, hqflow_command, root};

/// Encoded-image stand-ins: the client reads only the magic bytes, the fake only the data URL.
const PNG: &str = "X'89504E470D0A1A0A0000000D49484452'";
const JPEG: &str = "X'FFD8FFE000104A46494600'";

/// Settings that keep failing rows fast.
const FAST: [&str; 3] = [
    "hqflow.refine.timeout_ms=500",
    "hqflow.refine.backoff_ms=20",
    "hqflow.refine.retries=2",
];

/// `hqflow sql --format json` with the fake registered as `fake`, no API key in the
/// environment but those in `env`, and the cache in `cache` (none without).
fn run(
    fake: &FakeOpenAi,
    settings: &[&str],
    env: &[(&str, &str)],
    cache: Option<&Path>,
    sql: &str,
) -> Run {
    let mut command = hqflow_command();
    command
        .env_remove("HQFLOW_API_KEY")
        .env_remove("OPENAI_API_KEY");
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(dir) = cache {
        command
            .env_remove("HQFLOW_NO_CACHE")
            .arg("--cache")
            .arg(dir);
    }
    command.args(["sql", "--format", "json", "-m"]);
    command.arg(format!("fake={}", fake.location()));
    for setting in FAST.iter().chain(settings) {
        command.args(["-s", setting]);
    }
    let output = command
        .arg(sql)
        .current_dir(root())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the hqflow binary runs");
    Run::from(output)
}

/// The JSON rows a successful run printed.
#[track_caller]
fn rows(run: &Run) -> Vec<Value> {
    let out = run.ok();
    let value: Value = serde_json::from_str(out).expect("--format json prints JSON");
    value.as_array().expect("an array of rows").clone()
}

/// `SELECT id, lvlm_refine(img, txt, 'fake') AS r` over (id, img literal, txt or NULL) rows.
fn refine_values(rows: &[(&str, Option<&str>)]) -> String {
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (img, txt))| {
            let txt = txt.map_or("NULL".to_string(), |t| format!("'{t}'"));
            format!("({}, {img}, {txt})", i + 1)
        })
        .collect();
    format!(
        "SELECT id, lvlm_refine(img, txt, 'fake') AS r FROM (VALUES {}) AS t(id, img, txt) \
         ORDER BY id",
        values.join(", ")
    )
}

#[test]
fn every_row_gets_its_own_answer_under_concurrency() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    // Latencies that make answers arrive out of order, over several partitions and batches;
    // the backend comes from the session default.
    let sql = format!(
        "SELECT value AS id, lvlm_refine({JPEG}, 'row ' || value || ' slow=' || ((value * 37) % 60)) \
         AS r FROM generate_series(1, 48) WHERE value > 0 ORDER BY id"
    );
    let settings = [
        "hqflow.refine_backend=fake",
        "hqflow.refine.concurrency=6",
        "datafusion.execution.target_partitions=4",
        "datafusion.execution.batch_size=8",
    ];
    let out = run(&fake, &settings, &[], None, &sql);
    let rows = rows(&out);
    assert_eq!(rows.len(), 48);
    for row in &rows {
        let id = row["id"].as_i64().expect("id");
        let alt = format!("row {id} slow={}", (id * 37) % 60);
        assert_eq!(
            row["r"],
            answer_for(&alt),
            "row {id} got another row's answer"
        );
    }
    assert!(!out.stderr.contains("got NULL"), "{}", out.stderr);
    assert_eq!(fake.requests(), 48);
    let most = fake.max_in_flight();
    assert!(
        (2..=6).contains(&most),
        "{most} requests in flight at once (limit 6)"
    );
    for seen in fake.seen() {
        assert_eq!(seen.mime, "image/jpeg");
        assert_eq!(seen.format.as_deref(), Some("json_schema"));
        assert_eq!(seen.temperature, 0.0);
        assert_eq!(seen.authorization, None, "no key, no Authorization header");
    }
}

#[test]
fn retries_recover_and_persistent_failures_are_null_and_counted() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let input = [
        (PNG, Some("plain first")),
        (PNG, Some("once429")),
        (PNG, Some("twice500")),
        (PNG, Some("hangonce")),
        (PNG, Some("garbageonce")),
        (PNG, Some("fenced")),
        (PNG, Some("always500")),
        (PNG, Some("hang")),
        (PNG, Some("garbage")),
        (PNG, Some("reject400")),
        ("X'00010203'", Some("not an image")),
        (PNG, None),
        ("NULL", Some("no image")),
    ];
    let out = run(&fake, &[], &[], None, &refine_values(&input));
    let rows = rows(&out);
    for (row, (_, txt)) in rows.iter().zip(&input) {
        let id = row["id"].as_i64().expect("id");
        if id <= 6 {
            assert_eq!(row["r"], answer_for(txt.expect("text")), "row {id}");
        } else {
            assert_eq!(row["r"], Value::Null, "row {id}");
        }
    }
    for line in [
        "5 row(s) got NULL from a model function",
        "lvlm_refine: 1 x server error",
        "lvlm_refine: 1 x timed out",
        "lvlm_refine: 1 x invalid answer",
        "lvlm_refine: 1 x request rejected",
        "lvlm_refine: 1 x not an image",
    ] {
        assert!(out.stderr.contains(line), "no {line:?} in:\n{}", out.stderr);
    }
    // retries = 2: three tries for transport failures; invalid answers get two more tries.
    for (alt, tries) in [
        ("plain first", 1),
        ("once429", 2),
        ("twice500", 3),
        ("hangonce", 2),
        ("garbageonce", 2),
        ("always500", 3),
        ("hang", 3),
        ("garbage", 3),
        ("reject400", 1),
        ("not an image", 0),
        ("no image", 0),
    ] {
        assert_eq!(fake.tries(alt), tries, "tries of {alt:?}");
    }
    let seen = fake.seen();
    let of = |alt: &'static str| seen.iter().filter(move |s| s.alt_text == alt);
    let rate_limited: Vec<_> = of("once429").map(|s| s.at).collect();
    assert!(
        rate_limited[1] - rate_limited[0] >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured"
    );
    let temperatures: Vec<f64> = of("garbageonce").map(|s| s.temperature).collect();
    assert_eq!(temperatures, [0.0, 0.7], "a retried invalid answer samples");
}

#[test]
fn a_server_that_is_down_gives_null_rows_and_the_query_finishes() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let down = format!("hqflow.model.down=http://127.0.0.1:{port}/v1?model=m");
    let sql = format!(
        "SELECT value AS id, lvlm_refine({PNG}, 'row ' || value, 'down') AS r \
         FROM generate_series(1, 3) ORDER BY id"
    );
    let out = run(&fake, &[&down], &[], None, &sql);
    let rows = rows(&out);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["r"].is_null()), "{rows:?}");
    assert!(
        out.stderr.contains("lvlm_refine: 3 x connection failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_server_that_wants_a_key_fails_the_query_naming_the_env_vars() {
    let key = "sk-fake-0123456789abcdef";
    let fake = FakeOpenAi::start(FakeConfig {
        api_key: Some(key.into()),
        ..FakeConfig::default()
    });
    let input: Vec<(&str, Option<&str>)> = (0..12).map(|_| (PNG, Some("a cat"))).collect();
    let sql = refine_values(&input);
    let missing = run(&fake, &[], &[], None, &sql);
    missing.fails_with(
        1,
        &["lvlm_refine", "401", "HQFLOW_API_KEY", "OPENAI_API_KEY"],
    );
    assert_eq!(fake.requests(), 1, "one request, not one per row");

    let wrong = "sk-wrong-9876543210fedcba";
    let refused = run(&fake, &[], &[("HQFLOW_API_KEY", wrong)], None, &sql);
    refused.fails_with(1, &["refused the API key in HQFLOW_API_KEY"]);
    // The fake echoes the key it got; the message must not show it.
    assert!(!refused.stderr.contains(wrong), "{}", refused.stderr);
    assert!(!refused.stderr.contains("9876543210"), "{}", refused.stderr);
    assert_eq!(fake.requests(), 2);

    // HQFLOW_API_KEY wins over OPENAI_API_KEY.
    let env = [("HQFLOW_API_KEY", key), ("OPENAI_API_KEY", wrong)];
    let rows = rows(&run(&fake, &[], &env, None, &sql));
    assert!(rows.iter().all(|r| r["r"] == answer_for("a cat")));
    let bearer = format!("Bearer {key}");
    assert!(
        fake.seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );
    let openai = run(&fake, &[], &[("OPENAI_API_KEY", key)], None, &sql);
    assert_eq!(rows.len(), self::rows(&openai).len());
}

#[test]
fn bad_backends_and_arguments_are_plan_errors() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let call = |backend: &str| format!("SELECT lvlm_refine({PNG}, 'a cat'{backend})");
    let no_model = ["hqflow.model.nomodel=http://127.0.0.1:9/v1"];
    run(&fake, &no_model, &[], None, &call(", 'nomodel'"))
        .fails_with(1, &["backend 'nomodel'", "names no model"]);
    let bad_url = ["hqflow.model.badurl=http://:9/v1?model=m"];
    run(&fake, &bad_url, &[], None, &call(", 'badurl'"))
        .fails_with(1, &["backend 'badurl'", "not a chat-completions backend"]);
    let dir = format!("hqflow.model.dir={}", root().join("tests/data").display());
    run(&fake, &[&dir], &[], None, &call(", 'dir'"))
        .fails_with(1, &["backend 'dir'", "is not a refiner checkpoint"]);
    run(&fake, &[], &[], None, &call(", 'nosuch'")).fails_with(1, &["'nosuch' is not registered"]);
    let text_as_image = "SELECT lvlm_refine('not bytes', 'a cat', 'fake')";
    run(&fake, &[], &[], None, text_as_image).fails_with(1, &["argument 1 (img)"]);
    assert_eq!(fake.requests(), 0);
}

#[test]
fn on_error_fail_stops_the_query_at_a_failed_row() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let later: Vec<String> = (0..20).map(|i| format!("later{i} slow=50")).collect();
    let mut input = vec![(PNG, Some("plain first")), (PNG, Some("reject400"))];
    input.extend(later.iter().map(|t| (PNG, Some(t.as_str()))));
    let settings = ["hqflow.on_error=fail", "hqflow.refine.concurrency=1"];
    let out = run(&fake, &settings, &[], None, &refine_values(&input));
    out.fails_with(1, &["lvlm_refine", "HTTP 400", "hqflow.on_error = 'fail'"]);
    // Rows still waiting when the failure came were never sent.
    assert!(fake.requests() < 1 + 1 + 20, "{} requests", fake.requests());
}

#[test]
fn the_cache_answers_a_rerun_without_requests_and_follows_the_prompt() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let cache = tempfile::tempdir().expect("tempdir");
    let input = [
        (PNG, Some("one")),
        (PNG, Some("two")),
        (JPEG, Some("three")),
        (PNG, None),
        (PNG, Some("reject400")),
    ];
    let sql = refine_values(&input);
    let first = run(&fake, &[], &[], Some(cache.path()), &sql);
    let answers = first.ok().to_string();
    assert!(
        first
            .stderr
            .contains("lvlm_refine 0 from cache, 3 computed"),
        "{}",
        first.stderr
    );
    assert_eq!(fake.requests(), 4);
    let second = run(&fake, &[], &[], Some(cache.path()), &sql);
    assert_eq!(second.ok(), answers);
    assert!(
        second
            .stderr
            .contains("lvlm_refine 3 from cache, 0 computed"),
        "{}",
        second.stderr
    );
    // Only the failed row was asked again (failures are not stored).
    assert_eq!(fake.requests(), 5);
    assert!(second.stderr.contains("lvlm_refine: 1 x request rejected"));

    // Another prompt template is another fingerprint: everything is asked again, with it.
    let template = cache.path().join("prompt.txt");
    std::fs::write(
        &template,
        "Describe the image; the alt-text is <<{alt_text}>>.",
    )
    .expect("write the template");
    let setting = format!("hqflow.refine.prompt={}", template.display());
    let third = run(&fake, &[&setting], &[], Some(cache.path()), &sql);
    assert_eq!(third.ok(), answers);
    assert!(
        third
            .stderr
            .contains("lvlm_refine 0 from cache, 3 computed"),
        "{}",
        third.stderr
    );
    assert_eq!(fake.requests(), 9);
}

#[test]
fn a_server_without_json_schema_gets_json_mode_once_asked() {
    let fake = FakeOpenAi::start(FakeConfig {
        refuse_json_schema: true,
        ..FakeConfig::default()
    });
    let input: Vec<(&str, Option<&str>)> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|t| (PNG, Some(*t)))
        .collect();
    let rows = rows(&run(&fake, &[], &[], None, &refine_values(&input)));
    for (row, (_, txt)) in rows.iter().zip(&input) {
        assert_eq!(row["r"], answer_for(txt.expect("text")));
    }
    let formats: Vec<Option<String>> = fake.seen().into_iter().map(|s| s.format).collect();
    let schema = formats
        .iter()
        .filter(|f| f.as_deref() == Some("json_schema"))
        .count();
    assert_eq!(schema, 1, "the refusal is remembered: {formats:?}");
    assert_eq!(formats.len(), 7);
}

/// The same query in this process, on whatever runtime the test runs on.
async fn refine_in_process() {
    use hqflow::session::{Assignment, SessionOptions, build_session};
    let fake = FakeOpenAi::start(FakeConfig::default());
    let set = |key: &str, value: &str| Assignment {
        key: key.into(),
        value: value.into(),
    };
    let options = SessionOptions {
        settings: vec![set("hqflow.refine.timeout_ms", "2000")],
        models: vec![set("fake", &fake.location())],
        tables: Vec::new(),
    };
    let ctx = build_session(&options).await.expect("session");
    let sql = format!(
        "SELECT lvlm_refine({PNG}, 'in process ' || value, 'fake')['long_pos'] AS p, \
         lvlm_refine({PNG}, 'constant', 'fake')['short_neg'][1] AS c \
         FROM generate_series(1, 5) ORDER BY value"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let formatted = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string();
    for i in 1..=5 {
        assert!(
            formatted.contains(&format!("| pos: in process {i} | not constant |")),
            "{formatted}"
        );
    }
    assert!(hqflow_udfs::row_errors(&ctx).is_empty());
    assert_eq!(fake.tries("constant"), 1, "a constant call is folded once");
}

#[tokio::test(flavor = "current_thread")]
async fn lvlm_refine_runs_on_a_current_thread_runtime() {
    refine_in_process().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lvlm_refine_runs_on_a_multi_thread_runtime() {
    refine_in_process().await;
}

/// The documented flow end to end: `queries/dfn_scored.sql` and `queries/refine.sql` through
/// `hqflow run`, the result checked against the refined contract, then every statistics query
/// in `queries/stats/` over it.
#[test]
fn the_refine_query_writes_the_refined_contract_and_the_stats_run_over_it() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let scored = dir.path().join("scored");
    let refined = dir.path().join("refined");
    let pool = format!("pool={}", crate::support::fixture("clip_pool.parquet"));
    let scored_table = format!("scored={}", scored.display());
    let refined_table = format!("refined={}", refined.display());
    let hq = |args: &[&str]| crate::support::hqflow(args);
    hq(&[
        "run",
        "queries/dfn_scored.sql",
        "-t",
        &pool,
        "-m",
        "dfn=tests/data/clip/tiny-quickgelu",
        "--out",
        scored.to_str().expect("utf-8"),
    ])
    .ok();
    let backend = format!("refiner={}", fake.location());
    let refine = hq(&[
        "run",
        "queries/refine.sql",
        "-t",
        &scored_table,
        "-m",
        &backend,
        "-s",
        "hqflow.refine_backend=refiner",
        "--out",
        refined.to_str().expect("utf-8"),
    ]);
    refine.ok();
    hq(&[
        "schema",
        "check",
        "-t",
        &refined_table,
        "--schema",
        "refined",
    ])
    .ok();

    let count = |table: &str, sql: &str| -> String {
        hq(&["sql", "-t", table, "--format", "csv", sql])
            .ok()
            .lines()
            .nth(1)
            .expect("a row")
            .to_string()
    };
    // The top 30% of the scored rows, each refined by the fake (which echoes the alt-text).
    let scored_rows: f64 = count(&scored_table, "SELECT count(dfn_score) FROM scored")
        .parse()
        .expect("a count");
    let kept: f64 = count(&refined_table, "SELECT count(*) FROM refined")
        .parse()
        .expect("a count");
    assert!(
        kept >= (scored_rows * 0.3).floor() && kept <= (scored_rows * 0.3).ceil() + 1.0,
        "{kept} kept of {scored_rows}"
    );
    assert_eq!(
        count(
            &refined_table,
            // The client sends at most 2,000 characters of alt-text.
            "SELECT count(*) FROM refined WHERE starts_with(long_pos, 'pos: ') \
             AND starts_with(txt, substr(long_pos, 6)) \
             AND short_neg[1] = 'not ' || substr(long_pos, 6) AND refine_error IS NULL \
             AND refine_model LIKE 'http://127.0.0.1:%/v1 (model %)'"
        ),
        format!("{kept}")
    );
    for stats in [
        "tag_frequencies",
        "description_lengths",
        "pos_neg_overlap",
        "refine_errors",
    ] {
        let file = format!("queries/stats/{stats}.sql");
        let run = hq(&["sql", "-t", &refined_table, "--format", "csv", "-f", &file]);
        let out = run.ok();
        assert!(out.lines().count() >= 2, "{stats}: {out}");
        if stats == "pos_neg_overlap" {
            assert_eq!(
                out.lines().nth(1),
                Some(format!("{kept},0,0,0.0").as_str()),
                "{out}"
            );
        }
    }
    // The JSON export keyed by uid.
    let export = dir.path().join("refined.json");
    hq(&[
        "sql",
        "-t",
        &refined_table,
        "-f",
        "queries/export_json.sql",
        "--format",
        "json-keyed",
        "-o",
        export.to_str().expect("utf-8"),
    ])
    .ok();
    let exported: Value =
        serde_json::from_str(&std::fs::read_to_string(&export).expect("export written"))
            .expect("the export is JSON");
    let exported = exported.as_object().expect("an object keyed by uid");
    assert_eq!(exported.len() as f64, kept);
    for (uid, texts) in exported {
        let fields: Vec<&str> = texts
            .as_object()
            .expect("an object of texts")
            .keys()
            .map(String::as_str)
            .collect();
        // serde_json's map lists keys sorted.
        assert_eq!(
            fields,
            ["long_neg", "long_pos", "short_neg", "short_pos"],
            "{uid}"
        );
    }
    let histogram = hq(&[
        "sql",
        "-t",
        &scored_table,
        "--format",
        "csv",
        "-f",
        "queries/stats/score_histogram.sql",
    ]);
    let out = histogram.ok();
    let total: u64 = out
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .expect("n")
        })
        .sum();
    assert_eq!(total as f64, scored_rows, "{out}");
}

/// Reading the struct's four fields and testing it for NULL (what `queries/refine.sql` does)
/// sends one request per row, not one per field: DataFusion 55 would otherwise push each
/// field read down into the projection that calls the function, calling it again.
#[test]
fn each_row_is_refined_once_however_many_fields_are_read() {
    let fake = FakeOpenAi::start(FakeConfig::default());
    let input = [(PNG, Some("a")), (PNG, Some("b")), (PNG, Some("c"))];
    let sql = format!(
        "SELECT r['long_pos'] AS a, r['long_neg'] AS b, r['short_pos'] AS c, \
         r['short_neg'] AS d, r IS NULL AS e FROM ({}) AS refined",
        refine_values(&input)
    );
    assert_eq!(rows(&run(&fake, &[], &[], None, &sql)).len(), 3);
    assert_eq!(fake.requests(), 3);
    // The DataFusion setting hqflow turns off is the cause: on, every field read calls again.
    let pushdown = ["datafusion.optimizer.enable_leaf_expression_pushdown=true"];
    assert_eq!(rows(&run(&fake, &pushdown, &[], None, &sql)).len(), 3);
    assert!(fake.requests() > 6, "{} requests", fake.requests());
}

/// The built-in refiner (no backend named) on world rows it never saw, judged against their
/// hidden truth by `hqflow world judge`. On these 96 rows the shipped refiner measured
/// positive-tag F1 0.936, long-description statements right 0.76, negative tags
/// contradicting 0.92, long negatives contradicting 1.000 (2,000 rows:
/// `udfs/models/world-vlm/README.md`). The floors are the issue's targets (tag F1 at least
/// 0.9, at least 95% of long negatives contradicting) where it sets one, with room for
/// other thread counts' rounding elsewhere; the refiner before its tagging head and
/// contrastive negatives measured F1 0.61 and 0.77 here.
#[test]
fn the_built_in_refiner_is_judged_against_the_hidden_truth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let hq = |args: &[&str]| crate::support::hqflow_in(d, args);
    hq(&[
        "world", "pool", "--rows", "96", "--seed", "31", "--size", "32", "--out", "pool",
    ])
    .ok();
    hq(&[
        "sql",
        "-t",
        "pool=pool",
        "COPY (SELECT uid, truth_scene, truth_quality, r['long_pos'] AS long_pos, \
         r['long_neg'] AS long_neg, r['short_pos'] AS short_pos, r['short_neg'] AS short_neg \
         FROM (SELECT *, lvlm_refine(img, txt) AS r FROM pool)) TO 'refined/' STORED AS PARQUET",
    ])
    .ok();
    // The same rows judged from the refined table alone and joined to the pool by uid.
    let judged = |args: &[&str]| -> Value {
        serde_json::from_str(hq(args).ok()).expect("judge prints JSON")
    };
    let report = judged(&["world", "judge", "--table", "refined"]);
    let joined = judged(&["world", "judge", "--table", "refined", "--truth", "pool"]);
    assert_eq!(report, joined);
    let all = &report["all"];
    let metric = |name: &str| {
        all[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {all}"))
    };
    assert_eq!(all["rows"], 96);
    // Rows without an alt-text (the pool's empty class) are NULL, not refined.
    let empty = report["by_quality"]["empty"]["rows"].as_u64().unwrap_or(0);
    assert!(all["unrefined"].as_u64().expect("count") <= empty, "{all}");
    assert!(metric("short_pos_f1") >= 0.9, "{all}");
    assert!(metric("long_neg_contradict") >= 0.95, "{all}");
    assert!(metric("long_pos_statements_right") >= 0.65, "{all}");
    assert!(metric("short_neg_contradict") >= 0.85, "{all}");
}
