//! The package pools (`hqflow ingest package`), from the Debian and npm packages that
//! `tests/data/packages/fetch_pools.sh` fetches and unpacks. They need the registries, so they
//! run only when tests/run.sh could fetch them (it sets HQFLOW_TEST_PACKAGES to where they
//! are); otherwise each test says it was skipped.

use std::path::PathBuf;

use super::support::hqflow_in;

/// Where the unpacked packages are, or `None` (and a "skipped" line) when they are not.
fn packages(test: &str) -> Option<PathBuf> {
    match std::env::var_os("HQFLOW_TEST_PACKAGES") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            eprintln!(
                "skipped: {test} needs the fetched packages (tests/run.sh sets HQFLOW_TEST_PACKAGES when it can fetch them)"
            );
            None
        }
    }
}

/// Ingests package `name` and returns (rows, stderr); checks the pool contract.
fn ingest(name: &str, dir: &std::path::Path, out: &std::path::Path) -> (u64, String) {
    let run = hqflow_in(
        out.parent().expect("a parent"),
        &[
            "ingest",
            "package",
            name,
            &dir.join(name).display().to_string(),
            "--out",
            &out.display().to_string(),
        ],
    );
    run.ok();
    hqflow_in(
        out,
        &["schema", "check", "-t", &format!("p={}", out.display())],
    )
    .ok();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("ingest.json")).expect("ingest.json"),
    )
    .expect("ingest.json parses");
    (manifest["rows"].as_u64().expect("rows"), run.stderr)
}

/// Runs one SQL query over the pool at `out`; returns the CSV lines after the header.
fn sql(out: &std::path::Path, query: &str) -> Vec<String> {
    let run = hqflow_in(
        out,
        &[
            "sql",
            "--format",
            "csv",
            "-t",
            &format!("p={}", out.display()),
            query,
        ],
    );
    run.ok().lines().skip(1).map(str::to_string).collect()
}

#[test]
fn openclipart_pool() {
    let Some(dir) = packages("openclipart_pool") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("openclipart");
    let (rows, _) = ingest("openclipart", &dir, &out);
    assert_eq!(rows, 8121);
    // Captions come from the SVG metadata: title, then keywords.
    assert_eq!(
        sql(
            &out,
            "SELECT txt, label FROM p WHERE key = 'openclipart/animals/bat_orlando_karam_'"
        ),
        ["\"bat. mammal, bat, animal\",animals"]
    );
    let with_text = sql(&out, "SELECT count(*) FROM p WHERE txt IS NOT NULL");
    assert!(
        with_text[0].parse::<u64>().expect("a count") > 8000,
        "{with_text:?}"
    );
}

#[test]
fn tuxpaint_stamps_pool() {
    let Some(dir) = packages("tuxpaint_stamps_pool") else {
        return;
    };
    // Every stamp with a description and a PNG is a row (SVG-only stamps are skipped).
    let stamps = dir.join("tuxpaint-stamps/usr/share/tuxpaint/stamps");
    let mut expected = 0u64;
    let mut stack = vec![stamps];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("stamps dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "txt")
                && path.with_extension("png").is_file()
            {
                expected += 1;
            }
        }
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("tuxpaint-stamps");
    let (rows, stderr) = ingest("tuxpaint-stamps", &dir, &out);
    assert!(
        expected > 700,
        "only {expected} stamps with a PNG and a description"
    );
    assert_eq!(rows, expected, "{stderr}");
    // English sentences, not translations.
    assert_eq!(
        sql(
            &out,
            "SELECT count(*) FROM p WHERE txt LIKE '%.utf8=%' OR txt IS NULL OR txt = ''"
        ),
        ["0"]
    );
}

#[test]
fn fashion_mnist_pool() {
    let Some(dir) = packages("fashion_mnist_pool") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("fashion-mnist");
    let (rows, _) = ingest("fashion-mnist", &dir, &out);
    assert_eq!(rows, 70_000);
    let per_class = sql(
        &out,
        "SELECT label, count(*), min(width), max(height), min(txt) FROM p GROUP BY label ORDER BY label",
    );
    assert_eq!(per_class.len(), 10, "{per_class:?}");
    assert_eq!(per_class[0], "Ankle boot,7000,28,28,ankle boot");
    for line in &per_class {
        assert!(line.contains(",7000,28,28,"), "{line}");
    }
}

#[test]
fn emoji_pool() {
    let Some(dir) = packages("emoji_pool") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("emoji");
    let (rows, _) = ingest("emoji", &dir, &out);
    assert_eq!(rows, 3786);
    assert_eq!(
        sql(
            &out,
            "SELECT txt, label, width, height FROM p WHERE key = 'emoji/1f44b-1f3fd'"
        ),
        ["waving hand sign: medium skin tone,People & Body,64,64"]
    );
}
