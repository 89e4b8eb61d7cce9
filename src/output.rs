//! Writing query results: a terminal table, CSV, JSON, NDJSON or Parquet, to stdout or a file.
//!
//! Results are streamed batch by batch except for the terminal table, which needs column
//! widths and so holds at most [`TABLE_MAX_ROWS`] rows (the rest are counted, not shown).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

/// Rows a terminal table shows; larger results are summarized (use another format for all).
pub const TABLE_MAX_ROWS: usize = 1000;
/// Characters a terminal table cell shows before it is cut with `…`.
const TABLE_MAX_CELL: usize = 80;

/// A result format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table (the default on a terminal).
    Table,
    /// CSV with a header row; nested values as JSON text, binary as hex (the default otherwise).
    Csv,
    /// One JSON array of row objects per query; NULL is null, nested types are arrays/objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// One JSON object keyed by the first column (e.g. uid), each value an object of the other
    /// columns: the shape HQ-CLIP released its refined texts in.
    JsonKeyed,
    /// A Parquet file (one query only).
    Parquet,
}

/// A writer that remembers whether its reader went away (`hqflow sql … | head`), which the
/// CLI treats as a normal end, not an error.
struct PipeAware<W: Write> {
    inner: W,
    broken: Arc<AtomicBool>,
}

impl<W: Write> Write for PipeAware<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| self.note(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| self.note(e))
    }
}

impl<W: Write> PipeAware<W> {
    fn note(&self, e: &io::Error) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            self.broken.store(true, Ordering::Relaxed);
        }
    }
}

type Sink = Box<dyn Write + Send>;

/// Where results go: stdout, or a file written under a temporary name and renamed into
/// place when complete, so a failed query never leaves a half-written output behind.
enum Destination {
    Stdout,
    File { tmp: PathBuf, path: PathBuf },
}

/// Writes the results of one or more queries in one format to one destination.
pub struct ResultWriter {
    format: Format,
    sink: Option<Sink>,
    destination: Destination,
    broken_pipe: Arc<AtomicBool>,
    results: usize,
}

impl ResultWriter {
    /// Results to stdout.
    pub fn stdout(format: Format) -> Self {
        let broken = Arc::new(AtomicBool::new(false));
        let sink: Sink = Box::new(PipeAware {
            inner: BufWriter::new(io::stdout()),
            broken: Arc::clone(&broken),
        });
        ResultWriter {
            format,
            sink: Some(sink),
            destination: Destination::Stdout,
            broken_pipe: broken,
            results: 0,
        }
    }

