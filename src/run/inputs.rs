//! What a run reads, listed and stamped for the manifest: every Parquet table of the session
//! with its files, and every registered model with its checkpoint files.

use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingTable;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use hqflow_udfs::ModelLocation;
use object_store::ObjectMeta;

use super::manifest::{FileStamp, ModelInput, TableInput};

/// A Parquet listing table of the session.
#[derive(Debug, Clone)]
pub struct ListedTable {
    /// Its name (qualified when not in the default schema).
    pub name: String,
    /// The provider (a [`ListingTable`]).
    pub provider: Arc<dyn TableProvider>,
    /// Its files, sorted by path: what a scan of it reads now.
    pub files: Vec<ObjectMeta>,
    /// The same for the manifest.
    pub input: TableInput,
}

impl ListedTable {
    /// The listing table.
    pub fn listing(&self) -> Option<&ListingTable> {
        listing_table(self.provider.as_ref())
    }

    /// Whether its rows can be split into units: Parquet, without partition columns.
    pub fn splittable(&self) -> bool {
        self.listing().is_some_and(|t| {
            let format: &dyn std::any::Any = t.options().format.as_ref();
            t.options().table_partition_cols.is_empty() && format.is::<ParquetFormat>()
        })
    }

    /// Total bytes of its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Identity of the provider, to match it with the plan's table scans.
    pub fn key(&self) -> usize {
        provider_key(&self.provider)
    }
}

/// Identity of a table provider.
pub fn provider_key(provider: &Arc<dyn TableProvider>) -> usize {
    Arc::as_ptr(provider) as *const () as usize
}

fn listing_table(provider: &dyn TableProvider) -> Option<&ListingTable> {
    let any: &dyn std::any::Any = provider;
    any.downcast_ref::<ListingTable>()
}

pub use crate::tables::display_path;

/// Every listing table in the session's catalogs, with its files listed now.
pub async fn session_tables(ctx: &SessionContext) -> Result<Vec<ListedTable>> {
    let state = ctx.state();
    let default = &state.config_options().catalog;
    let (default_catalog, default_schema) = (
        default.default_catalog.clone(),
        default.default_schema.clone(),
    );
    let mut out = Vec::new();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            if schema_name == "information_schema" {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for table_name in names {
                let Some(provider) = schema.table(&table_name).await? else {
                    continue;
                };
                let Some(listing) = listing_table(provider.as_ref()) else {
                    continue;
                };
                let name = if catalog_name == default_catalog && schema_name == default_schema {
                    table_name.clone()
                } else {
                    format!("{catalog_name}.{schema_name}.{table_name}")
                };
                let mut files: Vec<(String, ObjectMeta)> = Vec::new();
                let extension = listing.options().file_extension.clone();
                for url in listing.table_paths() {
                    let store = state.runtime_env().object_store(url)?;
                    let listed: Vec<ObjectMeta> = url
                        .list_all_files(&state, store.as_ref(), &extension)
                        .await?
                        .try_collect()
                        .await
                        .map_err(|e| {
                            DataFusionError::Plan(format!(
                                "table '{name}': cannot list '{url}': {e}"
                            ))
                        })?;
                    files.extend(listed.into_iter().map(|m| (display_path(url, &m), m)));
                }
                files.sort_by(|a, b| a.0.cmp(&b.0));
                files.dedup_by(|a, b| a.0 == b.0);
                let input = TableInput {
                    name: name.clone(),
                    locations: listing
                        .table_paths()
                        .iter()
                        .map(|u| u.to_string())
                        .collect(),
                    files: files
                        .iter()
                        .map(|(path, m)| FileStamp {
                            path: path.clone(),
                            size: m.size,
                            modified_ms: m.last_modified.timestamp_millis(),
                            e_tag: m.e_tag.clone(),
                        })
                        .collect(),
                };
                out.push(ListedTable {
                    name,
                    provider: Arc::clone(&provider),
                    files: files.into_iter().map(|(_, m)| m).collect(),
                    input,
                });
            }
        }
    }
    Ok(out)
}

/// Every model registered in the session (by `-m` or `SET hqflow.model.NAME`), with the
/// files of a checkpoint directory stamped by size and modification time.
pub fn session_models(ctx: &SessionContext) -> Result<Vec<ModelInput>> {
    let options = hqflow_udfs::session_options(ctx);
    let mut out = Vec::new();
    for (name, location) in &options.models {
        let (files, fingerprint) = match location {
            ModelLocation::Directory(dir) => {
                let mut files = Vec::new();
                stamp_dir(Path::new(dir), Path::new(""), &mut files)?;
                files.sort_by(|a, b| a.path.cmp(&b.path));
                (files, content_fingerprint(&options, Path::new(dir)))
            }
            ModelLocation::Endpoint(_) => (Vec::new(), None),
        };
        out.push(ModelInput {
            name: name.clone(),
            location: location.as_str().to_string(),
            files,
            fingerprint,
        });
    }
    Ok(out)
}

/// A checkpoint's content fingerprint, with the cache remembering file hashes when the
/// session has one (so a 600 MB checkpoint is hashed once, not on every resume).
fn content_fingerprint(options: &hqflow_udfs::HqflowOptions, dir: &Path) -> Option<String> {
    use hqflow_udfs::models::fingerprint::{CLIP_FILES, checkpoint_fingerprint};
    let memo = options
        .cache_dir
        .as_deref()
        .and_then(|c| hqflow_udfs::cache::open(Path::new(c)).ok());
    checkpoint_fingerprint(dir, CLIP_FILES, memo.as_deref()).ok()
}

fn stamp_dir(root: &Path, relative: &Path, out: &mut Vec<FileStamp>) -> Result<()> {
    let dir = root.join(relative);
    let bad = |e: std::io::Error| {
        DataFusionError::Plan(format!(
            "cannot read model directory '{}': {e}",
            dir.display()
        ))
    };
    for entry in std::fs::read_dir(&dir).map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let path = relative.join(entry.file_name());
        // Follows symlinks, as loading the checkpoint does.
        let meta = std::fs::metadata(entry.path()).map_err(bad)?;
        if meta.is_dir() {
            stamp_dir(root, &path, out)?;
        } else {
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            out.push(FileStamp {
                path: path.to_string_lossy().into_owned(),
                size: meta.len(),
                modified_ms,
                e_tag: None,
            });
        }
    }
    Ok(())
}
