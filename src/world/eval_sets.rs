//! `world eval`: evaluation sets with known answers.
//!
//! - `zeroshot/`: single-object images; the class is `color shape` (every color × shape);
//!   `classes.json` lists the classes and prompt templates.
//! - `retrieval/`: images with one correct caption each, stating everything in the image.
//! - `compositional/`: an image, a correct caption (`pos`) and the same caption with exactly
//!   one attribute or relation changed (`neg`, what changed in `changed`).
//! - `filtering/`: pool rows of the default quality mix with `truth_quality`, to judge a
//!   filter model (how well its scores separate `correct` alt-texts from each other kind).

use std::path::Path;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Result;

use super::captions::{alt_text, change_one, full_with_relation, plain};
use super::claims::Claims;
use super::mix::Mix;
use super::pool::write_pool_rows;
use super::rng::Rng;
use super::scene::Scene;
use super::table::{Cell, Written, text, text_field, write_table};
use super::vocab::{Color, Shape};
use super::{Domain, EvalArgs, Purpose, encode_scene, row_rng, row_scene, row_uid};
use crate::shards::{prepare_dir, write_atomic};

/// Zero-shot prompt templates; `{}` is the class name.
pub const TEMPLATES: &[&str] = &[
    "a photo of the {}.",
    "a drawing of the {}.",
    "an image showing the {}.",
    "a rendering of the {}.",
    "clip art of the {}.",
    "the {}.",
];

/// The zero-shot classes, `color shape`, in label order.
pub fn classes() -> Vec<(Color, Shape)> {
    Color::ALL
        .iter()
        .flat_map(|&c| Shape::ALL.iter().map(move |&s| (c, s)))
        .collect()
}

fn image_fields() -> Vec<Field> {
    vec![
        text_field("uid", false),
        Field::new("img", DataType::Binary, false),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
    ]
}

fn image_cells(
    seed: u64,
    domain: Domain,
    row: u64,
    scene: &Scene,
    args: &EvalArgs,
    rng: &mut Rng,
) -> Result<Vec<Cell>> {
    let (img, _) = encode_scene(scene, &args.image, rng)?;
    let side = args.image.size as i32;
    Ok(vec![
        text(row_uid(seed, domain, row)),
        Cell::Bytes(img),
        Cell::Int(side),
        Cell::Int(side),
    ])
}

fn write_zeroshot(args: &EvalArgs, dir: &Path) -> Result<Written> {
    prepare_dir(dir)?;
    let classes = classes();
    let names: Vec<String> = classes
        .iter()
        .map(|(c, s)| format!("{} {}", c.word(), s.word()))
        .collect();
    let manifest = serde_json::json!({ "classes": names, "templates": TEMPLATES });
    let text_json = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    write_atomic(
        &dir.join("classes.json"),
        format!("{text_json}\n").as_bytes(),
    )?;
    let mut fields = image_fields();
    fields.extend([
        text_field("label", false),
        Field::new("label_index", DataType::Int32, false),
        text_field("truth_scene", false),
        text_field("truth_caption", false),
    ]);
    let per_class = args.per_class.max(1);
    let domain = Domain::ZeroShot;
    write_table(
        dir,
        Schema::new(fields),
        (classes.len() as u64).saturating_mul(args.per_class),
        args.image.threads(),
        args.image.shard_rows(),
        |row| {
            let label = (row / per_class) as usize;
            let (color, shape) = classes[label % classes.len()];
            let mut rng = row_rng(args.seed, domain, row, Purpose::Scene);
            let scene = Scene::single(&mut rng, shape, color);
            let mut cells = image_cells(args.seed, domain, row, &scene, args, &mut rng)?;
            cells.extend([
                text(names[label % names.len()].clone()),
                Cell::Int(label as i32),
                text(scene.to_json()),
                text(plain(&Claims::full(&scene))),
            ]);
            Ok(cells)
        },
    )
}

fn write_retrieval(args: &EvalArgs, dir: &Path) -> Result<Written> {
    prepare_dir(dir)?;
    let mut fields = image_fields();
    fields.extend([text_field("txt", false), text_field("truth_scene", false)]);
    let domain = Domain::Retrieval;
    write_table(
        dir,
        Schema::new(fields),
        args.retrieval,
        args.image.threads(),
        args.image.shard_rows(),
        |row| {
            let scene = row_scene(args.seed, domain, row);
            let mut rng = row_rng(args.seed, domain, row, Purpose::Text);
            let mut cells = image_cells(args.seed, domain, row, &scene, args, &mut rng)?;
            cells.extend([
                text(alt_text(&Claims::full(&scene), &mut rng)),
                text(scene.to_json()),
            ]);
            Ok(cells)
        },
    )
}

fn write_compositional(args: &EvalArgs, dir: &Path) -> Result<Written> {
    prepare_dir(dir)?;
    let mut fields = image_fields();
    fields.extend([
        text_field("pos", false),
        text_field("neg", false),
        text_field("changed", false),
        text_field("truth_scene", false),
    ]);
    let domain = Domain::Compositional;
    write_table(
        dir,
        Schema::new(fields),
        args.compositional,
        args.image.threads(),
        args.image.shard_rows(),
        |row| {
            let scene = row_scene(args.seed, domain, row);
            let mut rng = row_rng(args.seed, domain, row, Purpose::Text);
            let mut cells = image_cells(args.seed, domain, row, &scene, args, &mut rng)?;
            let claims = full_with_relation(&scene, &mut rng);
            let (wrong, changed) = change_one(&scene, &claims, &mut rng);
            cells.extend([
                text(plain(&claims)),
                text(plain(&wrong)),
                text(changed.word()),
                text(scene.to_json()),
            ]);
            Ok(cells)
        },
    )
}

fn write_filtering(args: &EvalArgs, dir: &Path) -> Result<Written> {
    prepare_dir(dir)?;
    write_pool_rows(
        dir,
        args.filtering,
        args.seed,
        &args.image,
        &Mix::default(),
        Domain::Filtering,
    )
}

/// Writes the four sets under `args.out`, leaving out a set asked for with 0 rows (`eval`
/// skips a set that is not there); returns each written set's name and what was written.
pub fn write_eval(args: &EvalArgs) -> Result<Vec<(&'static str, Written)>> {
    type Writer = fn(&EvalArgs, &Path) -> Result<Written>;
    let sets: [(&'static str, u64, Writer); 4] = [
        ("zeroshot", args.per_class, write_zeroshot),
        ("retrieval", args.retrieval, write_retrieval),
        ("compositional", args.compositional, write_compositional),
        ("filtering", args.filtering, write_filtering),
    ];
    let mut written = Vec::new();
    for (name, rows, write) in sets {
        if rows > 0 {
            written.push((name, write(args, &args.out.join(name))?));
        }
    }
    Ok(written)
}
