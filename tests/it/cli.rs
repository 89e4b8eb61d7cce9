//! The `hqflow` binary, run for real in temporary directories.

use std::fs;

use super::support::{fixture, hqflow, hqflow_in, hqflow_stdin};

#[test]
fn counts_a_pyarrow_file_with_large_types_and_small_row_groups() {
    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    let run = hqflow(&[
        "sql",
        "-t",
        &pool,
        "SELECT count(*) FROM pool",
        "--format",
        "csv",
    ]);
    assert_eq!(run.ok(), "count(*)\n100\n");
}

#[test]
fn globs_and_directories_read_every_parquet_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("sub")).expect("mkdir");
    for name in ["a.parquet", "b.parquet"] {
        fs::copy(fixture("pyarrow_pool.parquet"), data.join(name)).expect("copy fixture");
    }
    fs::copy(fixture("pyarrow_pool.parquet"), data.join("sub/c.parquet")).expect("copy fixture");
    fs::write(data.join("_SUCCESS"), "").expect("marker");
    fs::write(data.join("notes.txt"), "not parquet").expect("notes");

    let count = |location: &str| {
        let table = format!("t={location}");
        hqflow_in(
            dir.path(),
            &[
                "sql",
                "-t",
                &table,
                "SELECT count(*) AS n FROM t",
                "--format",
                "csv",
            ],
        )
    };
    assert_eq!(count("data/*.parquet").ok(), "n\n200\n");
    assert_eq!(count("data/a.parquet").ok(), "n\n100\n");
    // A directory reads its *.parquet files and ignores markers and other files.
    assert_eq!(count("data").ok(), "n\n200\n");
    assert_eq!(
        count(&format!("{}/data/", dir.path().display())).ok(),
        "n\n200\n"
    );
    // Nested directories on request; a glob across directories says how to get them.
    count("data/*/*.parquet").fails_with(
        1,
        &[
            "matches no files",
            "listing_table_ignore_subdirectory=false",
        ],
    );
    let nested = hqflow_in(
        dir.path(),
        &[
            "sql",
            "-s",
            "datafusion.execution.listing_table_ignore_subdirectory=false",
            "-t",
            "t=data",
            "-t",
            "s=data/*/*.parquet",
            "SELECT (SELECT count(*) FROM t) AS all_rows, (SELECT count(*) FROM s) AS nested_rows",
        ],
    );
    assert_eq!(nested.ok(), "all_rows,nested_rows\n300,100\n");
}

#[test]
fn copy_round_trips_row_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    let run = hqflow_in(
        dir.path(),
        &[
            "sql",
            "-t",
            &pool,
            "COPY (SELECT * FROM pool WHERE img IS NOT NULL) TO 'out/' STORED AS PARQUET",
        ],
    );
    run.ok();
    assert!(run.stderr.contains("COPY: 90 rows"), "{}", run.stderr);
    let run = hqflow_in(
        dir.path(),
        &[
            "sql",
            "-t",
            "out=out",
            "SELECT count(*) AS n, count(DISTINCT uid) AS u FROM out",
        ],
    );
    assert_eq!(run.ok(), "n,u\n90,90\n");
}

#[test]
fn schema_check_passes_a_pool_and_names_what_is_missing() {
    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    let run = hqflow(&["schema", "check", "--table", &pool]);
    run.ok();
    assert!(
        run.stderr.contains("conforms to schema 'pool'"),
        "{}",
        run.stderr
    );

    let no_img = format!("p={}", fixture("no_img.parquet"));
    hqflow(&["schema", "check", "--table", &no_img])
        .fails_with(2, &["column 'img' is missing", "Binary"]);

    // A pool is not a refined table: the refinement columns are named.
    hqflow(&["schema", "check", "--table", &pool, "--schema", "refined"]).fails_with(
        2,
        &[
            "column 'dfn_score' is missing",
            "column 'long_neg' is missing",
            "List<Utf8>",
        ],
    );

    // Wrong types are named with what was found.
    let nested = format!("n={}", fixture("nested.parquet"));
    let contract = tempfile::NamedTempFile::new().expect("temp file");
    fs::write(
        contract.path(),
        r#"{"name":"custom","fields":[{"name":"tags","type":"Utf8"},{"name":"emb","type":"List<Float32>"}]}"#,
    )
    .expect("write contract");
    hqflow(&[
        "schema",
        "check",
        "--table",
        &nested,
        "--schema",
        &contract.path().to_string_lossy(),
    ])
    .fails_with(2, &["column 'tags' has type List", "expected Utf8"]);
}

