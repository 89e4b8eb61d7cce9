//! `hqflow run`: materializing a query into Parquet shards, through the real binary, and
//! resuming it after kill -9 and Ctrl-C at seeded random moments.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use hqflow::run::manifest::Manifest;
use hqflow::world::rng::Rng;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::support::{Run, fixture, hqflow_command, hqflow_in, root};

const TINY: &str = "tests/data/clip/tiny-quickgelu";

/// A world pool of `rows` rows in files of `file_rows` at `dir/pool`.
fn pool(dir: &Path, rows: u64, file_rows: u64) {
    hqflow_in(
        dir,
        &[
            "world",
            "pool",
            "--rows",
            &rows.to_string(),
            "--seed",
            "11",
            "--out",
            "pool",
            "--size",
            "24",
            "--shard-rows",
            &file_rows.to_string(),
        ],
    )
    .ok();
}

/// The first column of a CSV result, one value per row, sorted.
fn csv_column(run: &Run) -> Vec<String> {
    let mut values: Vec<String> = run
        .ok()
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap_or_default().to_string())
        .collect();
    values.sort();
    values
}

/// `hqflow sql` of `query` over the pool: its first column, sorted.
fn expected(dir: &Path, query: &str) -> Vec<String> {
    csv_column(&hqflow_in(
        dir,
        &["sql", "-t", "p=pool", "--format", "csv", query],
    ))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn manifest(out: &Path) -> Option<Manifest> {
    let text = fs::read_to_string(out.join("_manifest.json")).ok()?;
    Some(serde_json::from_str(&text).expect("a manifest hqflow can read"))
}

/// Every value of text column `column` in the `.parquet` files of `out`, sorted; also
/// counts NULLs of column `non_null` when given.
fn read_column(out: &Path, column: &str, non_null: Option<&str>) -> (Vec<String>, usize) {
    let mut values = Vec::new();
    let mut nulls = 0;
    for name in names(out).iter().filter(|n| n.ends_with(".parquet")) {
        let file = fs::File::open(out.join(name)).expect("shard opens");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{name} is not a complete Parquet file: {e}"))
            .build()
            .expect("a reader");
        for batch in reader {
            let batch = batch.expect("a batch");
            let col = batch.column_by_name(column).expect("the column");
            let col = arrow::compute::cast(col, &DataType::Utf8).expect("castable to text");
            let text = col.as_string::<i32>();
            values.extend((0..text.len()).map(|i| text.value(i).to_string()));
            if let Some(other) = non_null {
                nulls += batch
                    .column_by_name(other)
                    .expect("the column")
                    .null_count();
            }
        }
    }
    values.sort();
    (values, nulls)
}

/// Rows in the `.parquet` files of `out`, each read whole (so each must be complete).
fn parquet_rows(out: &Path) -> u64 {
    let mut rows = 0;
    for name in names(out).iter().filter(|n| n.ends_with(".parquet")) {
        let file = fs::File::open(out.join(name)).expect("shard opens");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{name} is not a complete Parquet file: {e}"))
            .build()
            .expect("a reader");
        for batch in reader {
            rows += batch.expect("a batch").num_rows() as u64;
        }
    }
    rows
}

/// What must hold in `out` at any moment, even right after a kill -9: only hqflow's files;
/// every `.parquet` file a complete Parquet file; temporary files hidden from readers;
/// every shard the manifest lists present with its recorded size.
fn check_any_moment(out: &Path) {
    for name in names(out) {
        let ours = name == "_manifest.json"
            || name == "_SUCCESS"
            || (name.starts_with("part-") && name.ends_with(".parquet"))
            || (name.starts_with('.') && name.ends_with(".tmp"));
        assert!(ours, "unexpected file {name} in {}", out.display());
    }
    parquet_rows(out);
    if let Some(m) = manifest(out) {
        for shard in m.finished.iter().flat_map(|u| &u.shards) {
            let size = fs::metadata(out.join(&shard.name))
                .unwrap_or_else(|_| panic!("listed shard {} is missing", shard.name))
                .len();
            assert_eq!(size, shard.size, "{}", shard.name);
        }
    }
}

/// What must hold once a run is complete: `_SUCCESS`, no temporary files, exactly the shards
/// the manifest lists, every unit finished once, rows as recorded.
fn check_complete(out: &Path) -> Manifest {
    check_any_moment(out);
    let all = names(out);
    assert!(all.contains(&"_SUCCESS".to_string()), "{all:?}");
    assert!(!all.iter().any(|n| n.ends_with(".tmp")), "{all:?}");
    let m = manifest(out).expect("a manifest");
    let listed: BTreeSet<String> = m
        .finished
        .iter()
        .flat_map(|u| u.shards.iter().map(|s| s.name.clone()))
        .collect();
    let present: BTreeSet<String> = all
        .into_iter()
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert_eq!(listed, present);
    let units: BTreeSet<u64> = m.finished.iter().map(|u| u.unit).collect();
    assert_eq!(units.len(), m.finished.len(), "a unit finished twice");
    assert_eq!(units, (0..m.split.units).collect(), "units missing");
    assert_eq!(m.rows(), parquet_rows(out));
    if m.split.table.is_some() {
        assert_eq!(m.rows_in(), m.split.input_rows);
    }
    m
}

fn run_in(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    if args.contains(&"--cache") {
        let output = with_cache(hqflow_command())
            .args(&all)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("the hqflow binary runs");
        return Run::from(output);
    }
    hqflow_in(dir, &all)
}

/// Lets a command use the cache its `--cache` names (tests run without one by default).
fn with_cache(mut command: std::process::Command) -> std::process::Command {
    command.env_remove("HQFLOW_NO_CACHE");
    command
}

#[test]
fn a_filter_over_several_files_gives_what_sql_gives() {
    let dir = tempfile::tempdir().expect("temp dir");
    pool(dir.path(), 500, 200);
    fs::write(
        dir.path().join("q.sql"),
        "-- captions of some length, shouted\n\
         CREATE VIEW captioned AS SELECT uid, txt FROM p WHERE txt IS NOT NULL;\n\
         SELECT uid, upper(txt) AS shout FROM captioned WHERE length(txt) > 12;\n",
    )
    .expect("written");
    let want = expected(
        dir.path(),
        "SELECT uid FROM p WHERE txt IS NOT NULL AND length(txt) > 12",
    );
    assert!(want.len() > 100 && want.len() < 500, "{}", want.len());
    // 70 rows per unit: units cross file boundaries and cut row groups.
    let run = run_in(
        dir.path(),
        &[
            "q.sql",
            "--out",
            "out",
            "-t",
            "p=pool",
            "--shard-rows",
            "70",
        ],
    );
    run.ok();
    assert!(
        run.stderr
            .contains("run: 8 units of up to 70 rows of 'p', 500 rows in all"),
        "{}",
        run.stderr
    );
    let out = dir.path().join("out");
    let m = check_complete(&out);
    assert_eq!(m.split.units, 8);
    assert_eq!(read_column(&out, "uid", None).0, want);
    // hqflow reads the directory as a table, skipping the manifest and the marker.
    let back = hqflow_in(
        dir.path(),
        &[
            "sql",
            "-t",
            "o=out",
            "--format",
            "csv",
            "SELECT uid FROM o WHERE shout = upper(shout)",
        ],
    );
    assert_eq!(csv_column(&back), want);
}

/// Starts `hqflow run` in the background.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    with_cache(hqflow_command())
        .arg("run")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hqflow starts")
}

