//! Building the DataFusion session every hqflow entry point uses: the CLI, the sqllogictest
//! runner, the demo. One place, so that SQL behaves the same everywhere.

use std::sync::Arc;

use datafusion::common::config::{ConfigNonZeroUsize, MaxRowGroupBytes};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::object_stores::EnvObjectStoreRegistry;
use crate::shards::ROW_GROUP_BYTES;
use crate::tables::{TableSpec, register_parquet_table, split_assignment};

/// The upload buffer of each Parquet file a `COPY` writes (DataFusion's
/// `objectstore_writer_buffer_size`; its default is 10 MiB): a file's bytes stay in it until
/// it is full, then go out as multipart parts of this size. 5 MiB is the smallest part S3
/// accepts. A narrow output (a table of scores) fills the buffer only after hundreds of
/// thousands of rows, so the default held most of a million-row output in memory.
const UPLOAD_PART_BYTES: usize = 5 << 20;

/// The upload buffer of a `COPY` to a local directory. Local files take parts of any size
/// (S3's 5 MiB minimum does not apply), and a part is written out as soon as it fills, so a
/// smaller buffer only means more, smaller writes. See [`copy_state`].
const LOCAL_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// The largest dictionary a `COPY`'s Parquet writer builds for a column chunk before it
/// writes the rest of the chunk plainly (DataFusion's default: 1 MiB). A column of unique
/// values (uid, caption, image) fills any dictionary and then falls back, and each open
/// file held the full one with its hash table and a 2 MiB compression buffer: 7 MB of the
/// large blocks in use at a million-row COPY's worst moment, about 2 MB with this limit.
/// Columns worth a dictionary (labels, tags, model names) need far less than this.
const DICTIONARY_PAGE_BYTES: usize = 256 << 10;

/// How many bytes at the end of a Parquet file one read fetches to find its footer.
const FOOTER_READ_BYTES: usize = 64 << 10;

/// The most memory decoded Parquet footers (with their page indexes) are kept in between
/// reads: none (DataFusion's default: 50 MiB). A 10,000-row shard of 64 px images decodes to
/// about 95 KB, so the default grew the process with every file of a pool up to 500 files.
/// Without the cache a scan reads each footer again when it opens the file, one 64 KiB read
/// per file; with a 4 MiB cache the peak of a million-row COPY (101 files) held 3.5-4.6 MB
/// more than with none, and one pool-sized would hold the whole pool's footers. `-s
/// datafusion.runtime.metadata_cache_limit=50M` turns it back on for a session that queries
/// one small pool again and again on an object store.
const METADATA_CACHE_BYTES: usize = 0;

/// A `KEY=VALUE` pair for `-s` (a session setting) or `-m` (a model registration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The setting key or model name.
    pub key: String,
    /// The value, unquoted.
    pub value: String,
}