#[test]
fn json_csv_ndjson_and_parquet_outputs() {
    let nested = format!("n={}", fixture("nested.parquet"));
    let json = hqflow(&[
        "sql",
        "-t",
        &nested,
        "SELECT id, tags, scene, emb FROM n ORDER BY id",
        "--format",
        "json",
    ]);
    let value: serde_json::Value = serde_json::from_str(json.ok()).expect("one JSON document");
    assert_eq!(
        value,
        serde_json::json!([
            {"id": 1, "tags": ["red", "circle"], "scene": {"shape": "circle", "size": 2}, "emb": [0.5, -0.5]},
            {"id": 2, "tags": [], "scene": {"shape": null, "size": 1}, "emb": [1.0, 0.0]},
            {"id": 3, "tags": null, "scene": null, "emb": null}
        ])
    );
    let empty = hqflow(&[
        "sql",
        "-t",
        &nested,
        "SELECT id FROM n WHERE id > 10",
        "--format",
        "json",
    ]);
    assert_eq!(empty.ok().trim(), "[]");

    let csv = hqflow(&[
        "sql",
        "-t",
        &nested,
        "SELECT id, tags FROM n ORDER BY id",
        "--format",
        "csv",
    ]);
    assert_eq!(
        csv.ok(),
        "id,tags\n1,\"[\"\"red\"\",\"\"circle\"\"]\"\n2,[]\n3,\n"
    );
    let header_only = hqflow(&[
        "sql",
        "-t",
        &nested,
        "SELECT id, tags FROM n WHERE false",
        "--format",
        "csv",
    ]);
    assert_eq!(header_only.ok(), "id,tags\n");

    let ndjson = hqflow(&[
        "sql",
        "-t",
        &nested,
        "SELECT id, scene FROM n ORDER BY id",
        "--format",
        "ndjson",
    ]);
    let lines: Vec<serde_json::Value> = ndjson
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2], serde_json::json!({"id": 3, "scene": null}));

    let dir = tempfile::tempdir().expect("temp dir");
    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    hqflow_in(
        dir.path(),
        &[
            "sql",
            "-t",
            &pool,
            "SELECT uid, img FROM pool WHERE img IS NOT NULL",
            "-o",
            "x.parquet",
        ],
    )
    .ok();
    let back = hqflow_in(
        dir.path(),
        &["sql", "-t", "x=x.parquet", "SELECT count(*) AS n FROM x"],
    );
    assert_eq!(back.ok(), "n\n90\n");
}

#[test]
fn failed_query_leaves_no_output_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    // Fails at run time (a cast of text to int), after the output was opened.
    let run = hqflow_in(
        dir.path(),
        &[
            "sql",
            "-t",
            &pool,
            "SELECT CAST(txt AS INT) FROM pool",
            "-o",
            "out.csv",
        ],
    );
    assert_ne!(run.code, 0);
    let left: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn files_stdin_and_several_statements() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("s.sql");
    fs::write(
        &script,
        "CREATE VIEW v AS SELECT 1 AS x UNION ALL SELECT 2;\nSELECT sum(x) AS s FROM v;",
    )
    .expect("script");
    let run = hqflow(&["sql", "-f", &script.to_string_lossy(), "--format", "csv"]);
    assert_eq!(run.ok(), "s\n3\n");

    let run = hqflow_stdin(
        &["sql", "--format", "csv"],
        "SET datafusion.execution.batch_size = 7;\nSHOW datafusion.execution.batch_size;",
    );
    assert_eq!(run.ok(), "name,value\ndatafusion.execution.batch_size,7\n");

    let run = hqflow(&[
        "sql",
        "-s",
        "datafusion.execution.batch_size=9",
        "SHOW datafusion.execution.batch_size",
        "--format",
        "csv",
    ]);
    assert_eq!(run.ok(), "name,value\ndatafusion.execution.batch_size,9\n");

    // The same query file the demo runs works on any pool.
    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    let run = hqflow(&[
        "sql",
        "-t",
        &pool,
        "-f",
        "queries/text_prefilter.sql",
        "--format",
        "csv",
    ]);
    let out = run.ok();
    assert!(out.starts_with("reason,total_rows,pct\n"), "{out}");
    assert!(out.contains("no_image,"), "{out}");
    assert!(out.contains("empty_text,"), "{out}");
}