fn finished_units(out: &Path) -> usize {
    manifest(out).map_or(0, |m| m.finished.len())
}

/// Waits until `out`'s manifest lists more than `before` finished units, or the child ends.
fn wait_for_progress(child: &mut Child, out: &Path, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if finished_units(out) > before || child.try_wait().expect("waitable").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no progress in 60 s");
}

#[test]
fn killed_at_random_moments_it_resumes_to_every_row_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Enough rows that six rounds of kills land before the job completes, with the model
    // crates optimized in the dev profile (900 rows finished in three rounds at times).
    pool(dir.path(), 1800, 250);
    // A model call per row makes each unit take a while, so kills land inside units, in
    // their commits and between them.
    fs::write(
        dir.path().join("k.sql"),
        "SELECT uid, dfn_score(img, txt, 'tiny') AS score FROM p WHERE txt IS NOT NULL",
    )
    .expect("written");
    let model = format!("tiny={}", root().join(TINY).display());
    // Small batches: a unit's shard is written over most of the unit's time, so kills
    // also find half-written temporary files.
    let args = [
        "k.sql",
        "--out",
        "out",
        "-t",
        "p=pool",
        "-m",
        &model,
        "--shard-rows",
        "80",
        "-s",
        "datafusion.execution.batch_size=16",
        // The model-output cache is killed with the run: it must come back consistent.
        "--cache",
        "cache",
    ];
    let out = dir.path().join("out");
    let mut rng = Rng::stream(20_261_127, &[7]);
    let mut interrupted = 0;
    for round in 0..6 {
        let before = finished_units(&out);
        let mut child = spawn(dir.path(), &args);
        if round == 0 {
            // Early: while the session starts and plans.
            std::thread::sleep(Duration::from_millis(50 + rng.below(300) as u64));
        } else {
            wait_for_progress(&mut child, &out, before);
            std::thread::sleep(Duration::from_millis(rng.below(700) as u64));
        }
        if child.try_wait().expect("waitable").is_some() {
            break;
        }
        if round == 2 {
            // Ctrl-C: a clean stop, with no temporary file left behind.
            let pid = child.id().to_string();
            let sent = std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .expect("kill runs");
            assert!(sent.success());
            let output = child.wait_with_output().expect("hqflow ends");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("interrupted:") && stderr.contains("run the same command again"),
                "{stderr}"
            );
            assert!(
                !names(&out).iter().any(|n| n.ends_with(".tmp")),
                "{:?}",
                names(&out)
            );
        } else {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
        interrupted += 1;
        check_any_moment(&out);
        eprintln!(
            "round {round}: stopped with {} units finished, files {:?}",
            finished_units(&out),
            names(&out)
        );
    }
    assert!(interrupted >= 4, "only {interrupted} runs were interrupted");
    let done = run_in(dir.path(), &args);
    done.ok();
    let m = check_complete(&out);
    assert!(m.split.units >= 10, "{}", m.split.units);
    let (uids, null_scores) = read_column(&out, "uid", Some("score"));
    assert_eq!(
        uids,
        expected(dir.path(), "SELECT uid FROM p WHERE txt IS NOT NULL")
    );
    assert_eq!(null_scores, 0);
    // Every score was committed to the cache by some run, killed or not, and the cache file
    // survived the kills: the same scores again compute nothing.
    let again = with_cache(hqflow_command())
        .args(["--cache", "cache", "sql", "-t", "p=pool", "-m", &model])
        .arg("SELECT count(dfn_score(img, txt, 'tiny')) AS n FROM p WHERE txt IS NOT NULL")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("the hqflow binary runs");
    let again = Run::from(again);
    again.ok();
    assert!(again.stderr.contains(" 0 computed"), "{}", again.stderr);
}

