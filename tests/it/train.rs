//! `hqflow-train`: training on a small world table through the real binary, the checkpoint
//! it writes read back by `hqflow sql` and by `eval`, exact resumption, and bad input.

use std::fs;
use std::path::Path;

use candle_core::Device;

use super::support::{Run, hqflow_in};

/// A tiny recipe for the dev profile: seconds, not minutes.
const TINY: &str = r#"
[model]
image_size = 16
patch_size = 8
vision_width = 32
vision_layers = 1
vision_heads = 2
text_width = 32
text_layers = 1
text_heads = 2
context_length = 48
projection_dim = 16
[tokenizer]
vocab_size = 400
[data]
batch_size = 16
shuffle_buffer = 32
[text]
txt = 0.0
long_pos = 1.0
[optim]
steps = 36
warmup_steps = 3
lr = 0.002
[run]
log_every = 100
save_every = 100
"#;

fn train_in(dir: &Path, args: &[&str]) -> Run {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hqflow-train"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the hqflow-train binary runs");
    Run::from(output)
}

/// A temp dir with `seed/` (world seed rows, 32 px) and `tiny.toml`.
fn setup(rows: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = [
        "world", "seed", "--rows", rows, "--seed", "5", "--size", "32", "--out", "seed",
    ];
    hqflow_in(dir.path(), &seed).ok();
    fs::write(dir.path().join("tiny.toml"), TINY).expect("recipe");
    dir
}

/// One metric of every step in `metrics.jsonl`.
fn metric(out: &Path, key: &str) -> Vec<f64> {
    fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {l}"))
        })
        .collect()
}

/// What each step of a refiner run trained, from `metrics.jsonl`.
fn step_tasks(out: &Path) -> Vec<String> {
    fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["task"].as_str().expect("a task").to_string()
        })
        .collect()
}

