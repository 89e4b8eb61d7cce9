//! The training table: a location (`hqflow sql -t` takes the same), optionally reshaped by a
//! query over it (the table is named `data`), checked for the columns the recipe needs, and
//! read as a stream of record batches, never whole.
//!
//! Reading is deterministic: one partition, files in order, so that the same seed gives the
//! same rows in the same order and a resumed run can replay its data position.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::prelude::{DataFrame, SessionContext};

use crate::session::{apply_setting, new_context};
use crate::tables::register_parquet_table;

/// The name the table has in `--query`.
pub const TABLE: &str = "data";

/// Names of the projected tag lists.
const TAGS_POS: &str = "tags_pos";
const TAGS_NEG: &str = "tags_neg";

/// Rows per record batch read: enough to amortise, few enough that image bytes in flight stay
/// small.
const READ_BATCH_ROWS: usize = 256;

/// Which text columns a run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Columns {
    /// `txt`.
    pub txt: bool,
    /// `long_pos`.
    pub long_pos: bool,
    /// `short_pos` (a list of tags).
    pub short_pos: bool,
    /// `long_neg`.
    pub long_neg: bool,
    /// `short_pos` and `short_neg` as tag lists, for the tag loss.
    pub tags: bool,
    /// `img`.
    pub img: bool,
}

/// One row as the trainer sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Encoded image bytes.
    pub img: Option<Vec<u8>>,
    /// `txt`, `long_pos`, `short_pos` joined by ", " (None: NULL, blank or not read).
    pub texts: [Option<String>; 3],
    /// `long_neg`.
    pub negative: Option<String>,
    /// The positive and the negative tags (empty when not read).
    pub tags: [Vec<String>; 2],
}

/// Opens a session with the table registered as `data`.
pub async fn open(location: &str) -> Result<SessionContext> {
    let ctx = new_context()?;
    // One partition keeps the row order fixed from run to run.
    apply_setting(&ctx, "datafusion.execution.target_partitions", "1").await?;
    apply_setting(
        &ctx,
        "datafusion.execution.batch_size",
        &READ_BATCH_ROWS.to_string(),
    )
    .await?;
    register_parquet_table(&ctx, TABLE, location).await?;
    Ok(ctx)
}

/// The table, or `query` over it.
pub async fn frame(ctx: &SessionContext, query: Option<&str>) -> Result<DataFrame> {
    match query {
        Some(q) => ctx
            .sql(q)
            .await
            .map_err(|e| e.context("--query".to_string())),
        None => ctx.table(TABLE).await,
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn is_text_list(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => {
            is_text(f.data_type())
        }
        _ => false,
    }
}

/// Checks that `schema` has every column `want` asks for, with a usable type; `what` names
/// the table in errors. `long_neg` and the tag lists are optional: `want.long_neg` and
/// `want.tags` are cleared when the table lacks them.
pub fn check_columns(schema: &Schema, want: &mut Columns, what: &str) -> Result<()> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    let mut check = |name: &str, needed: bool, ok: fn(&DataType) -> bool, kind: &str| {
        if !needed {
            return;
        }
        match schema.field_with_name(name) {
            Ok(f) if ok(f.data_type()) => {}
            Ok(f) => wrong.push(format!("'{name}' is {} (needs {kind})", f.data_type())),
            Err(_) => missing.push(name.to_string()),
        }
    };
    check("img", want.img, is_binary, "binary image bytes");
    check("txt", want.txt, is_text, "text");
    check("long_pos", want.long_pos, is_text, "text");
    check("short_pos", want.short_pos, is_text_list, "a list of text");
    if want.long_neg {
        match schema.field_with_name("long_neg") {
            Ok(f) if is_text(f.data_type()) => {}
            Ok(f) => wrong.push(format!("'long_neg' is {} (needs text)", f.data_type())),
            Err(_) => want.long_neg = false,
        }
    }
    if want.tags {
        for name in ["short_pos", "short_neg"] {
            match schema.field_with_name(name) {
                Ok(f) if is_text_list(f.data_type()) => {}
                Ok(f) => wrong.push(format!(
                    "'{name}' is {} (needs a list of text)",
                    f.data_type()
                )),
                Err(_) => want.tags = false,
            }
        }
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "{what} lacks column(s) {} (it has: {})",
            missing.join(", "),
            names.join(", ")
        ));
    }
    if !wrong.is_empty() {
        problems.push(format!("{what}: {}", wrong.join("; ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        plan_err!("{}", problems.join("; "))
    }
}

/// `frame` projected to the columns in `want`, cast to the types [`rows`] reads.
pub fn project(frame: DataFrame, want: Columns) -> Result<DataFrame> {
    use datafusion::prelude::{cast, col, lit};
    let text = |name: &str| cast(col(format!("\"{name}\"")), DataType::Utf8).alias(name);
    let mut exprs = Vec::new();
    if want.img {
        exprs.push(cast(col("\"img\""), DataType::Binary).alias("img"));
    }
    if want.txt {
        exprs.push(text("txt"));
    }
    if want.long_pos {
        exprs.push(text("long_pos"));
    }
    if want.short_pos {
        exprs.push(
            datafusion::functions_nested::expr_fn::array_to_string(col("\"short_pos\""), lit(", "))
                .alias("short_pos"),
        );
    }
    if want.long_neg {
        exprs.push(text("long_neg"));
    }
    if want.tags {
        let list = DataType::List(std::sync::Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, true),
        ));
        for (name, alias) in [("short_pos", TAGS_POS), ("short_neg", TAGS_NEG)] {
            exprs.push(cast(col(format!("\"{name}\"")), list.clone()).alias(alias));
        }
    }
    frame.select(exprs)
}

