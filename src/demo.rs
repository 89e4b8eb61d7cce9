//! `hqflow demo`: generate a small pool of rendered images with alt-texts of mixed quality,
//! then walk through hqflow's SQL on it: the schema contract, an overview, the text
//! prefilter with a reason for every dropped row, its agreement with the hidden truth,
//! and a materialized `kept` table read back.
//!
//! Until the model functions land, this is the SQL half of the flow; the pool here is a
//! small stand-in for `hqflow world` (one shape per image, 32 px).

// The walk-through is this command's output: it prints to stdout by design.
#![allow(clippy::print_stdout)]

mod png;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Array, Int64Array, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::cli::{Outcome, Status};
use crate::contract::Contract;
use crate::output::{Format, ResultWriter};
use crate::script::run_script;
use crate::session::new_context;
use crate::tables::register_parquet_table;

/// The demo's SQL, the same files users run with `hqflow sql -f queries/… -t pool=…`.
const QUERIES: [(&str, &str); 3] = [
    (
        "queries/pool_overview.sql",
        include_str!("../queries/pool_overview.sql"),
    ),
    (
        "queries/text_prefilter.sql",
        include_str!("../queries/text_prefilter.sql"),
    ),
    (
        "queries/prefilter_vs_truth.sql",
        include_str!("../queries/prefilter_vs_truth.sql"),
    ),
];

/// `hqflow demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for the generated pool and the kept table (replaced if it exists).
    #[arg(long, default_value = "hqflow-demo")]
    pub out: PathBuf,
    /// Rows in the generated pool.
    #[arg(long, default_value_t = 2000)]
    pub rows: usize,
    /// Seed: the same seed gives the same pool.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// SplitMix64: a small, well-mixed deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const COLORS: [(&str, [u8; 3]); 8] = [
    ("red", [220, 40, 40]),
    ("green", [40, 170, 60]),
    ("blue", [40, 80, 220]),
    ("yellow", [235, 210, 40]),
    ("orange", [240, 140, 30]),
    ("purple", [140, 60, 190]),
    ("black", [20, 20, 20]),
    ("white", [245, 245, 245]),
];
const SHAPES: [&str; 5] = ["circle", "square", "triangle", "cross", "ring"];
const SIZE: u32 = 32;

#[derive(Clone, Copy)]
struct Scene {
    shape: usize,
    color: usize,
    background: usize,
    large: bool,
}

impl Scene {
    fn random(rng: &mut Rng) -> Self {
        let color = rng.below(COLORS.len());
        let mut background = rng.below(COLORS.len());
        while background == color {
            background = rng.below(COLORS.len());
        }
        Scene {
            shape: rng.below(SHAPES.len()),
            color,
            background,
            large: rng.below(2) == 1,
        }
    }

    fn covers(&self, x: f32, y: f32) -> bool {
        let c = SIZE as f32 / 2.0;
        let r = if self.large { 12.0 } else { 6.5 };
        let (dx, dy) = (x - c, y - c);
        match SHAPES[self.shape] {
            "circle" => dx * dx + dy * dy <= r * r,
            "square" => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
            "triangle" => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.6,
            "cross" => {
                (dx.abs() <= r * 0.3 && dy.abs() <= r) || (dy.abs() <= r * 0.3 && dx.abs() <= r)
            }
            _ => {
                let d2 = dx * dx + dy * dy;
                d2 <= r * r && d2 >= (r * 0.55) * (r * 0.55)
            }
        }
    }

    fn png(&self) -> Vec<u8> {
        let mut rgb = Vec::with_capacity((SIZE * SIZE * 3) as usize);
        for y in 0..SIZE {
            for x in 0..SIZE {
                let inside = self.covers(x as f32 + 0.5, y as f32 + 0.5);
                rgb.extend_from_slice(&COLORS[if inside { self.color } else { self.background }].1);
            }
        }
        png::encode_rgb(SIZE, SIZE, &rgb)
    }

    fn caption(&self, rng: &mut Rng) -> String {
        let (color, shape, bg) = (
            COLORS[self.color].0,
            SHAPES[self.shape],
            COLORS[self.background].0,
        );
        let size = if self.large { "large" } else { "small" };
        match rng.below(5) {
            0 => format!("a {size} {color} {shape} on a {bg} background"),
            1 => format!("{color} {shape}"),
            2 => format!("photo of a {color} {shape}"),
            3 => format!("clip art: {shape}, {color}, {bg} backdrop"),
            _ => format!("A {color} {shape} icon"),
        }
    }

    /// The same scene with exactly one attribute (color or shape) changed.
    fn with_one_wrong(&self, rng: &mut Rng) -> Scene {
        let mut wrong = *self;
        if rng.below(2) == 0 {
            while wrong.color == self.color || wrong.color == self.background {
                wrong.color = rng.below(COLORS.len());
            }
        } else {
            while wrong.shape == self.shape {
                wrong.shape = rng.below(SHAPES.len());
            }
        }
        wrong
    }
}

fn junk_caption(rng: &mut Rng) -> String {
    let n = 1000 + rng.below(9000);
    match rng.below(6) {
        0 => format!("IMG_{n}.JPG"),
        1 => format!("DSC0{n}.jpg"),
        2 => "Buy cheap stickers online - best price, free shipping!".to_string(),
        3 => format!("Posted on 2019-03-{:02} by admin", 1 + rng.below(28)),
        4 => "Canon EOS 5D Mark III".to_string(),
        _ => "click here to subscribe to our newsletter".to_string(),
    }
}