fn losses(out: &Path) -> Vec<f64> {
    metric(out, "loss")
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[test]
fn learns_saves_a_checkpoint_hqflow_loads_and_evaluates() {
    let dir = setup("120");
    let d = dir.path();
    // 32 rows: two batches an epoch, so 36 steps are 18 epochs: the loss must fall well
    // below chance (ln 16, where a collapsed model that maps everything alike sits).
    let run = train_in(
        d,
        &[
            "fit",
            "--data",
            "seed",
            "--query",
            "SELECT * FROM data LIMIT 32",
            "--out",
            "m",
            "--recipe",
            "tiny.toml",
            "-q",
        ],
    );
    let summary: serde_json::Value = serde_json::from_str(run.ok().trim()).expect("summary");
    assert_eq!(summary["steps"], 36);
    let loss = metric(&d.join("m"), "loss_contrastive");
    assert_eq!(loss.len(), 36);
    let (first, last) = (mean(&loss[..6]), mean(&loss[30..]));
    let chance = 16f64.ln();
    assert!(
        last < first && last < 0.8 * chance,
        "loss did not fall below chance ({chance:.2}): {first:.3} → {last:.3}"
    );
    // The seed table has short tags: the tag term trains too and learns to decide them.
    let tag_loss = metric(&d.join("m"), "loss_tags");
    let tag_accuracy = metric(&d.join("m"), "tag_accuracy");
    assert!(
        mean(&tag_loss[30..]) < mean(&tag_loss[..6]),
        "tag loss did not fall: {tag_loss:?}"
    );
    assert!(mean(&tag_accuracy[30..]) > 0.6, "{tag_accuracy:?}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "tags.json",
        "tag_head.safetensors",
    ] {
        assert!(d.join("m").join(f).is_file(), "{f}");
    }

    // hqflow's own functions load the checkpoint.
    let scores = hqflow_in(
        d,
        &[
            "sql",
            "-m",
            "m=m",
            "-t",
            "t=seed",
            "--format",
            "csv",
            "SELECT count(s) AS n, min(s) >= -1 AND max(s) <= 1 AS bounded FROM \
             (SELECT dfn_score(img, txt, 'm') AS s FROM t)",
        ],
    );
    let out = scores.ok();
    let row = out.lines().nth(1).expect("a result row");
    let (n, bounded) = row.split_once(',').expect("two columns");
    assert!(n.parse::<u32>().expect("a count") > 50, "{out}");
    assert_eq!(bounded, "true", "{out}");

    // eval on a small world eval set.
    hqflow_in(
        d,
        &[
            "world",
            "eval",
            "--seed",
            "9",
            "--out",
            "ev",
            "--size",
            "32",
            "--per-class",
            "1",
            "--retrieval",
            "20",
            "--compositional",
            "20",
            "--filtering",
            "60",
        ],
    )
    .ok();
    let run = train_in(
        d,
        &[
            "eval",
            "--model",
            "m",
            "--data",
            "ev",
            "--out",
            "metrics.json",
            "-q",
        ],
    );
    let metrics: serde_json::Value = serde_json::from_str(run.ok()).expect("metrics JSON");
    let written: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("metrics.json")).expect("file"))
            .expect("metrics file");
    assert_eq!(metrics, written);
    assert_eq!(metrics["retrieval"]["pairs"], 20);
    assert_eq!(metrics["compositional"]["triples"], 20);
    assert_eq!(metrics["zeroshot"]["classes"], 99);
    for key in ["image_to_text_r1", "text_to_image_r5"] {
        let v = metrics["retrieval"][key].as_f64().expect("a number");
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    // The filtering pool: every kind of the default mix, ROC-AUC of correct against each.
    let filtering = &metrics["filtering"];
    let rows: u64 = filtering["rows"]
        .as_object()
        .expect("rows per kind")
        .values()
        .map(|v| v.as_u64().expect("a count"))
        .sum();
    assert_eq!(rows, 60, "{filtering}");
    for kind in ["wrong_attr", "junk", "mismatch", "empty"] {
        let auc = filtering["roc_auc"][kind].as_f64().expect("an AUC");
        assert!((0.0..=1.0).contains(&auc), "{kind}: {auc}");
    }
    // wrong_attr split by what each alt-text got wrong: the parts add up to the whole.
    let split = filtering["wrong_attr_by_change"]
        .as_object()
        .expect("wrong_attr by change");
    let split_rows: u64 = split
        .values()
        .map(|v| v["rows"].as_u64().expect("rows"))
        .sum();
    assert_eq!(
        Some(split_rows),
        filtering["rows"]["wrong_attr"].as_u64(),
        "{filtering}"
    );
    for (kind, v) in split {
        let auc = v["roc_auc"].as_f64().expect("an AUC");
        assert!((0.0..=1.0).contains(&auc), "{kind}: {auc}");
    }
}

#[test]
fn edited_captions_are_hard_negatives_where_the_table_has_no_long_neg() {
    let dir = setup("40");
    let d = dir.path();
    // Alt-texts only, and no long_neg column: without edits no row has a hard negative.
    let alt_texts = TINY.replace("txt = 0.0\nlong_pos = 1.0", "txt = 1.0");
    for (name, share) in [("edit.toml", 1.0), ("plain.toml", 0.0)] {
        let recipe =
            format!("{alt_texts}[loss]\nhard_negative = 1.0\nedited_negative = {share:.1}\n");
        fs::write(d.join(name), recipe).expect("recipe");
    }
    let query = "SELECT img, txt, short_pos, short_neg FROM data";
    let fit = |out: &str, recipe: &str| {
        let args = [
            "fit", "--data", "seed", "--query", query, "--out", out, "--recipe", recipe, "--steps",
            "4", "-q",
        ];
        train_in(d, &args).ok();
    };
    fit("edits", "edit.toml");
    let with_edits = metric(&d.join("edits"), "negative_accuracy");
    assert_eq!(with_edits.len(), 4);
    assert!(
        with_edits.iter().all(|a| (0.0..=1.0).contains(a)),
        "{with_edits:?}"
    );
    fit("plain", "plain.toml");
    let lines = fs::read_to_string(d.join("plain").join("metrics.jsonl")).expect("metrics");
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert!(v["negative_accuracy"].is_null(), "{line}");
    }
}