#[test]
fn another_query_is_refused_restart_starts_over_and_aggregates_run_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    pool(dir.path(), 300, 100);
    fs::write(
        dir.path().join("a.sql"),
        "SELECT uid FROM p WHERE width > 0",
    )
    .expect("written");
    fs::write(
        dir.path().join("b.sql"),
        "SELECT truth_quality, count(*) AS n FROM p GROUP BY truth_quality",
    )
    .expect("written");
    let out = dir.path().join("out");
    run_in(
        dir.path(),
        &[
            "a.sql",
            "--out",
            "out",
            "-t",
            "p=pool",
            "--shard-rows",
            "50",
        ],
    )
    .ok();
    check_complete(&out);

    let other = run_in(
        dir.path(),
        &[
            "b.sql",
            "--out",
            "out",
            "-t",
            "p=pool",
            "--shard-rows",
            "50",
        ],
    );
    other.fails_with(
        1,
        &[
            "holds a run of another job",
            "the query (statement 1:",
            "--restart",
        ],
    );
    let rows = run_in(
        dir.path(),
        &[
            "a.sql",
            "--out",
            "out",
            "-t",
            "p=pool",
            "--shard-rows",
            "60",
        ],
    );
    rows.fails_with(1, &["--shard-rows (50 then, 60 now)"]);
    check_complete(&out);

    let restarted = run_in(
        dir.path(),
        &[
            "b.sql",
            "--out",
            "out",
            "-t",
            "p=pool",
            "--shard-rows",
            "50",
            "--restart",
        ],
    );
    restarted.ok();
    assert!(
        restarted
            .stderr
            .contains("runs as one unit (it has an aggregate"),
        "{}",
        restarted.stderr
    );
    let m = check_complete(&out);
    assert_eq!(m.split.units, 1);
    let query = "SELECT truth_quality || ':' || n FROM o";
    let got = csv_column(&hqflow_in(
        dir.path(),
        &["sql", "-t", "o=out", "--format", "csv", query],
    ));
    let want = expected(
        dir.path(),
        "SELECT truth_quality || ':' || count(*) FROM p GROUP BY truth_quality",
    );
    assert_eq!(got, want);
    assert!(got.len() >= 3, "{got:?}");
}

