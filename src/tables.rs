//! Registering Parquet tables from a location: a file, a directory, a glob, or `s3://…`.
//!
//! DataFusion's own listing gives terse errors ("No files found", "Corrupt footer") that do
//! not say which file is at fault. Registration here lists the files the table will read,
//! checks them, and on a failed schema inference looks at each file alone to name the bad
//! file or the column whose type the files disagree on.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result, plan_datafusion_err, plan_err};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SessionState;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use url::Url;

/// A `NAME=LOCATION` table argument (`hqflow sql -t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The SQL name of the table.
    pub name: String,
    /// A file, directory, glob or object-store URL.
    pub location: String,
}

impl FromStr for TableSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, location) = split_assignment(s, "NAME=LOCATION")?;
        check_identifier(name).map_err(|e| format!("'{s}': {e}"))?;
        Ok(TableSpec {
            name: name.to_string(),
            location: location.to_string(),
        })
    }
}

impl fmt::Display for TableSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.location)
    }
}

/// Splits `KEY=VALUE`, rejecting an empty key or value with a message that shows the form.
pub fn split_assignment<'a>(
    s: &'a str,
    form: &str,
) -> std::result::Result<(&'a str, &'a str), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim(), v.trim())),
        _ => Err(format!("'{s}' is not of the form {form}")),
    }
}

/// A table name usable unquoted in SQL: a letter or `_`, then letters, digits or `_`.
pub fn check_identifier(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid table name (letters, digits and '_', not starting with a digit)"
        ))
    }
}

/// What a location names, which decides how its files are found and how errors read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocationKind {
    File,
    Directory,
    Glob,
}

const GLOB_CHARS: [char; 3] = ['*', '?', '['];

/// A location resolved to the URL DataFusion lists, with the extension filter to use.
struct ResolvedLocation {
    url: ListingTableUrl,
    kind: LocationKind,
    /// Directories hold other files too (`_SUCCESS`, manifests): only `*.parquet` count there.
    extension: &'static str,
}

fn has_scheme(location: &str) -> bool {
    location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
    })
}

async fn resolve(table: &str, location: &str, state: &SessionState) -> Result<ResolvedLocation> {
    let location = location.strip_prefix("file://").unwrap_or(location);
    if has_scheme(location) {
        return resolve_remote(table, location, state).await;
    }
    if location.contains(GLOB_CHARS) {
        let url = ListingTableUrl::parse(location)
            .map_err(|e| plan_datafusion_err!("table '{table}': bad glob '{location}': {e}"))?;
        return Ok(ResolvedLocation {
            url,
            kind: LocationKind::Glob,
            extension: "",
        });
    }
    let meta = match std::fs::metadata(location) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return plan_err!("table '{table}': location '{location}' does not exist");
        }
        Err(e) => return plan_err!("table '{table}': cannot read location '{location}': {e}"),
    };
    let (path, kind, extension) = if meta.is_dir() {
        let dir = if location.ends_with('/') {
            location.to_string()
        } else {
            format!("{location}/")
        };
        (dir, LocationKind::Directory, ".parquet")
    } else {
        (location.to_string(), LocationKind::File, "")
    };
    let url = ListingTableUrl::parse(&path)
        .map_err(|e| plan_datafusion_err!("table '{table}': bad location '{location}': {e}"))?;
    Ok(ResolvedLocation {
        url,
        kind,
        extension,
    })
}