#[test]
fn sincos_positions_start_apart_and_train() {
    let dir = setup("40");
    let d = dir.path();
    // 32 px, patch 8: a 4 x 4 grid; one step at a tiny learning rate keeps the table.
    let recipe = TINY
        .replace(
            "image_size = 16",
            "image_size = 32\nposition_init = \"sincos\"",
        )
        .replace("steps = 36", "steps = 1")
        .replace("lr = 0.002", "lr = 0.0000001");
    fs::write(d.join("sincos.toml"), recipe).expect("recipe");
    let args = [
        "fit",
        "--data",
        "seed",
        "--out",
        "m",
        "--recipe",
        "sincos.toml",
        "-q",
    ];
    train_in(d, &args).ok();
    let weights = candle_core::safetensors::load(d.join("m/model.safetensors"), &Device::Cpu)
        .expect("weights");
    let table = weights["vision_model.embeddings.position_embedding.weight"]
        .to_vec2::<f32>()
        .expect("a matrix");
    assert_eq!(table.len(), 17);
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    };
    // Farther patches start less alike (trained normal draws end nearly as one shared vector,
    // top left and top right at cosine 0.84 to 0.95), and every patch row has the table's norm
    // 2.
    let (near, far, corner) = (
        cos(&table[1], &table[2]),
        cos(&table[1], &table[4]),
        cos(&table[1], &table[16]),
    );
    assert!(
        far < 0.9 && far < near && corner < near,
        "{near} {far} {corner}"
    );
    for row in &table[1..] {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 2.0).abs() < 0.01, "{norm}");
    }
}