    /// Results to `path`, which appears only once everything was written.
    pub fn file(format: Format, path: &Path) -> Result<Self> {
        let name = path.file_name().ok_or_else(|| {
            DataFusionError::Plan(format!("--output '{}' is not a file path", path.display()))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".hqflow-tmp");
        let tmp = path.with_file_name(tmp_name);
        let file = File::create(&tmp).map_err(|e| {
            DataFusionError::Plan(format!("cannot write --output '{}': {e}", path.display()))
        })?;
        Ok(ResultWriter {
            format,
            sink: Some(Box::new(BufWriter::new(file))),
            destination: Destination::File {
                tmp,
                path: path.to_path_buf(),
            },
            broken_pipe: Arc::new(AtomicBool::new(false)),
            results: 0,
        })
    }

    /// True once stdout's reader has gone away; the rest of the output is moot.
    pub fn broken_pipe(&self) -> bool {
        self.broken_pipe.load(Ordering::Relaxed)
    }

    fn sink(&mut self) -> Result<&mut Sink> {
        match self.sink.as_mut() {
            Some(s) => Ok(s),
            None => exec_err!("result writer already finished"),
        }
    }

    /// Writes one query's result; returns the number of rows.
    pub async fn write_stream(&mut self, stream: SendableRecordBatchStream) -> Result<u64> {
        self.results += 1;
        if self.format == Format::Parquet && self.results > 1 {
            return exec_err!(
                "--format parquet writes one query's result; this script has several queries"
            );
        }
        let rows = match self.format {
            Format::Table => self.write_table(stream).await?,
            Format::Csv => self.write_csv(stream).await?,
            Format::Json => {
                let rows = self
                    .write_json::<arrow::json::writer::JsonArray>(stream)
                    .await?;
                writeln!(self.sink()?)?;
                rows
            }
            Format::Ndjson => {
                self.write_json::<arrow::json::writer::LineDelimited>(stream)
                    .await?
            }
            Format::JsonKeyed => self.write_json_keyed(stream).await?,
            Format::Parquet => self.write_parquet(stream).await?,
        };
        self.sink()?.flush()?;
        Ok(rows)
    }

    async fn write_table(&mut self, mut stream: SendableRecordBatchStream) -> Result<u64> {
        let schema = stream.schema();
        let mut shown: Vec<RecordBatch> = Vec::new();
        let (mut total, mut kept) = (0u64, 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            total += batch.num_rows() as u64;
            if kept < TABLE_MAX_ROWS {
                let take = (TABLE_MAX_ROWS - kept).min(batch.num_rows());
                kept += take;
                shown.push(batch.slice(0, take));
            }
        }
        let text = render_table(&schema, &shown)?;
        let sink = self.sink()?;
        writeln!(sink, "{text}")?;
        if total as usize > kept {
            writeln!(
                sink,
                "({total} rows, first {kept} shown; --format csv, json, ndjson or parquet write all)"
            )?;
        } else {
            writeln!(sink, "({total} row{})", if total == 1 { "" } else { "s" })?;
        }
        Ok(total)
    }

    async fn write_csv(&mut self, mut stream: SendableRecordBatchStream) -> Result<u64> {
        let schema = csv_schema(&stream.schema());
        let sink = self.sink()?;
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(sink);
        let mut rows = 0u64;
        let mut wrote_any = false;
        while let Some(batch) = stream.next().await {
            let batch = csv_batch(&schema, &batch?)?;
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
            wrote_any = true;
        }
        if !wrote_any {
            writer.write(&RecordBatch::new_empty(schema))?;
        }
        Ok(rows)
    }

    async fn write_json<F: arrow::json::writer::JsonFormat>(
        &mut self,
        mut stream: SendableRecordBatchStream,
    ) -> Result<u64> {
        let sink = self.sink()?;
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, F>(sink);
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
        writer.finish()?;
        Ok(rows)
    }

    async fn write_json_keyed(&mut self, mut stream: SendableRecordBatchStream) -> Result<u64> {
        let schema = stream.schema();
        if schema.fields().len() < 2 {
            return exec_err!(
                "--format json-keyed needs a key column and at least one value column"
            );
        }
        let key_field = schema.field(0).clone();
        let sink = self.sink()?;
        write!(sink, "{{")?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let keys = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let keys = keys
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .ok_or_else(|| DataFusionError::Internal("key cast to Utf8".into()))?;
            let values = batch.project(&(1..batch.num_columns()).collect::<Vec<_>>())?;
            let mut lines = Vec::new();
            {
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut lines);
                writer.write(&values)?;
                writer.finish()?;
            }
            let text = String::from_utf8(lines)
                .map_err(|e| DataFusionError::Internal(format!("JSON writer: {e}")))?;
            for (row, line) in text.lines().enumerate() {
                if keys.is_null(row) {
                    return exec_err!(
                        "--format json-keyed: row {} has a NULL key ('{}')",
                        rows + 1,
                        key_field.name()
                    );
                }
                let key = serde_json::to_string(keys.value(row))
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let sink = self.sink()?;
                write!(sink, "{}\n{key}: {line}", if rows == 0 { "" } else { "," })?;
                rows += 1;
            }
        }
        writeln!(self.sink()?, "{}}}", if rows == 0 { "" } else { "\n" })?;
        Ok(rows)
    }

    async fn write_parquet(&mut self, mut stream: SendableRecordBatchStream) -> Result<u64> {
        let schema = stream.schema();
        let sink = self
            .sink
            .take()
            .ok_or_else(|| DataFusionError::Internal("result writer already finished".into()))?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(
                parquet::basic::ZstdLevel::default(),
            ))
            .set_max_row_group_bytes(Some(crate::shards::ROW_GROUP_BYTES))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(sink, schema, Some(props))?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
        self.sink = Some(writer.into_inner()?);
        Ok(rows)
    }

    /// Flushes and, for a file destination, moves the finished file into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(mut sink) = self.sink.take() {
            sink.flush()?;
        }
        if let Destination::File { tmp, path } = &self.destination {
            std::fs::rename(tmp, path).map_err(|e| {
                DataFusionError::Execution(format!(
                    "cannot move output into place at '{}': {e}",
                    path.display()
                ))
            })?;
        }
        self.destination = Destination::Stdout;
        Ok(())
    }
}

