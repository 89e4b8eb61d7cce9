//! Generated tables: rows as cells, turned into Arrow record batches by the schema, written
//! as shards by [`super::writer`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, ListBuilder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};

use super::writer::generate;
use crate::shards::ShardWriter;

/// One value of a generated row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A Utf8 value (NULL when `None`).
    Text(Option<String>),
    /// A Binary value.
    Bytes(Vec<u8>),
    /// An Int32 value.
    Int(i32),
    /// A List<Utf8> value.
    Tags(Vec<String>),
}

/// A text cell.
pub fn text(s: impl Into<String>) -> Cell {
    Cell::Text(Some(s.into()))
}

/// A Utf8 field.
pub fn text_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// A List<Utf8> field.
pub fn tags_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        false,
    )
}

enum Column {
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Int(Int32Builder),
    Tags(ListBuilder<StringBuilder>),
}

impl Column {
    fn for_type(ty: &DataType) -> Result<Column> {
        Ok(match ty {
            DataType::Utf8 => Column::Text(StringBuilder::new()),
            DataType::Binary => Column::Bytes(BinaryBuilder::new()),
            DataType::Int32 => Column::Int(Int32Builder::new()),
            DataType::List(_) => Column::Tags(ListBuilder::new(StringBuilder::new())),
            other => {
                return Err(DataFusionError::Internal(format!(
                    "world tables have no {other} columns"
                )));
            }
        })
    }

    fn push(&mut self, cell: Cell) -> Result<()> {
        match (self, cell) {
            (Column::Text(b), Cell::Text(v)) => b.append_option(v),
            (Column::Bytes(b), Cell::Bytes(v)) => b.append_value(v),
            (Column::Int(b), Cell::Int(v)) => b.append_value(v),
            (Column::Tags(b), Cell::Tags(v)) => {
                for tag in v {
                    b.values().append_value(tag);
                }
                b.append(true);
            }
            (_, cell) => {
                return Err(DataFusionError::Internal(format!(
                    "a world row has {cell:?} where its schema says otherwise"
                )));
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Text(mut b) => Arc::new(b.finish()),
            Column::Bytes(mut b) => Arc::new(b.finish()),
            Column::Int(mut b) => Arc::new(b.finish()),
            Column::Tags(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Rows of cells, in schema order, as one record batch.
pub fn to_batch(schema: &SchemaRef, rows: Vec<Vec<Cell>>) -> Result<RecordBatch> {
    let mut columns = schema
        .fields()
        .iter()
        .map(|f| Column::for_type(f.data_type()))
        .collect::<Result<Vec<_>>>()?;
    for row in rows {
        if row.len() != columns.len() {
            return Err(DataFusionError::Internal(format!(
                "a world row has {} cells for {} columns",
                row.len(),
                columns.len()
            )));
        }
        for (column, cell) in columns.iter_mut().zip(row) {
            column.push(cell)?;
        }
    }
    let arrays = columns.into_iter().map(Column::finish).collect();
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

/// What writing a table produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// Rows written.
    pub rows: usize,
    /// The shards, in order.
    pub shards: Vec<PathBuf>,
}

/// Generates `rows` rows with `make` (row index → cells) on `threads` threads and writes
/// them to `dir` as shards of `shard_rows`.
pub fn write_table<M>(
    dir: &Path,
    schema: Schema,
    rows: u64,
    threads: usize,
    shard_rows: usize,
    make: M,
) -> Result<Written>
where
    M: Fn(u64) -> Result<Vec<Cell>> + Sync,
{
    let schema: SchemaRef = Arc::new(schema);
    let mut writer = ShardWriter::new(dir, Arc::clone(&schema), shard_rows, "hqflow world")?;
    generate(rows, threads, make, |chunk| {
        writer.write(&to_batch(&schema, chunk)?)
    })?;
    let rows = writer.rows();
    let shards = writer.finish()?;
    Ok(Written { rows, shards })
}