#[test]
fn a_vision_tower_from_the_refiner_trains_locked_and_resumes() {
    let dir = setup("60");
    let d = dir.path();
    let refiner = Path::new(env!("CARGO_MANIFEST_DIR")).join("udfs/models/world-vlm");
    let refiner = refiner.to_str().expect("a UTF-8 path");
    let fit = |extra: &[&str]| {
        let mut args = vec!["fit", "--data", "seed", "-q"];
        args.extend_from_slice(extra);
        train_in(d, &args)
    };
    fit(&["--recipe", "tiny.toml", "--steps", "2", "--out", "text"]).ok();
    fs::write(
        d.join("locked.toml"),
        TINY.replace("[optim]", "[optim]\nlock_vision = true"),
    )
    .expect("recipe");
    let locked = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "--init",
            "text",
            "--init-vision",
            refiner,
            "--recipe",
            "locked.toml",
            "--steps",
            "4",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        fit(&args)
    };
    locked("m", &[]).ok();
    let json = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(path).expect("a file")).expect("JSON")
    };
    // The refiner's tower (32 px, patch 8, 128 wide) under the tiny CLIP's text tower.
    let config = json(&d.join("m/config.json"));
    let vision = &config["vision_config"];
    assert_eq!(
        (
            &vision["image_size"],
            &vision["patch_size"],
            &vision["hidden_size"]
        ),
        (&32.into(), &8.into(), &128.into())
    );
    assert_eq!(
        config["text_config"],
        json(&d.join("text/config.json"))["text_config"]
    );
    assert_eq!(
        json(&d.join("m/preprocessor_config.json"))["crop_size"]["height"],
        32
    );
    let load = |path: &Path| candle_core::safetensors::load(path, &Device::Cpu).expect("weights");
    let trained = load(&d.join("m/model.safetensors"));
    let tower = load(&Path::new(refiner).join("model.safetensors"));
    let text = load(&d.join("text/model.safetensors"));
    let same = |a: &candle_core::Tensor, b: &candle_core::Tensor| {
        a.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("floats")
            == b.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("floats")
    };
    let mut vision_tensors = 0;
    for (name, t) in &trained {
        if name.starts_with("vision_model.") {
            assert!(same(t, &tower[name]), "{name} moved in a locked tower");
            vision_tensors += 1;
        }
    }
    assert_eq!(
        vision_tensors,
        tower
            .keys()
            .filter(|k| k.starts_with("vision_model."))
            .count()
    );
    let name = "text_model.encoder.layers.0.mlp.fc1.weight";
    assert!(
        !same(&trained[name], &text[name]),
        "the text tower did not train"
    );
    assert_eq!(trained["visual_projection.weight"].dims(), &[16, 128]);
    // A locked run resumes exactly.
    locked("r", &["--stop-after", "2"]).ok();
    fit(&["--out", "r", "--resume"]).ok();
    let weights = |run: &str| fs::read(d.join(run).join("model.safetensors")).expect("weights");
    assert!(weights("m") == weights("r"), "resumed weights differ");
    // A checkpoint without a vision tower is a clear error.
    fs::create_dir_all(d.join("no-tower")).expect("dir");
    fs::write(d.join("no-tower/config.json"), "{}").expect("config");
    fit(&["--init", "text", "--init-vision", "no-tower", "--out", "x"])
        .fails_with(1, &["no-tower", "has no vision_config"]);
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let dir = setup("60");
    let d = dir.path();
    let fit = |extra: &[&str]| {
        let mut args = vec![
            "fit",
            "--data",
            "seed",
            "--recipe",
            "tiny.toml",
            "--steps",
            "6",
        ];
        args.extend_from_slice(extra);
        train_in(d, &args)
    };
    fit(&["--out", "a", "-q"]).ok();
    fit(&["--out", "b", "--stop-after", "3", "-q"]).ok();
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("b/train_state.json")).expect("state"))
            .expect("json");
    assert_eq!(state["step"], 3);
    // Resuming needs neither the recipe nor --steps: both are the run's own.
    train_in(
        d,
        &["fit", "--data", "seed", "--out", "b", "--resume", "-q"],
    )
    .ok();
    let weights = |run: &str| fs::read(d.join(run).join("model.safetensors")).expect("weights");
    assert!(weights("a") == weights("b"), "resumed weights differ");
    assert_eq!(losses(&d.join("a")), losses(&d.join("b")));
    // A finished run is not started over by accident.
    fit(&["--out", "a"]).fails_with(1, &["already holds a run", "--resume"]);
}

