//! `world pool` and `world seed` rows: a scene, its image, an alt-text of the drawn quality
//! and the hidden truth; seed rows add the four HQ-CLIP texts.

use std::path::Path;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Result;

use super::captions::{Changed, alt_text, change_one, partial, plain};
use super::claims::Claims;
use super::junk::junk;
use super::mix::{Mix, Quality};
use super::rng::Rng;
use super::scene::Scene;
use super::seed_texts::seed_texts;
use super::table::{Cell, Written, tags_field, text, text_field, write_table};
use super::{Domain, ImageArgs, Purpose, TableArgs, encode_scene, row_rng, row_scene, row_uid};

/// The pool's columns: the contract's (`uid`, `url`, `txt`, `img`, `width`, `height`) and the
/// hidden truth (`truth_changed`: what a `wrong_attr` alt-text got wrong, NULL on other rows).
pub fn pool_fields() -> Vec<Field> {
    vec![
        text_field("uid", false),
        text_field("url", false),
        text_field("txt", true),
        Field::new("img", DataType::Binary, false),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
        text_field("truth_quality", false),
        text_field("truth_scene", false),
        text_field("truth_caption", false),
        text_field("truth_changed", true),
    ]
}

/// Another image's scene for a `mismatch` caption: an earlier row's (so a pool's first rows
/// do not depend on how many rows follow), or for row 0 a scene of its own.
fn other_scene(seed: u64, domain: Domain, row: u64, rng: &mut Rng) -> Scene {
    if row == 0 {
        Scene::random(&mut row_rng(seed, domain, row, Purpose::Other))
    } else {
        row_scene(seed, domain, rng.below(row as usize) as u64)
    }
}

/// A caption true of another scene that this one contradicts.
fn mismatched(scene: &Scene, seed: u64, domain: Domain, row: u64, rng: &mut Rng) -> Claims {
    for _ in 0..8 {
        let other = other_scene(seed, domain, row, rng);
        let claims = partial(&other, rng);
        if claims.mismatches(scene) > 0 {
            return claims;
        }
    }
    // Eight partial captions all happened to fit: say everything about the last one, and if
    // even that fits, change one statement.
    let other = other_scene(seed, domain, row, rng);
    let claims = Claims::full(&other);
    if claims.mismatches(scene) > 0 {
        claims
    } else {
        change_one(scene, &claims, rng).0
    }
}

/// The alt-text of a row of the given quality and, for `wrong_attr`, what it got wrong.
fn alt(
    quality: Quality,
    scene: &Scene,
    seed: u64,
    domain: Domain,
    row: u64,
    rng: &mut Rng,
) -> (Option<String>, Option<Changed>) {
    match quality {
        Quality::Correct => (Some(alt_text(&partial(scene, rng), rng)), None),
        Quality::WrongAttr => {
            let claims = partial(scene, rng);
            let (wrong, changed) = change_one(scene, &claims, rng);
            (Some(alt_text(&wrong, rng)), Some(changed))
        }
        Quality::Junk => (Some(junk(rng)), None),
        Quality::Mismatch => (
            Some(alt_text(&mismatched(scene, seed, domain, row, rng), rng)),
            None,
        ),
        Quality::Empty => match rng.below(10) {
            0..5 => (None, None),
            5..9 => (Some(String::new()), None),
            _ => (Some(" ".to_string()), None),
        },
    }
}

/// One pool row's cells; seed rows go on with the four texts.
fn pool_row(
    seed: u64,
    domain: Domain,
    row: u64,
    image: &ImageArgs,
    mix: &Mix,
) -> Result<(Vec<Cell>, Scene, Rng)> {
    let scene = row_scene(seed, domain, row);
    let mut rng = row_rng(seed, domain, row, Purpose::Text);
    // An even sequence rather than a random draw: every run of rows has the mix's shares.
    let quality = mix.at(Rng::even(
        seed,
        &[domain as u64, Purpose::Quality as u64],
        row,
    ));
    let (txt, changed) = alt(quality, &scene, seed, domain, row, &mut rng);
    let (img, encoding) = encode_scene(&scene, image, &mut rng)?;
    let table = match domain {
        Domain::Seed => "seed",
        _ => "pool",
    };
    let side = image.size as i32;
    let cells = vec![
        text(row_uid(seed, domain, row)),
        text(format!(
            "https://img.world.example/{table}/{seed}/{row:09}.{}",
            encoding.extension()
        )),
        Cell::Text(txt),
        Cell::Bytes(img),
        Cell::Int(side),
        Cell::Int(side),
        text(quality.word()),
        text(scene.to_json()),
        text(plain(&Claims::full(&scene))),
        Cell::Text(changed.map(|c| c.word().to_string())),
    ];
    Ok((cells, scene, rng))
}

/// Writes `world pool`'s shards.
pub fn write_pool(args: &TableArgs) -> Result<Written> {
    write_pool_rows(
        &args.out,
        args.rows,
        args.seed,
        &args.image,
        &args.mix,
        Domain::Pool,
    )
}

/// Writes `rows` pool rows of `domain` under `out` (the eval sets' filtering pool is a pool
/// of its own domain, so it never repeats a `world pool` row).
pub fn write_pool_rows(
    out: &Path,
    rows: u64,
    seed: u64,
    image: &ImageArgs,
    mix: &Mix,
    domain: Domain,
) -> Result<Written> {
    write_table(
        out,
        Schema::new(pool_fields()),
        rows,
        image.threads(),
        image.shard_rows(),
        |row| Ok(pool_row(seed, domain, row, image, mix)?.0),
    )
}

/// Writes `world seed`'s shards: pool rows plus `long_pos`, `long_neg`, `short_pos`,
/// `short_neg`.
pub fn write_seed(args: &TableArgs) -> Result<Written> {
    let mut fields = pool_fields();
    fields.extend([
        text_field("long_pos", false),
        text_field("long_neg", false),
        tags_field("short_pos"),
        tags_field("short_neg"),
    ]);
    write_table(
        &args.out,
        Schema::new(fields),
        args.rows,
        args.image.threads(),
        args.image.shard_rows(),
        |row| {
            let (mut cells, scene, mut rng) =
                pool_row(args.seed, Domain::Seed, row, &args.image, &args.mix)?;
            let texts = seed_texts(&scene, &mut rng);
            cells.extend([
                text(texts.long_pos),
                text(texts.long_neg),
                Cell::Tags(texts.short_pos),
                Cell::Tags(texts.short_neg),
            ]);
            Ok(cells)
        },
    )
}