#[test]
fn a_complete_run_is_not_redone() {
    let dir = tempfile::tempdir().expect("temp dir");
    pool(dir.path(), 200, 200);
    fs::write(
        dir.path().join("q.sql"),
        "SELECT uid, url FROM p WHERE width > 0",
    )
    .expect("written");
    let args = [
        "q.sql",
        "--out",
        "out",
        "-t",
        "p=pool",
        "--shard-rows",
        "64",
    ];
    run_in(dir.path(), &args).ok();
    let out = dir.path().join("out");
    let stamp = |name: &str| {
        let meta = fs::metadata(out.join(name)).expect("exists");
        (meta.len(), meta.modified().expect("mtime"))
    };
    let before: Vec<_> = names(&out).iter().map(|n| (n.clone(), stamp(n))).collect();
    let again = run_in(dir.path(), &args);
    again.ok();
    assert!(
        again
            .stderr
            .contains("is already complete (200 rows in 4 shards); nothing to do"),
        "{}",
        again.stderr
    );
    let after: Vec<_> = names(&out).iter().map(|n| (n.clone(), stamp(n))).collect();
    assert_eq!(before, after);
    // A lost shard is redone, the rest kept.
    fs::remove_file(out.join("part-00002-000.parquet")).expect("removed");
    let healed = run_in(dir.path(), &args);
    healed.ok();
    assert!(
        healed
            .stderr
            .contains("unit 2's shards are missing or changed; redoing it"),
        "{}",
        healed.stderr
    );
    check_complete(&out);
    let kept = before
        .iter()
        .find(|(n, _)| n == "part-00001-000.parquet")
        .expect("listed before");
    assert_eq!(stamp("part-00001-000.parquet"), kept.1);
}

#[test]
fn bad_files_and_directories_get_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    pool(dir.path(), 50, 50);
    let d = dir.path();
    fs::write(
        d.join("set.sql"),
        "SELECT 1; SET datafusion.execution.batch_size = 100",
    )
    .expect("written");
    fs::write(d.join("q.sql"), "SELECT uid FROM p").expect("written");
    fs::write(d.join("empty.sql"), "-- nothing\n").expect("written");
    fs::write(d.join("typo.sql"), "SELEC uid FROM p").expect("written");
    run_in(d, &["missing.sql", "--out", "out"]).fails_with(1, &["cannot read FILE 'missing.sql'"]);
    run_in(d, &["set.sql", "--out", "out"]).fails_with(
        1,
        &["'set.sql': the last statement (statement 2: SET datafusion.execution.batch_size = 100) is not a query"],
    );
    run_in(d, &["empty.sql", "--out", "out"])
        .fails_with(1, &["'empty.sql' holds no SQL statement"]);
    run_in(d, &["typo.sql", "--out", "out"]).fails_with(1, &["typo.sql"]);
    assert!(!d.join("out").exists(), "a failed plan created --out");
    run_in(
        d,
        &["q.sql", "--out", "out", "-t", "p=pool", "--shard-by", "x"],
    )
    .fails_with(
        1,
        &["--shard-by 'x': no Parquet table of that name (tables: p)"],
    );

    // A directory with someone else's files is neither used nor cleared.
    fs::create_dir(d.join("theirs")).expect("made");
    fs::write(d.join("theirs/notes.txt"), "keep me").expect("written");
    for restart in [false, true] {
        let mut args = vec!["q.sql", "--out", "theirs", "-t", "p=pool"];
        if restart {
            args.push("--restart");
        }
        run_in(d, &args).fails_with(1, &["holds 'notes.txt', which hqflow run did not write"]);
    }
    assert_eq!(names(&d.join("theirs")), vec!["notes.txt"]);
    // Nor may a run write over its own input.
    run_in(d, &["q.sql", "--out", "o1", "-t", "p=pool"]).ok();
    run_in(d, &["q.sql", "--out", "o1", "-t", "p=o1", "--restart"]).fails_with(
        1,
        &["a file of table 'p'", "cannot write over its own input"],
    );
    check_complete(&d.join("o1"));

    // A failing unit (a bad image under on_error = 'fail') stops the run at that unit,
    // named, with the units before it kept and nothing half-written.
    fs::write(
        d.join("score.sql"),
        "SELECT uid, dfn_score(img, txt, 'tiny') AS s FROM p",
    )
    .expect("written");
    let model = format!("tiny={}", root().join(TINY).display());
    let pool = format!("p={}", fixture("clip_pool.parquet"));
    let strict = [
        "score.sql",
        "--out",
        "strict",
        "-t",
        &pool,
        "-m",
        &model,
        "-s",
        "hqflow.on_error=fail",
        "--shard-rows",
        "5",
    ];
    run_in(d, &strict).fails_with(1, &["unit 1 (rows 5 to 9 of 'p')", "not an image"]);
    assert_eq!(
        names(&d.join("strict")),
        vec!["_manifest.json", "part-00000-000.parquet"]
    );
    check_any_moment(&d.join("strict"));
}