/// `s3://bucket/key.parquet`, `s3://bucket/prefix/` and `s3://bucket/prefix/*.parquet`.
/// A path without a trailing slash that is not an object is treated as a prefix.
async fn resolve_remote(
    table: &str,
    location: &str,
    state: &SessionState,
) -> Result<ResolvedLocation> {
    let bad = |e: &dyn fmt::Display| {
        plan_datafusion_err!("table '{table}': bad location '{location}': {e}")
    };
    let (scheme_and_bucket, path) = {
        let after_scheme = location.find("://").map(|i| i + 3).unwrap_or(0);
        match location[after_scheme..].find('/') {
            Some(i) => location.split_at(after_scheme + i),
            None => (location, ""),
        }
    };
    if let Some(glob_at) = path.find(GLOB_CHARS) {
        let base_end = path[..glob_at].rfind('/').map(|i| i + 1).unwrap_or(0);
        let (base, pattern) = path.split_at(base_end);
        let base = if base.is_empty() { "/" } else { base };
        let url = Url::parse(&format!("{scheme_and_bucket}{base}")).map_err(|e| bad(&e))?;
        let glob = glob::Pattern::new(pattern).map_err(|e| bad(&e))?;
        let url = ListingTableUrl::try_new(url, Some(glob)).map_err(|e| bad(&e))?;
        return Ok(ResolvedLocation {
            url,
            kind: LocationKind::Glob,
            extension: "",
        });
    }
    let url = ListingTableUrl::parse(location).map_err(|e| bad(&e))?;
    if url.is_collection() || path.is_empty() {
        let url = if path.is_empty() {
            ListingTableUrl::parse(format!("{location}/")).map_err(|e| bad(&e))?
        } else {
            url
        };
        return Ok(ResolvedLocation {
            url,
            kind: LocationKind::Directory,
            extension: ".parquet",
        });
    }
    let store = state.runtime_env().object_store(&url)?;
    match store.head(url.prefix()).await {
        Ok(_) => Ok(ResolvedLocation {
            url,
            kind: LocationKind::File,
            extension: "",
        }),
        Err(object_store::Error::NotFound { .. }) => {
            let url = ListingTableUrl::parse(format!("{location}/")).map_err(|e| bad(&e))?;
            Ok(ResolvedLocation {
                url,
                kind: LocationKind::Directory,
                extension: ".parquet",
            })
        }
        Err(e) => plan_err!("table '{table}': cannot read '{location}': {e}"),
    }
}

/// Renders an object path the way the user would write it: a local path keeps its leading
/// slash, an object-store path gets its `scheme://bucket/` back.
pub fn display_path(url: &ListingTableUrl, meta: &ObjectMeta) -> String {
    let u = url.get_url();
    if u.scheme() == "file" {
        format!("/{}", meta.location)
    } else {
        format!(
            "{}://{}/{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            meta.location
        )
    }
}

fn parquet_format(state: &SessionState) -> ParquetFormat {
    ParquetFormat::new().with_options(state.default_table_options().parquet)
}

/// Registers the Parquet data at `location` as table `name`, after checking that the location
/// exists, holds at least one file, and that its files are Parquet with compatible schemas.
pub async fn register_parquet_table(
    ctx: &SessionContext,
    name: &str,
    location: &str,
) -> Result<SchemaRef> {
    check_identifier(name).map_err(DataFusionError::Plan)?;
    let state = ctx.state();
    let resolved = resolve(name, location, &state).await?;
    let store = state.runtime_env().object_store(&resolved.url)?;
    let files: Vec<ObjectMeta> = resolved
        .url
        .list_all_files(&state, store.as_ref(), resolved.extension)
        .await
        .map_err(|e| listing_error(name, location, e))?
        .try_collect()
        .await
        .map_err(|e| listing_error(name, location, e))?;
    if files.is_empty() {
        return match resolved.kind {
            LocationKind::Glob => {
                let spans_dirs = resolved
                    .url
                    .get_glob()
                    .as_ref()
                    .is_some_and(|g| g.as_str().contains('/'));
                let hint = if spans_dirs
                    && state
                        .config_options()
                        .execution
                        .listing_table_ignore_subdirectory
                {
                    " (patterns across directories need \
                     -s datafusion.execution.listing_table_ignore_subdirectory=false)"
                } else {
                    ""
                };
                plan_err!("table '{name}': glob '{location}' matches no files{hint}")
            }
            LocationKind::Directory => {
                plan_err!("table '{name}': no Parquet files (*.parquet) under '{location}'")
            }
            LocationKind::File => plan_err!("table '{name}': location '{location}' does not exist"),
        };
    }
    if let Some(empty) = files.iter().find(|f| f.size == 0) {
        return plan_err!(
            "table '{name}': file '{}' is empty (0 bytes), not a Parquet file",
            display_path(&resolved.url, empty)
        );
    }

    check_footers(name, &resolved.url, &store, &files).await?;

    let format = Arc::new(parquet_format(&state));
    let options = ListingOptions::new(Arc::clone(&format) as Arc<dyn FileFormat>)
        .with_file_extension(resolved.extension);
    let schema = match format.infer_schema(&state, &store, &files).await {
        Ok(schema) => schema,
        Err(e) => {
            return Err(diagnose(name, &resolved.url, &state, &format, &store, &files, e).await);
        }
    };
    let config = ListingTableConfig::new(resolved.url)
        .with_listing_options(options)
        .with_schema(Arc::clone(&schema));
    let table = ListingTable::try_new(config)?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(schema)
}