#[test]
fn bad_input_is_skipped_or_a_clear_error() {
    let dir = setup("40");
    let d = dir.path();
    let fit = |extra: &[&str]| {
        let mut args = vec![
            "fit",
            "--data",
            "seed",
            "--recipe",
            "tiny.toml",
            "--steps",
            "2",
        ];
        args.extend_from_slice(extra);
        train_in(d, &args)
    };
    // Undecodable images and rows without text are skipped and counted.
    let query = "SELECT CASE WHEN uid < '8' THEN arrow_cast('not an image', 'Binary') \
                 ELSE img END AS img, txt, CASE WHEN uid > 'c' THEN NULL ELSE long_pos END \
                 AS long_pos FROM data";
    let run = fit(&["--out", "skip", "--query", query, "-q"]);
    let summary: serde_json::Value = serde_json::from_str(run.ok().trim()).expect("summary");
    assert!(
        summary["data"]["skipped_bad_image"].as_u64() > Some(0),
        "{summary}"
    );
    assert!(
        summary["data"]["skipped_no_text"].as_u64() > Some(0),
        "{summary}"
    );

    fit(&["--out", "e1", "--query", "SELECT img, uid FROM data"])
        .fails_with(1, &["lacks column(s) long_pos", "it has: img, uid"]);
    fit(&["--out", "e2", "--query", "SELECT * FROM data WHERE false"])
        .fails_with(1, &["no text to train a tokenizer on"]);
    fit(&[
        "--out",
        "e3",
        "--query",
        "SELECT txt AS img, long_pos FROM data",
    ])
    .fails_with(1, &["'img' is Utf8", "binary"]);
    fs::write(d.join("bad.toml"), "[optim]\nlrr = 1\n").expect("recipe");
    train_in(
        d,
        &[
            "fit", "--data", "seed", "--out", "e4", "--recipe", "bad.toml",
        ],
    )
    .fails_with(1, &["bad.toml", "lrr"]);
    train_in(d, &["fit", "--data", "seed", "--out", "e5", "--resume"])
        .fails_with(1, &["e5", "no run to continue"]);
    train_in(d, &["fit", "--data", "nowhere", "--out", "e6"])
        .fails_with(1, &["'nowhere' does not exist"]);
    train_in(d, &["eval", "--model", "seed", "--data", "seed"]).fails_with(1, &["config.json"]);
    // A device this build cannot open is a plan error before anything is written.
    train_in(
        d,
        &["fit", "--data", "seed", "--out", "e7", "--device", "tpu"],
    )
    .fails_with(1, &["--device", "unknown device 'tpu'"]);
    if !cfg!(feature = "cuda") {
        train_in(
            d,
            &["fit", "--data", "seed", "--out", "e8", "--device", "cuda"],
        )
        .fails_with(1, &["--device", "built without GPU support"]);
        assert!(
            !d.join("e8").exists(),
            "a failed device check wrote its --out"
        );
    }
}

#[test]
fn the_built_in_dfn_separates_correct_alt_texts_on_a_pool_it_never_saw() {
    // The filtering pool has its own row domain: none of its rows was in the model's training
    // data. The floors are the issue's targets, under the model's measured figures (on this
    // set: mismatch 1.00, empty 1.00, junk 1.00, one attribute wrong 0.87; stage 3, shipped
    // before, read 0.81 there) and well over what an untrained model gets (about 0.5).
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let eval = [
        "world",
        "eval",
        "--seed",
        "77",
        "--out",
        "ev",
        "--size",
        "32",
        "--per-class",
        "1",
        "--retrieval",
        "10",
        "--compositional",
        "10",
        "--filtering",
        "400",
    ];
    hqflow_in(d, &eval).ok();
    let run = train_in(
        d,
        &["eval", "--model", "hqflow-world-dfn", "--data", "ev", "-q"],
    );
    let metrics: serde_json::Value = serde_json::from_str(run.ok()).expect("metrics JSON");
    let auc = &metrics["filtering"]["roc_auc"];
    for (kind, floor) in [
        ("mismatch", 0.97),
        ("empty", 0.97),
        ("junk", 0.97),
        ("wrong_attr", 0.80),
    ] {
        let v = auc[kind].as_f64().expect("an AUC");
        assert!(v >= floor, "{kind}: ROC-AUC {v} < {floor}: {metrics}");
    }
}

/// `hqflow-train refiner` with a tiny decoder on the built-in DFN's vision tower.
fn refiner_in(dir: &Path, out: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "refiner",
        "--data",
        "seed",
        "--out",
        out,
        "--steps",
        "6",
        "--batch",
        "6",
        "--width",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
        "--alt-text-length",
        "12",
        "-q",
    ];
    args.extend_from_slice(extra);
    train_in(dir, &args)
}