/// The directory of a finished run read back without hqflow's help: only `.parquet` names,
/// as DuckDB's `DIR/*.parquet` and pyarrow's dataset discovery see it.
#[test]
fn temporary_names_never_look_like_shards() {
    let dir = tempfile::tempdir().expect("temp dir");
    pool(dir.path(), 40, 40);
    fs::write(dir.path().join("q.sql"), "SELECT uid FROM p").expect("written");
    run_in(
        dir.path(),
        &[
            "q.sql",
            "--out",
            "out",
            "-t",
            "p=pool",
            "--shard-rows",
            "16",
        ],
    )
    .ok();
    let out: PathBuf = dir.path().join("out");
    // A killed run's leftovers, as hqflow names them.
    fs::write(out.join(".part-00009-000.parquet.tmp"), b"half a shard").expect("written");
    let back = hqflow_in(
        dir.path(),
        &[
            "sql",
            "-t",
            "o=out",
            "--format",
            "csv",
            "SELECT count(*) FROM o",
        ],
    );
    assert_eq!(back.ok(), "count(*)\n40\n");
    // The next run clears them.
    fs::remove_file(out.join("_SUCCESS")).expect("removed");
    run_in(
        dir.path(),
        &[
            "q.sql",
            "--out",
            "out",
            "-t",
            "p=pool",
            "--shard-rows",
            "16",
        ],
    )
    .ok();
    check_complete(&out);
}

#[test]
fn the_dfn_scored_example_runs_as_documented() {
    let dir = tempfile::tempdir().expect("temp dir");
    pool(dir.path(), 60, 60);
    let query = root().join("queries/dfn_scored.sql");
    let model = format!("dfn={}", root().join(TINY).display());
    let run = run_in(
        dir.path(),
        &[
            query.to_str().expect("a UTF-8 path"),
            "-t",
            "pool=pool",
            "-m",
            &model,
            "--out",
            "scored",
            "--shard-rows",
            "25",
        ],
    );
    run.ok();
    let out = dir.path().join("scored");
    let m = check_complete(&out);
    assert_eq!(m.split.units, 3);
    let (uids, nulls) = read_column(&out, "uid", Some("dfn_score"));
    assert_eq!(nulls, 0);
    assert_eq!(
        uids,
        expected(
            dir.path(),
            "SELECT uid FROM p WHERE txt IS NOT NULL AND trim(txt) <> ''"
        )
    );
}

#[test]
fn failed_rows_are_counted_per_unit_and_reported_for_the_whole_job() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("s.sql"),
        "SELECT uid, dfn_score(img, txt, 'tiny') AS score FROM p",
    )
    .expect("written");
    let table = format!("p={}", fixture("clip_pool.parquet"));
    let model = format!("tiny={}", root().join(TINY).display());
    let args = [
        "s.sql",
        "--out",
        "out",
        "-t",
        &table,
        "-m",
        &model,
        "--shard-rows",
        "5",
    ];
    run_in(dir.path(), &args).ok();
    let out = dir.path().join("out");
    let m = manifest(&out).expect("manifest");
    // The fixture's four undecodable images, each counted in the unit that read it.
    let counted: u64 = m.row_errors().iter().map(|e| e.rows).sum();
    assert_eq!(counted, 4, "{:?}", m.row_errors());
    assert!(
        m.finished
            .iter()
            .filter(|u| !u.row_errors.is_empty())
            .count()
            >= 2
    );
    // Lose the shard of a unit with errors: the resume redoes it and reports the whole job.
    let unit = m
        .finished
        .iter()
        .find(|u| !u.row_errors.is_empty() && !u.shards.is_empty())
        .expect("a unit with errors and rows");
    fs::remove_file(out.join(&unit.shards[0].name)).expect("removed");
    let resumed = run_in(dir.path(), &args);
    resumed.ok();
    assert!(
        resumed
            .stderr
            .contains("over the whole job (every run of it), 4 row(s) got NULL"),
        "{}",
        resumed.stderr
    );
    let again = manifest(&out).expect("manifest");
    assert_eq!(again.row_errors(), m.row_errors());
}