impl Drop for ResultWriter {
    /// An unfinished file output (the query failed) is removed, never left half-written.
    fn drop(&mut self) {
        if let Destination::File { tmp, .. } = &self.destination {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn is_binary(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

/// CSV cannot hold nested values: they become JSON text, in a Utf8 column of the same name.
fn csv_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.data_type().is_nested() {
                Arc::new(Field::new(f.name(), DataType::Utf8, true))
            } else {
                Arc::clone(f)
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn csv_batch(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            if field.data_type().is_nested() {
                json_cells(field, column)
            } else {
                Ok(Arc::clone(column))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Each value of `column` as JSON text (NULL stays NULL), via arrow's JSON encoder.
fn json_cells(field: &FieldRef, column: &ArrayRef) -> Result<ArrayRef> {
    let options = arrow::json::writer::EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = arrow::json::writer::make_encoder(field, column.as_ref(), &options)?;
    let mut out = StringBuilder::new();
    let mut buf = Vec::new();
    for i in 0..column.len() {
        if encoder.is_null(i) {
            out.append_null();
            continue;
        }
        buf.clear();
        encoder.encode(i, &mut buf);
        let text = std::str::from_utf8(&buf).map_err(|e| {
            ArrowError::InvalidArgumentError(format!("JSON encoder wrote invalid UTF-8: {e}"))
        })?;
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

fn truncate_cell(mut s: String) -> String {
    if s.chars().count() > TABLE_MAX_CELL {
        s = s.chars().take(TABLE_MAX_CELL - 1).collect::<String>() + "…";
    }
    s.replace('\n', "\\n")
}

/// Renders batches as an aligned table; binary cells show their size, long cells are cut.
pub fn render_table(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String> {
    let mut table = comfy_table::Table::new();
    table.load_preset("||--+-++|    ++++++");
    table.set_header(schema.fields().iter().map(|f| f.name().to_string()));
    let options = FormatOptions::default().with_null("NULL");
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, ArrowError>>()?;
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, fmt)| {
                    if is_binary(column.data_type()) && column.is_valid(row) {
                        format!("<{} bytes>", binary_len(column, row))
                    } else {
                        truncate_cell(fmt.value(row).to_string())
                    }
                });
            table.add_row(cells.collect::<Vec<_>>());
        }
    }
    Ok(table.to_string())
}

fn binary_len(column: &ArrayRef, row: usize) -> usize {
    use datafusion::arrow::array::AsArray;
    match column.data_type() {
        DataType::Binary => column.as_binary::<i32>().value(row).len(),
        DataType::LargeBinary => column.as_binary::<i64>().value(row).len(),
        DataType::BinaryView => column.as_binary_view().value(row).len(),
        DataType::FixedSizeBinary(n) => *n as usize,
        _ => 0,
    }
}