#[test]
fn explain_and_explain_analyze_show_plans() {
    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    let q = "SELECT count(*) FROM pool WHERE txt IS NOT NULL";
    let plan = hqflow(&[
        "sql",
        "-t",
        &pool,
        &format!("EXPLAIN {q}"),
        "--format",
        "csv",
    ]);
    let out = plan.ok();
    assert!(out.contains("TableScan: pool projection=[txt]"), "{out}");
    let analyzed = hqflow(&[
        "sql",
        "-t",
        &pool,
        &format!("EXPLAIN ANALYZE {q}"),
        "--format",
        "csv",
    ]);
    let out = analyzed.ok();
    assert!(
        out.contains("output_rows=85"),
        "the filter keeps 85 rows: {out}"
    );
    assert!(out.contains("DataSourceExec"), "{out}");
}

#[test]
fn models_register_through_the_command_line() {
    let run = hqflow(&[
        "sql",
        "-m",
        "tiny=tests/data",
        "SELECT value FROM information_schema.df_settings WHERE name = 'hqflow.model.tiny'",
        "--format",
        "csv",
    ]);
    assert_eq!(run.ok(), "value\ntests/data\n");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    fs::write(
        d.join("text.parquet"),
        "this is not parquet at all, just text\n",
    )
    .expect("write");
    let mut corrupt = fs::read(fixture("pyarrow_pool.parquet")).expect("read fixture");
    let n = corrupt.len();
    corrupt[n - 8..n - 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]); // footer length past the file
    fs::write(d.join("corrupt.parquet"), &corrupt).expect("write");
    fs::create_dir(d.join("conflict")).expect("mkdir");
    for f in ["a.parquet", "b.parquet"] {
        fs::copy(
            fixture(&format!("conflict/{f}")),
            d.join("conflict").join(f),
        )
        .expect("copy");
    }
    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    let q = "SELECT 1";
    let run = |args: &[&str]| hqflow_in(d, args);

    run(&["sql", "-t", "t=missing.parquet", q])
        .fails_with(1, &["table 't'", "'missing.parquet' does not exist"]);
    run(&["sql", "-t", "t=text.parquet", q])
        .fails_with(1, &["text.parquet", "not a readable Parquet file"]);
    run(&["sql", "-t", "t=corrupt.parquet", q])
        .fails_with(1, &["corrupt.parquet", "not a readable Parquet file"]);
    run(&["sql", "-t", "t=nothing/*.parquet", q])
        .fails_with(1, &["glob 'nothing/*.parquet' matches no files"]);
    run(&["sql", "-t", "t=conflict", q]).fails_with(
        1,
        &["files disagree on column 'score'", "a.parquet", "b.parquet"],
    );
    fs::create_dir(d.join("empty")).expect("mkdir");
    run(&["sql", "-t", "t=empty", q]).fails_with(1, &["no Parquet files", "'empty'"]);
    fs::write(d.join("empty/zero.parquet"), "").expect("write");
    run(&["sql", "-t", "t=empty", q]).fails_with(1, &["zero.parquet", "empty (0 bytes)"]);

    run(&["sql", "-t", &pool, "SELECT * FROM poool"])
        .fails_with(1, &["table 'datafusion.public.poool' not found"]);
    run(&["sql", "-t", &pool, "SELECT caption FROM pool"])
        .fails_with(1, &["caption", "Valid fields are"]);

    run(&["sql", "-t", "pool", q]).fails_with(2, &["'pool' is not of the form NAME=LOCATION"]);
    run(&["sql", "-t", "my pool=x", q]).fails_with(2, &["not a valid table name"]);
    run(&["sql", "-m", "tiny", q]).fails_with(2, &["'tiny' is not of the form NAME=VALUE"]);
    run(&["sql", "-m", "tiny=/no/such/dir", q])
        .fails_with(1, &["--model tiny=/no/such/dir", "does not exist"]);
    run(&["sql", "-m", "bad name=.", q]).fails_with(1, &["invalid model name 'bad name'"]);
    run(&["sql", "-s", "batch_size", q])
        .fails_with(2, &["'batch_size' is not of the form KEY=VALUE"]);
    run(&["sql", "-s", "datafusion.execution.no_such=1", q])
        .fails_with(1, &["--set datafusion.execution.no_such=1"]);
    run(&["sql", "-s", "datafusion.execution.batch_size=many", q]).fails_with(1, &["batch_size"]);
    run(&["sql", "-f", "no_such.sql"]).fails_with(1, &["cannot read --file 'no_such.sql'"]);
    run(&["sql", "SELEC 1"]).fails_with(1, &["SELEC"]);
    run(&[
        "schema",
        "check",
        "--table",
        &pool,
        "--schema",
        "no_such.json",
    ])
    .fails_with(1, &["cannot read schema file 'no_such.json'"]);
}