#[test]
fn the_refiner_learns_resumes_exactly_and_runs_as_a_backend() {
    let dir = setup("24");
    let d = dir.path();
    refiner_in(d, "a", &[]).ok();
    refiner_in(d, "b", &["--stop-after", "3"]).ok();
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("b/train_state.json")).expect("state"))
            .expect("json");
    assert_eq!(state["step"], 3);
    refiner_in(d, "b", &["--resume"]).ok();
    let weights = |run: &str| fs::read(d.join(run).join("model.safetensors")).expect("weights");
    assert!(weights("a") == weights("b"), "resumed weights differ");
    assert_eq!(losses(&d.join("a")), losses(&d.join("b")));
    refiner_in(d, "a", &[]).fails_with(1, &["holds a run already", "--resume"]);
    // The tagging head trained alongside, over the seed rows' positive tags; it is part of
    // the refiner (its tags in the config, its weights with the rest).
    let config = |run: &str| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(d.join(run).join("config.json")).expect("config"))
            .expect("json")
    };
    let tags = config("a")["tagger"]["tags"].clone();
    let tags = tags.as_array().expect("a tag list");
    assert!(
        !tags.is_empty()
            && tags
                .iter()
                .all(|t| !t.as_str().expect("text").contains(',')),
        "{tags:?}"
    );
    assert_eq!(config("a")["tagger"]["writes_short_pos"], false);
    // --from goes on training a refiner checkpoint (its shape, not the options').
    refiner_in(d, "f", &["--from", "a", "--tag-weight", "0"]).ok();
    assert_eq!(config("f"), config("a"));
    assert!(weights("f") != weights("a"), "--from trained nothing");
    // A tagging-only phase trains no text; without a tagging head it is refused.
    refiner_in(
        d,
        "t",
        &["--from", "a", "--tag-only-steps", "4", "--tag-mirror"],
    )
    .ok();
    let names = step_tasks(&d.join("t"));
    assert_eq!(
        names,
        ["tags", "tags", "tags", "tags", "long_pos", "long_neg"]
    );
    assert_eq!(metric(&d.join("t"), "tokens")[..4], [0.0; 4]);
    refiner_in(
        d,
        "u",
        &["--from", "a", "--tag-only-steps", "4", "--tag-weight", "0"],
    )
    .fails_with(1, &["--tag-only-steps needs a tagging head"]);
    // Every task trains: the task cycle's first six steps are long texts.
    let tasks = step_tasks(&d.join("a"));
    assert_eq!(
        tasks,
        [
            "long_pos", "long_neg", "long_pos", "long_neg", "long_pos", "long_neg"
        ]
    );
    // The checkpoint is a backend of lvlm_refine: four texts per row (an untrained decoder
    // writes nonsense, but every row gets its struct), and model_id names it.
    let sql = "SELECT count(*) AS n, count(r) AS refined, \
               sum(CASE WHEN r['short_pos'] IS NULL THEN 1 ELSE 0 END) AS no_tags, \
               max(model_id('mine')) AS model \
               FROM (SELECT lvlm_refine(img, txt, 'mine') AS r FROM seed \
               WHERE txt IS NOT NULL LIMIT 5)";
    // A refiner whose tagging head writes the positive tags runs as a backend too: its
    // tags are the head's (a few steps leave them below threshold: empty lists, not NULL).
    refiner_in(
        d,
        "w",
        &[
            "--from",
            "a",
            "--tag-weight",
            "0",
            "--tagger-writes-short-pos",
        ],
    )
    .ok();
    assert_eq!(config("w")["tagger"]["writes_short_pos"], true);
    for run in ["a", "w"] {
        let mine = format!("mine={run}");
        let out = hqflow_in(
            d,
            &[
                "sql",
                "-t",
                "seed=seed",
                "-m",
                &mine,
                "--format",
                "csv",
                sql,
            ],
        );
        let expected = format!("5,5,0,{run}");
        assert_eq!(
            out.ok().lines().nth(1),
            Some(expected.as_str()),
            "{}",
            out.ok()
        );
    }
    // A seed table without the four texts is refused, naming what is missing.
    hqflow_in(
        d,
        &[
            "sql",
            "-t",
            "seed=seed",
            "COPY (SELECT img, txt, long_pos FROM seed) TO 'partial/' STORED AS PARQUET",
        ],
    )
    .ok();
    train_in(
        d,
        &[
            "refiner", "--data", "partial", "--out", "c", "--steps", "1", "-q",
        ],
    )
    .fails_with(1, &["long_neg"]);
}