impl Assignment {
    /// Parses `KEY=VALUE`; `form` names the expected shape in the error.
    pub fn parse(s: &str, form: &str) -> std::result::Result<Self, String> {
        let (key, value) = split_assignment(s, form)?;
        Ok(Assignment {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

/// What a session starts with: settings, models and tables, applied in that order.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Settings, applied as SQL `SET KEY = 'VALUE'` would.
    pub settings: Vec<Assignment>,
    /// Models, registered as `SET hqflow.model.NAME = 'VALUE'`.
    pub models: Vec<Assignment>,
    /// Parquet tables to register.
    pub tables: Vec<TableSpec>,
}

/// A fresh session with hqflow's settings namespace, on-demand S3 stores and
/// `information_schema` (for `SHOW TABLES`, `SHOW ALL`, `DESCRIBE`).
pub fn new_context() -> Result<SessionContext> {
    let mut config =
        hqflow_udfs::with_hqflow_options(SessionConfig::new().with_information_schema(true));
    // DataFusion 55 pushes struct field reads (`r['long_pos']`) down through the projection
    // that defines `r`, substituting its expression: `lvlm_refine(img, txt)` would run once
    // per field read (five times in queries/refine.sql). Model calls must run once per row.
    config
        .options_mut()
        .optimizer
        .enable_leaf_expression_pushdown = false;
    // COPY's row groups bounded in bytes, not only in rows (see ROW_GROUP_BYTES). DataFusion
    // honours the byte bound only in its one-task-per-file writer; a COPY still writes
    // several files at once, each encoded by its own task. Each open file holds a row group,
    // its copy while it is flushed and an upload buffer (UPLOAD_PART_BYTES), so one file per
    // core, not DataFusion's fixed 4: enough to encode on every core, no more files than that
    // in memory (one file per process copies images 1.45x slower on 2 cores).
    let execution = &mut config.options_mut().execution;
    execution.objectstore_writer_buffer_size = UPLOAD_PART_BYTES;
    execution.minimum_parallel_output_files =
        ConfigNonZeroUsize::try_new(execution.target_partitions.max(1))?;
    execution.parquet.max_row_group_bytes = Some(MaxRowGroupBytes::try_new(ROW_GROUP_BYTES)?);
    execution.parquet.allow_single_file_parallelism = false;
    execution.parquet.dictionary_page_size_limit = DICTIONARY_PAGE_BYTES;
    // Table registration reads every file's footer, 32 files at a time, each with one read of
    // the file's last `metadata_size_hint` bytes (DataFusion's default: 512 KiB). Shards'
    // footers are tens of KiB, so that read 16 MiB at once for a 100-file pool, memory the
    // process then kept; a footer larger than the hint costs one more read.
    execution.parquet.metadata_size_hint = Some(FOOTER_READ_BYTES);
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(EnvObjectStoreRegistry::new()))
        .with_metadata_cache_limit(METADATA_CACHE_BYTES)
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    hqflow_udfs::register_all(&ctx)?;
    Ok(ctx)
}

/// The session state a `COPY ... TO output_url` runs with: the session's, with a 1 MiB
/// upload buffer per output file when the target is a local directory and the buffer is at
/// hqflow's default (a setting the user changed is kept). Each file a COPY writes fills its
/// buffer before anything goes out; with S3's part size the two files of a million-row COPY
/// of scores held up to 10 MiB that a local file never needs (that COPY's peak: 190 and
/// 189 MB with 5 MiB, 183 and 183 MB with 1 MiB, runs alternated).
pub fn copy_state(ctx: &SessionContext, output_url: &str) -> SessionState {
    let mut state = ctx.state();
    let local = ListingTableUrl::parse(output_url).is_ok_and(|url| url.scheme() == "file");
    let execution = &mut state.config_mut().options_mut().execution;
    if local && execution.objectstore_writer_buffer_size == UPLOAD_PART_BYTES {
        execution.objectstore_writer_buffer_size = LOCAL_WRITE_BUFFER_BYTES;
    }
    state
}

/// Setting keys are dotted identifiers; checking them keeps `SET` text well-formed.
fn check_setting_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(DataFusionError::Plan(format!(
            "'{key}' is not a setting key (expected e.g. datafusion.execution.batch_size)"
        )))
    }
}

/// Applies `SET key = 'value'` through SQL, so `-s` means exactly what SQL `SET` means.
pub async fn apply_setting(ctx: &SessionContext, key: &str, value: &str) -> Result<()> {
    check_setting_key(key)?;
    let quoted = value.replace('\'', "''");
    ctx.sql(&format!("SET {key} = '{quoted}'"))
        .await?
        .collect()
        .await?;
    Ok(())
}

/// A session with `options` applied; errors name the argument at fault.
pub async fn build_session(options: &SessionOptions) -> Result<SessionContext> {
    let ctx = new_context()?;
    for s in &options.settings {
        apply_setting(&ctx, &s.key, &s.value)
            .await
            .map_err(|e| e.context(format!("--set {}={}", s.key, s.value)))?;
    }
    for m in &options.models {
        let name_ok = hqflow_udfs::check_model_name(&m.key);
        let registered = async {
            name_ok?;
            apply_setting(&ctx, &format!("hqflow.model.{}", m.key), &m.value).await
        };
        registered
            .await
            .map_err(|e| e.context(format!("--model {}={}", m.key, m.value)))?;
    }
    let mut seen = std::collections::HashSet::new();
    for t in &options.tables {
        if !seen.insert(t.name.as_str()) {
            return Err(DataFusionError::Plan(format!(
                "--table '{}' is given twice",
                t.name
            )));
        }
        register_parquet_table(&ctx, &t.name, &t.location).await?;
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(ctx: &SessionContext, url: &str) -> usize {
        copy_state(ctx, url)
            .config()
            .options()
            .execution
            .objectstore_writer_buffer_size
    }

    #[tokio::test]
    async fn local_copies_take_a_small_upload_buffer_and_object_stores_keep_the_part_size() {
        let ctx = new_context().expect("session");
        assert_eq!(buffer(&ctx, "out/"), LOCAL_WRITE_BUFFER_BYTES);
        assert_eq!(
            buffer(&ctx, "file:///data/refined/"),
            LOCAL_WRITE_BUFFER_BYTES
        );
        assert_eq!(buffer(&ctx, "s3://bucket/out/"), UPLOAD_PART_BYTES);
        // The session itself is untouched.
        let session = ctx
            .state()
            .config()
            .options()
            .execution
            .objectstore_writer_buffer_size;
        assert_eq!(session, UPLOAD_PART_BYTES);
    }

    #[tokio::test]
    async fn a_buffer_the_user_set_is_kept_for_local_copies() {
        let ctx = new_context().expect("session");
        apply_setting(
            &ctx,
            "datafusion.execution.objectstore_writer_buffer_size",
            "8388608",
        )
        .await
        .expect("set");
        assert_eq!(buffer(&ctx, "out/"), 8 << 20);
    }
}