/// Renders the pool as one record batch (id order), with the hidden truth columns.
fn generate(rows: usize, seed: u64) -> Result<RecordBatch> {
    let mut rng = Rng(seed);
    let scenes: Vec<Scene> = (0..rows).map(|_| Scene::random(&mut rng)).collect();
    let mut txt = StringBuilder::new();
    let mut url = StringBuilder::new();
    let mut img = BinaryBuilder::new();
    let mut quality = StringBuilder::new();
    let mut truth_caption = StringBuilder::new();
    for (i, scene) in scenes.iter().enumerate() {
        let roll = rng.below(100);
        let (q, caption) = match roll {
            0..40 => ("correct", Some(scene.caption(&mut rng))),
            40..60 => (
                "wrong_attr",
                Some(scene.with_one_wrong(&mut rng).caption(&mut rng)),
            ),
            60..75 => ("junk", Some(junk_caption(&mut rng))),
            75..90 => {
                let other = *rng.pick(&scenes);
                ("mismatch", Some(other.caption(&mut rng)))
            }
            _ => (
                "empty",
                if rng.below(2) == 0 {
                    None
                } else {
                    Some(String::new())
                },
            ),
        };
        txt.append_option(caption);
        url.append_value(format!("https://images.example.org/demo/{seed}/{i}.png"));
        img.append_value(scene.png());
        quality.append_value(q);
        truth_caption.append_value(scene.caption(&mut Rng(seed ^ i as u64)));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("txt", DataType::Utf8, true),
        Field::new("img", DataType::Binary, true),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
        Field::new("truth_quality", DataType::Utf8, false),
        Field::new("truth_caption", DataType::Utf8, false),
    ]));
    let side: ArrayRef = Arc::new(Int32Array::from(vec![SIZE as i32; rows]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..rows as i64)),
        Arc::new(url.finish()),
        Arc::new(txt.finish()),
        Arc::new(img.finish()),
        Arc::clone(&side),
        side,
        Arc::new(quality.finish()),
        Arc::new(truth_caption.finish()),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn sql_path(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .ok_or_else(|| DataFusionError::Plan(format!("'{}' is not valid UTF-8", path.display())))?;
    Ok(s.replace('\'', "''"))
}

async fn show(ctx: &SessionContext, title: &str, sql: &str) -> Result<()> {
    println!("\n== {title}");
    let mut out = ResultWriter::stdout(Format::Table);
    let mut report = |line: &str| println!("{line}");
    run_script(ctx, sql, &mut out, &mut report)
        .await
        .map_err(|e| e.context(title.to_string()))?;
    out.finish()
}

/// Runs the demo.
pub async fn run(args: &DemoArgs, status: Status) -> Result<Outcome> {
    if args.rows == 0 {
        return Err(DataFusionError::Plan("--rows must be at least 1".into()));
    }
    let pool_dir = args.out.join("pool");
    let kept_dir = args.out.join("kept");
    for dir in [&pool_dir, &kept_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| {
                DataFusionError::Plan(format!("cannot replace '{}': {e}", dir.display()))
            })?;
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| {
        DataFusionError::Plan(format!("cannot create '{}': {e}", args.out.display()))
    })?;

    status.line(&format!(
        "generating {} rows (seed {}) into {}",
        args.rows,
        args.seed,
        pool_dir.display()
    ));
    let ctx = new_context()?;
    let batch = generate(args.rows, args.seed)?;
    ctx.register_table(
        "generated",
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
    )?;
    let copy = format!(
        "COPY (SELECT md5('hqflow-demo/{seed}/' || id) AS uid, url, txt, img, width, height, truth_quality, truth_caption
               FROM generated ORDER BY id)
         TO '{dir}/' STORED AS PARQUET",
        seed = args.seed,
        dir = sql_path(&pool_dir)?
    );
    ctx.sql(&copy).await?.collect().await?;

    let ctx = new_context()?;
    let schema = register_parquet_table(&ctx, "pool", &pool_dir.to_string_lossy()).await?;
    let contract = Contract::load("pool")?;
    let violations = contract.check(&schema);
    println!("== hqflow schema check --table pool={}", pool_dir.display());
    if violations.is_empty() {
        println!("conforms to the pool contract (schemas/pool.json)");
    } else {
        for v in &violations {
            println!("  {v}");
        }
        return Ok(Outcome::CheckFailed);
    }

    for (file, sql) in QUERIES {
        show(&ctx, file, sql).await?;
    }
    let copy_kept = format!(
        "COPY (SELECT * EXCEPT (filter_reason) FROM prefiltered WHERE filter_reason IS NULL) TO '{}/' STORED AS PARQUET",
        sql_path(&kept_dir)?
    );
    show(&ctx, "materialize the kept rows", &copy_kept).await?;
    register_parquet_table(&ctx, "kept", &kept_dir.to_string_lossy()).await?;
    show(
        &ctx,
        "read the kept table back",
        "SELECT count(*) AS kept_rows, count(DISTINCT uid) AS distinct_uids FROM kept",
    )
    .await?;
    println!(
        "\nnext: the text rules cannot see the image, so wrong_attr and mismatch captions pass them;\n\
         dfn_score(img, txt, 'MODEL') — a CLIP filter — is what catches those. Register a CLIP checkpoint\n\
         with `-m MODEL=DIR` (hqflow's own embedded model comes with the trainer).\n\
         Explore: hqflow sql -t pool={}",
        pool_dir.display()
    );
    Ok(Outcome::Success)
}