#[test]
fn demo_walks_through_the_pool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = hqflow_in(
        dir.path(),
        &[
            "demo",
            "--out",
            "demo",
            "--rows",
            "300",
            "--train-steps",
            "4",
        ],
    );
    let out = run.ok();
    for section in [
        "conforms to the pool contract",
        "queries/text_prefilter.sql",
        "queries/prefilter_vs_truth.sql",
        "queries/dfn_filter.sql",
        "queries/dfn_vs_truth.sql",
        "queries/dfn_wrong_kept.sql",
        "COPY:",
        "queries/refine.sql",
        "conforms to the refined contract",
        "queries/stats/pos_neg_overlap.sql",
        "hqflow world judge",
        "positive tags precision",
        "hqflow report -t scored=",
        "hqflow-train fit",
        "fine-tuned for 4 steps",
        "compositional accuracy",
    ] {
        assert!(
            out.contains(section),
            "demo output lacks {section:?}:\n{out}"
        );
    }
    // The report shows the rows on both sides of the cut the demo made.
    let report = std::fs::read_to_string(dir.path().join("demo/report.html")).expect("report");
    assert!(report.contains("Dropped, just below the threshold"));
    assert!(report.matches("<figure class=\"card kept\">").count() >= 12);
    // The kept table is the top 30% by the built-in DFN of what the prefilter let through; it
    // reads back, and it is mostly correct pairs where the pool is 40% correct.
    let kept = hqflow_in(
        dir.path(),
        &[
            "sql",
            "-t",
            "pool=demo/pool",
            "-t",
            "scored=demo/scored",
            "-t",
            "kept=demo/kept",
            "SELECT (SELECT count(*) FROM pool) AS pool_rows, (SELECT count(*) FROM kept) AS kept_rows, \
             (SELECT count(*) FROM kept WHERE txt IS NULL OR trim(txt) = '') AS kept_empty, \
             (SELECT count(*) FROM scored) AS scored_rows, \
             (SELECT count(*) FROM kept WHERE truth_quality = 'correct') AS kept_correct",
        ],
    );
    let csv = kept.ok();
    let values: Vec<u64> = csv
        .lines()
        .nth(1)
        .expect("a row")
        .split(',')
        .map(|v| v.parse().expect("a count"))
        .collect();
    assert_eq!(values[0], 300);
    assert!(values[1] > 0 && values[1] < values[3], "{csv}");
    assert!(values[3] < 300, "the prefilter drops empty captions: {csv}");
    assert_eq!(values[2], 0, "empty captions must not be kept");
    assert!(
        values[4] * 10 >= values[1] * 6,
        "the DFN should keep mostly correct pairs (60%+): {csv}"
    );
    // The refined texts as JSON keyed by uid: one object per refined kept row.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo/refined.json")).expect("refined.json"),
    )
    .expect("JSON");
    let refined = json.as_object().expect("keyed by uid");
    assert!(!refined.is_empty() && refined.len() as u64 <= values[1]);
    for texts in refined.values() {
        assert!(
            texts["long_pos"].is_string() && texts["short_pos"].is_array(),
            "{texts}"
        );
    }
    assert!(report.contains("Most frequent positive tags"));
    // Same seed, same pool.
    let again = hqflow_in(
        dir.path(),
        &[
            "demo",
            "--out",
            "demo2",
            "--rows",
            "300",
            "--train-steps",
            "0",
        ],
    );
    again.ok();
    let digest = |p: &str| {
        let t = format!("p={p}");
        hqflow_in(
            dir.path(),
            &[
                "sql",
                "-t",
                &t,
                "SELECT md5(string_agg(uid || coalesce(txt, '~'), ',' ORDER BY uid)) AS d FROM p",
            ],
        )
        .ok()
        .to_string()
    };
    assert_eq!(digest("demo/pool"), digest("demo2/pool"));
}