fn text_at(batch: &RecordBatch, name: &str, i: usize) -> Result<Option<String>> {
    let Some(array) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let strings = array.as_string_opt::<i32>().ok_or_else(|| {
        DataFusionError::Internal(format!("column '{name}' was not cast to Utf8"))
    })?;
    if strings.is_null(i) {
        return Ok(None);
    }
    let s = strings.value(i);
    Ok((!s.trim().is_empty()).then(|| s.to_string()))
}

/// The non-blank tags of a list cell (none for NULL or an absent column).
fn tags_at(batch: &RecordBatch, name: &str, i: usize) -> Result<Vec<String>> {
    let Some(array) = batch.column_by_name(name) else {
        return Ok(Vec::new());
    };
    let lists = array.as_list_opt::<i32>().ok_or_else(|| {
        DataFusionError::Internal(format!("column '{name}' was not cast to a list"))
    })?;
    if lists.is_null(i) {
        return Ok(Vec::new());
    }
    let values = lists.value(i);
    let strings = values
        .as_string_opt::<i32>()
        .ok_or_else(|| DataFusionError::Internal(format!("column '{name}' holds no Utf8 list")))?;
    Ok((0..strings.len())
        .filter(|&k| !strings.is_null(k))
        .map(|k| strings.value(k).trim().to_string())
        .filter(|t| !t.is_empty())
        .collect())
}

/// The rows of a batch projected by [`project`].
pub fn rows(batch: &RecordBatch) -> Result<Vec<Row>> {
    let img = match batch.column_by_name("img") {
        Some(a) => Some(a.as_binary_opt::<i32>().ok_or_else(|| {
            DataFusionError::Internal("column 'img' was not cast to Binary".into())
        })?),
        None => None,
    };
    (0..batch.num_rows())
        .map(|i| {
            Ok(Row {
                img: img.and_then(|a| (!a.is_null(i)).then(|| a.value(i).to_vec())),
                texts: [
                    text_at(batch, "txt", i)?,
                    text_at(batch, "long_pos", i)?,
                    text_at(batch, "short_pos", i)?,
                ],
                negative: text_at(batch, "long_neg", i)?,
                tags: [tags_at(batch, TAGS_POS, i)?, tags_at(batch, TAGS_NEG, i)?],
            })
        })
        .collect()
}
