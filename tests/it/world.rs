//! `hqflow world`: pools, seed annotations and eval sets, through the real binary, checked
//! against their own truth columns.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use hqflow::world::claims::parse;
use hqflow::world::scene::Scene;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::support::hqflow_in;

/// The shards of a generated table, in order.
fn shards(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("output directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

fn read(dir: &Path) -> Vec<RecordBatch> {
    shards(dir)
        .iter()
        .flat_map(|path| {
            let file = fs::File::open(path).expect("shard opens");
            ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("a Parquet file")
                .build()
                .expect("a reader")
                .map(|b| b.expect("a batch"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One text column of every row (None for NULL).
fn texts(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let array = b
                .column_by_name(column)
                .unwrap_or_else(|| panic!("column {column}"))
                .as_string::<i32>()
                .clone();
            (0..array.len())
                .map(|i| (!array.is_null(i)).then(|| array.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn text_values(batches: &[RecordBatch], column: &str) -> Vec<String> {
    texts(batches, column)
        .into_iter()
        .map(|t| t.expect("not NULL"))
        .collect()
}

fn tags(batches: &[RecordBatch], column: &str) -> Vec<Vec<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let list = b
                .column_by_name(column)
                .unwrap_or_else(|| panic!("column {column}"))
                .as_list::<i32>()
                .clone();
            (0..list.len())
                .map(|i| {
                    let values = list.value(i);
                    let strings = values.as_string::<i32>();
                    (0..strings.len())
                        .map(|j| strings.value(j).to_string())
                        .collect()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn world(dir: &Path, args: &[&str]) {
    let mut all = vec!["world"];
    all.extend_from_slice(args);
    hqflow_in(dir, &all).ok();
}

#[test]
fn same_seed_same_bytes_other_seed_other_pool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = |out: &str, seed: &str| {
        world(
            dir.path(),
            &[
                "pool",
                "--rows",
                "300",
                "--seed",
                seed,
                "--out",
                out,
                "--size",
                "24",
                "--format",
                "mixed",
                "--shard-rows",
                "128",
            ],
        );
    };
    pool("a", "1");
    pool("b", "1");
    pool("c", "2");
    let names: Vec<String> = shards(&dir.path().join("a"))
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet"
        ]
    );
    for name in &names {
        let a = fs::read(dir.path().join("a").join(name)).expect("a");
        let b = fs::read(dir.path().join("b").join(name)).expect("b");
        let c = fs::read(dir.path().join("c").join(name)).expect("c");
        assert!(a == b, "{name} differs between two runs with seed 1");
        assert!(a != c, "{name} is the same with seeds 1 and 2");
    }
    // No temporary files are left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("a"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The thread count does not change a byte.
    world(
        dir.path(),
        &[
            "pool",
            "--rows",
            "300",
            "--seed",
            "1",
            "--out",
            "d",
            "--size",
            "24",
            "--format",
            "mixed",
            "--shard-rows",
            "128",
            "--threads",
            "1",
        ],
    );
    for name in &names {
        let a = fs::read(dir.path().join("a").join(name)).expect("a");
        let d = fs::read(dir.path().join("d").join(name)).expect("d");
        assert!(a == d, "{name} differs with one thread");
    }
    let batches = read(&dir.path().join("a"));
    let urls = text_values(&batches, "url");
    assert!(urls.iter().any(|u| u.ends_with(".png")) && urls.iter().any(|u| u.ends_with(".jpg")));
}

#[test]
fn pool_mix_truth_and_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    world(
        dir.path(),
        &[
            "pool", "--rows", "2000", "--seed", "7", "--out", "pool", "--size", "16",
        ],
    );
    hqflow_in(dir.path(), &["schema", "check", "-t", "pool=pool"]).ok();

    let batches = read(&dir.path().join("pool"));
    let quality = text_values(&batches, "truth_quality");
    let txt = texts(&batches, "txt");
    let scenes = text_values(&batches, "truth_scene");
    let captions = text_values(&batches, "truth_caption");
    let changed = texts(&batches, "truth_changed");
    let uids = text_values(&batches, "uid");
    assert_eq!(quality.len(), 2000);

    let mut counts: HashMap<&str, usize> = HashMap::new();
    for q in &quality {
        *counts.entry(q.as_str()).or_default() += 1;
    }
    for (class, share) in [
        ("correct", 0.40),
        ("wrong_attr", 0.20),
        ("junk", 0.15),
        ("mismatch", 0.15),
        ("empty", 0.10),
    ] {
        let got = counts.get(class).copied().unwrap_or(0) as f64 / 2000.0;
        assert!((got - share).abs() < 0.02, "{class}: {got} for {share}");
    }

    let mut unique = uids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), uids.len());
    assert!(
        uids.iter()
            .all(|u| u.len() == 32 && u.chars().all(|c| c.is_ascii_hexdigit()))
    );

    for i in 0..quality.len() {
        let scene = Scene::from_json(&scenes[i]).expect("truth_scene reads");
        assert!((1..=3).contains(&scene.objects.len()));
        // truth_caption states everything, and all of it is true.
        let full = parse(&captions[i]);
        assert_eq!(full.mismatches(&scene), 0, "{}", captions[i]);
        assert_eq!(full.objects.len(), scene.objects.len(), "{}", captions[i]);
        let text = txt[i].as_deref();
        let claims = text.map(parse).unwrap_or_default();
        match quality[i].as_str() {
            "correct" => {
                assert!(!claims.objects.is_empty(), "{text:?}");
                assert_eq!(claims.mismatches(&scene), 0, "{text:?} vs {}", scenes[i]);
            }
            "wrong_attr" => {
                assert!(!claims.objects.is_empty(), "{text:?}");
                assert_eq!(claims.mismatches(&scene), 1, "{text:?} vs {}", scenes[i]);
                let kind = changed[i].as_deref().expect("wrong_attr says what changed");
                check_changed(kind, &claims, &scene, text);
            }
            "mismatch" => {
                assert!(claims.mismatches(&scene) >= 1, "{text:?} vs {}", scenes[i]);
            }
            "junk" => {
                let text = text.expect("junk is not NULL");
                assert!(!text.trim().is_empty());
                assert!(
                    claims.objects.is_empty() && claims.background.is_none(),
                    "{text}"
                );
            }
            "empty" => assert!(text.is_none_or(|t| t.trim().is_empty()), "{text:?}"),
            other => panic!("unknown truth_quality {other}"),
        }
        if quality[i] != "wrong_attr" {
            assert_eq!(changed[i], None, "{}", quality[i]);
        }
    }
    let kinds: std::collections::BTreeSet<&str> =
        changed.iter().flatten().map(String::as_str).collect();
    assert!(kinds.len() >= 6, "{kinds:?}");
    // A correct caption is not always the whole truth_caption: some are partial.
    let partial = (0..quality.len())
        .filter(|&i| quality[i] == "correct")
        .filter(|&i| {
            let scene = Scene::from_json(&scenes[i]).expect("reads");
            txt[i].as_deref().map(parse).expect("text").objects.len() < scene.objects.len()
        })
        .count();
    assert!(partial > 50, "{partial} partial correct captions");
}

/// A `wrong_attr` alt-text's `truth_changed` names the kind of statement that is false:
/// without the statements of that kind the text is true. (Shapes cannot be left out; and a
/// wrong shape may have a second reading, "a small triangle at the top" where the scene's
/// triangle is large and at the bottom.)
fn check_changed(
    kind: &str,
    claims: &hqflow::world::claims::Claims,
    scene: &Scene,
    text: Option<&str>,
) {
    let mut without = claims.clone();
    let objects = without.objects.iter_mut();
    match kind {
        "color" => objects.for_each(|o| o.color = None),
        "size" => objects.for_each(|o| o.size = None),
        "position" => objects.for_each(|o| o.position = None),
        "relation" => without.relations.clear(),
        "background color" | "background kind" => {
            let bg = without.background.as_mut().expect("a background claim");
            if kind == "background color" {
                bg.color = None;
            } else {
                bg.kind = None;
            }
        }
        "shape" => return,
        other => panic!("unknown truth_changed {other}"),
    }
    assert_eq!(without.mismatches(scene), 0, "{text:?}: {kind}");
}

#[test]
fn seed_texts_describe_and_contradict() {
    let dir = tempfile::tempdir().expect("temp dir");
    world(
        dir.path(),
        &[
            "seed", "--rows", "120", "--seed", "3", "--out", "seed", "--size", "16",
        ],
    );
    hqflow_in(dir.path(), &["schema", "check", "-t", "seed=seed"]).ok();
    let batches = read(&dir.path().join("seed"));
    let scenes = text_values(&batches, "truth_scene");
    let long_pos = text_values(&batches, "long_pos");
    let long_neg = text_values(&batches, "long_neg");
    let short_pos = tags(&batches, "short_pos");
    let short_neg = tags(&batches, "short_neg");
    assert_eq!(scenes.len(), 120);
    for i in 0..scenes.len() {
        let scene = Scene::from_json(&scenes[i]).expect("truth_scene reads");
        let pos = parse(&long_pos[i]);
        assert_eq!(pos.mismatches(&scene), 0, "{}", long_pos[i]);
        assert_eq!(pos.objects.len(), scene.objects.len(), "{}", long_pos[i]);
        assert!(pos.background.is_some(), "{}", long_pos[i]);
        if scene.objects.len() > 1 {
            assert!(!pos.relations.is_empty(), "{}", long_pos[i]);
        }
        assert!(
            parse(&long_neg[i]).mismatches(&scene) >= 1,
            "{}",
            long_neg[i]
        );
        assert_ne!(long_pos[i], long_neg[i]);
        assert!(!short_pos[i].is_empty() && short_neg[i].len() >= 2);
        for tag in &short_pos[i] {
            assert_eq!(parse(tag).mismatches(&scene), 0, "{tag} vs {}", scenes[i]);
        }
        for tag in &short_neg[i] {
            assert!(parse(tag).mismatches(&scene) >= 1, "{tag} vs {}", scenes[i]);
        }
    }
    // Seed images are not the pool's images under the same seed.
    world(
        dir.path(),
        &[
            "pool", "--rows", "20", "--seed", "3", "--out", "pool", "--size", "16",
        ],
    );
    let pool = text_values(&read(&dir.path().join("pool")), "uid");
    let seed = text_values(&batches, "uid");
    assert!(pool.iter().all(|u| !seed.contains(u)));
}

#[test]
fn eval_sets_have_their_shapes() {
    let dir = tempfile::tempdir().expect("temp dir");
    world(
        dir.path(),
        &[
            "eval",
            "--seed",
            "5",
            "--out",
            "eval",
            "--size",
            "16",
            "--per-class",
            "2",
            "--retrieval",
            "40",
            "--compositional",
            "60",
            "--filtering",
            "50",
        ],
    );
    let eval = dir.path().join("eval");
    let classes: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(eval.join("zeroshot/classes.json")).expect("classes.json"),
    )
    .expect("JSON");
    let names: Vec<&str> = classes["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    assert!(names.len() >= 7 * 8, "{} classes", names.len());
    assert!(
        classes["templates"]
            .as_array()
            .expect("templates")
            .iter()
            .all(|t| t.as_str().is_some_and(|t| t.contains("{}")))
    );

    let zeroshot = read(&eval.join("zeroshot"));
    let labels = text_values(&zeroshot, "label");
    let scenes = text_values(&zeroshot, "truth_scene");
    let index: Vec<i32> = zeroshot
        .iter()
        .flat_map(|b| {
            b.column_by_name("label_index")
                .expect("label_index")
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(labels.len(), names.len() * 2);
    for i in 0..labels.len() {
        assert_eq!(labels[i], names[index[i] as usize]);
        let scene = Scene::from_json(&scenes[i]).expect("reads");
        assert_eq!(scene.objects.len(), 1);
        let o = &scene.objects[0];
        assert_eq!(labels[i], format!("{} {}", o.color.word(), o.shape.word()));
    }

    let retrieval = read(&eval.join("retrieval"));
    let txt = text_values(&retrieval, "txt");
    let scenes = text_values(&retrieval, "truth_scene");
    assert_eq!(txt.len(), 40);
    for i in 0..txt.len() {
        let scene = Scene::from_json(&scenes[i]).expect("reads");
        let claims = parse(&txt[i]);
        assert_eq!(claims.mismatches(&scene), 0, "{}", txt[i]);
        assert_eq!(claims.objects.len(), scene.objects.len(), "{}", txt[i]);
    }

    let compositional = read(&eval.join("compositional"));
    let pos = text_values(&compositional, "pos");
    let neg = text_values(&compositional, "neg");
    let changed = text_values(&compositional, "changed");
    let scenes = text_values(&compositional, "truth_scene");
    assert_eq!(pos.len(), 60);
    for i in 0..pos.len() {
        let scene = Scene::from_json(&scenes[i]).expect("reads");
        assert_eq!(parse(&pos[i]).mismatches(&scene), 0, "{}", pos[i]);
        assert_eq!(parse(&neg[i]).mismatches(&scene), 1, "{}", neg[i]);
    }
    assert!(changed.iter().any(|c| c == "relation"), "{changed:?}");
    assert!(changed.iter().any(|c| c == "color"), "{changed:?}");

    // The filtering pool: pool rows of the default mix whose truth matches their alt-text.
    let filtering = read(&eval.join("filtering"));
    let quality = text_values(&filtering, "truth_quality");
    let scenes = text_values(&filtering, "truth_scene");
    assert_eq!(quality.len(), 50);
    let correct = quality.iter().filter(|q| *q == "correct").count();
    assert_eq!(correct, 20, "40% of 50 rows: {quality:?}");
    let txt = texts(&filtering, "txt");
    for i in 0..quality.len() {
        if quality[i] == "correct" {
            let text = txt[i].as_deref().expect("a correct row has text");
            let scene = Scene::from_json(&scenes[i]).expect("reads");
            assert_eq!(parse(text).mismatches(&scene), 0, "{text}");
        }
    }
    // A set asked for with 0 rows is not written (eval skips what is not there).
    world(
        dir.path(),
        &[
            "eval",
            "--seed",
            "5",
            "--out",
            "some",
            "--size",
            "16",
            "--per-class",
            "1",
            "--retrieval",
            "0",
            "--compositional",
            "5",
            "--filtering",
            "0",
        ],
    );
    let some = dir.path().join("some");
    assert!(some.join("zeroshot").is_dir() && some.join("compositional").is_dir());
    assert!(!some.join("retrieval").exists() && !some.join("filtering").exists());
}

#[test]
fn world_errors_are_clear() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| {
        let mut all = vec!["world"];
        all.extend_from_slice(args);
        hqflow_in(dir.path(), &all)
    };
    run(&[
        "pool", "--rows", "5", "--seed", "1", "--out", "p", "--mix", "good=1",
    ])
    .fails_with(2, &["unknown class 'good'", "wrong_attr"]);
    run(&[
        "pool",
        "--rows",
        "5",
        "--seed",
        "1",
        "--out",
        "p",
        "--mix",
        "correct=-1",
    ])
    .fails_with(2, &["zero or positive"]);
    run(&[
        "pool", "--rows", "5", "--seed", "1", "--out", "p", "--size", "500",
    ])
    .fails_with(2, &["--size"]);
    fs::create_dir(dir.path().join("full")).expect("mkdir");
    fs::write(dir.path().join("full/keep.txt"), "mine").expect("write");
    run(&["pool", "--rows", "5", "--seed", "1", "--out", "full"])
        .fails_with(1, &["'full' already exists and is not empty"]);
    assert_eq!(
        fs::read_to_string(dir.path().join("full/keep.txt")).expect("kept"),
        "mine"
    );
    // --mix with one class: every row is that class.
    run(&[
        "pool", "--rows", "30", "--seed", "1", "--out", "junk", "--size", "16", "--mix", "junk=1",
    ])
    .ok();
    let quality = text_values(&read(&dir.path().join("junk")), "truth_quality");
    assert!(quality.iter().all(|q| q == "junk"));
}

#[test]
fn bench_world_reports_a_rate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = hqflow_in(
        dir.path(),
        &[
            "bench",
            "world",
            "--rows",
            "64",
            "--size",
            "16",
            "--threads",
            "2",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(run.ok().trim()).expect("one JSON object");
    assert_eq!(report["rows"], 64);
    assert!(
        report["rows_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "{report}"
    );
}