/// Checks each file's last 8 bytes: the `PAR1` magic and a metadata length that fits in
/// the file. The parquet crate trusts that length (a corrupt one overflows an unchecked
/// subtraction, a panic in debug builds), so bad footers are caught here, with the file named.
async fn check_footers(
    table: &str,
    url: &ListingTableUrl,
    store: &Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
) -> Result<()> {
    // Owned arguments: borrowed ones trip rustc's higher-ranked lifetime inference once the
    // future must be `Send`.
    let checks: Vec<_> = files
        .iter()
        .map(|meta| {
            let what = format!("table '{table}': file '{}'", display_path(url, meta));
            check_footer(what, Arc::clone(store), meta.clone())
        })
        .collect();
    futures::stream::iter(checks)
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn check_footer(what: String, store: Arc<dyn ObjectStore>, meta: ObjectMeta) -> Result<()> {
    let bad = |why: String| plan_datafusion_err!("{what} is not a readable Parquet file: {why}");
    if meta.size < 12 {
        return Err(bad(format!("{} bytes is too small for Parquet", meta.size)));
    }
    let tail = store
        .get_range(&meta.location, meta.size - 8..meta.size)
        .await
        .map_err(|e| bad(format!("cannot read its footer: {e}")))?;
    match &tail[4..8] {
        b"PAR1" => {}
        b"PARE" => return Err(bad("it is encrypted (not supported)".into())),
        _ => return Err(bad("no PAR1 magic at its end".into())),
    }
    let metadata_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if metadata_len + 12 > meta.size {
        return Err(bad(format!(
            "corrupt footer: metadata length {metadata_len} does not fit in a file of {} bytes",
            meta.size
        )));
    }
    Ok(())
}

fn listing_error(table: &str, location: &str, e: DataFusionError) -> DataFusionError {
    plan_datafusion_err!("table '{table}': cannot list '{location}': {e}")
}

/// Explains a failed schema inference: the first file that is not readable Parquet, or the
/// first column whose type differs between files.
async fn diagnose(
    table: &str,
    url: &ListingTableUrl,
    state: &dyn Session,
    format: &ParquetFormat,
    store: &Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
    original: DataFusionError,
) -> DataFusionError {
    let mut first_seen: BTreeMap<String, (DataType, String)> = BTreeMap::new();
    for meta in files {
        let path = display_path(url, meta);
        let schema = match format
            .infer_schema(state, store, std::slice::from_ref(meta))
            .await
        {
            Ok(schema) => schema,
            Err(e) => {
                return plan_datafusion_err!(
                    "table '{table}': file '{path}' is not a readable Parquet file: {}",
                    e.strip_backtrace()
                );
            }
        };
        for field in schema.fields() {
            match first_seen.get(field.name()) {
                Some((ty, other)) if ty != field.data_type() => {
                    return plan_datafusion_err!(
                        "table '{table}': files disagree on column '{}': '{other}' has {ty}, '{path}' has {}",
                        field.name(),
                        field.data_type()
                    );
                }
                Some(_) => {}
                None => {
                    first_seen.insert(
                        field.name().clone(),
                        (field.data_type().clone(), path.clone()),
                    );
                }
            }
        }
    }
    plan_datafusion_err!(
        "table '{table}': cannot read schema: {}",
        original.strip_backtrace()
    )
}