#[test]
fn model_errors_are_counted_and_reported_at_the_end() {
    let pool = format!("p={}", fixture("clip_pool.parquet"));
    let run = hqflow(&[
        "sql",
        "-t",
        &pool,
        "-m",
        "tiny=tests/data/clip/tiny-quickgelu",
        "SELECT count(*) AS n, count(dfn_score(img, txt, 'tiny')) AS scored FROM p",
    ]);
    assert_eq!(run.ok(), "n,scored\n17,11\n");
    for line in [
        "4 row(s) got NULL from a model function:",
        "dfn_score: 1 x corrupt image (e.g. corrupt image: truncated JPEG",
        "dfn_score: 1 x empty image bytes",
        "dfn_score: 1 x image too large (e.g. image too large: 30000x30000",
        "dfn_score: 1 x not an image",
    ] {
        assert!(
            run.stderr.contains(line),
            "stderr lacks {line:?}:\n{}",
            run.stderr
        );
    }
    let strict = hqflow(&[
        "sql",
        "-t",
        &pool,
        "-m",
        "tiny=tests/data/clip/tiny-quickgelu",
        "-s",
        "hqflow.on_error=fail",
        "SELECT dfn_score(img, txt, 'tiny') FROM p",
    ]);
    strict.fails_with(1, &["dfn_score: row", "hqflow.on_error = 'fail'"]);
}

/// `hqflow.precision = 'bf16'` end to end: the built-in DFN's scores on a world pool stay
/// within 0.005 of f32's (measured: 0.0014 over scores from -0.41 to 0.43) and keep the same
/// top 30%, give or take a row or two at the cut; on a GPU device it is a plan error.
#[test]
fn bf16_scores_keep_the_f32_ranking() {
    if !hqflow_udfs::models::bf16_matmul::available() {
        eprintln!("skipped: this CPU lacks AVX512-BF16");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let world = [
        "world", "pool", "--rows", "300", "--seed", "9", "--out", "p", "--size", "64",
    ];
    hqflow_in(d, &world).ok();
    // Rows whose score is NULL (the pool's broken images) are left out on both sides.
    let scores = |precision: &str| -> Vec<(String, f64)> {
        let setting = format!("hqflow.precision={precision}");
        let query = "SELECT uid, dfn_score(img, txt) AS s FROM p ORDER BY uid";
        let run = hqflow_in(
            d,
            &[
                "sql",
                "--no-cache",
                "-q",
                "-t",
                "p=p",
                "-s",
                &setting,
                "--format",
                "ndjson",
                query,
            ],
        );
        run.ok()
            .lines()
            .filter_map(|l| {
                let row: serde_json::Value = serde_json::from_str(l).expect("a JSON row");
                let uid = row["uid"].as_str().expect("uid").to_string();
                Some((uid, row["s"].as_f64()?))
            })
            .collect()
    };
    let (full, half) = (scores("f32"), scores("bf16"));
    assert!(full.len() >= 250, "{} scored rows of 300", full.len());
    assert_eq!(full.len(), half.len());
    let mut worst = 0.0f64;
    for ((uid, a), (uid_b, b)) in full.iter().zip(&half) {
        assert_eq!(uid, uid_b);
        worst = worst.max((a - b).abs());
    }
    assert!(
        worst <= 0.005,
        "bf16 scores differ from f32's by up to {worst}"
    );
    let top = |rows: &[(String, f64)]| -> std::collections::HashSet<String> {
        let mut sorted = rows.to_vec();
        sorted.sort_by(|x, y| y.1.total_cmp(&x.1));
        sorted.into_iter().take(90).map(|(uid, _)| uid).collect()
    };
    let shared = top(&full).intersection(&top(&half)).count();
    assert!(shared >= 88, "bf16 keeps {shared} of f32's top 90");
    let gpu = hqflow_in(
        d,
        &[
            "sql",
            "--no-cache",
            "-t",
            "p=p",
            "-s",
            "hqflow.precision=bf16",
            "-s",
            "hqflow.device=cuda",
            "SELECT dfn_score(img, txt) FROM p",
        ],
    );
    gpu.fails_with(1, &["bf16 runs on the CPU only"]);
}

#[test]
fn bench_clip_forward_reports_rates() {
    let run = hqflow(&[
        "bench",
        "clip-forward",
        "--model",
        "tests/data/clip/tiny-gelu",
        "--batch",
        "2",
        "--seconds",
        "0.05",
        "--matmul",
        "64",
    ]);
    let report: serde_json::Value = serde_json::from_str(run.ok().trim()).expect("one JSON object");
    for key in [
        "forward_gflops",
        "matmul_gflops",
        "fraction_of_matmul",
        "images_per_s",
    ] {
        let v = report[key].as_f64().unwrap_or(-1.0);
        assert!(v > 0.0, "{key} = {v} in {report}");
    }
    hqflow(&["bench", "clip-forward", "--model", "tests/no_such_model"])
        .fails_with(1, &["tests/no_such_model"]);
}
