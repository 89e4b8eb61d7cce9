//! Cutting a Parquet table into units: unit `u` is rows `[u·N, (u+1)·N)` of the table's files
//! taken in path order, N = `--shard-rows`. The cut depends only on the files' row counts
//! (read from their footers), so a rerun over the same files makes the same units.
//!
//! Units are row ranges rather than whole row groups so that their size does not depend on how
//! the input was written (pyarrow writes row groups of up to a million rows). A range maps to
//! one [`PartitionedFile`] per file it touches, with a [`ParquetRowSelection`] when it covers
//! only part of the file.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::FileGroup;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};

use super::inputs::ListedTable;

/// Rows of the split table, file by file.
#[derive(Debug, Clone)]
pub struct RowLayout {
    files: Vec<ObjectMeta>,
    /// `starts[i]` is the first row of file i; `starts[files.len()]` the total.
    starts: Vec<u64>,
}

/// Rows a partition of a unit gets at least (more partitions than this would only add
/// per-partition overhead).
const MIN_PARTITION_ROWS: u64 = 128;

impl RowLayout {
    /// Reads the row count of each of `table`'s files from its footer.
    pub async fn read(ctx: &SessionContext, table: &ListedTable) -> Result<Self> {
        let listing = table.listing().ok_or_else(|| {
            DataFusionError::Internal(format!("'{}' is not a listing table", table.name))
        })?;
        let url = listing.table_paths().first().ok_or_else(|| {
            DataFusionError::Plan(format!("table '{}' has no location", table.name))
        })?;
        let runtime = ctx.state().runtime_env().clone();
        let store = runtime.object_store(url)?;
        // Through the session's metadata cache, so the unit scans find the footers there.
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let counts: Vec<u64> = futures::stream::iter(table.files.clone())
            .map(|meta| {
                row_count(
                    Arc::clone(&store),
                    Arc::clone(&cache),
                    meta,
                    table.name.clone(),
                )
            })
            .buffered(16)
            .try_collect()
            .await?;
        Ok(Self::from_counts(table.files.clone(), &counts))
    }

    /// A layout from known row counts.
    pub fn from_counts(files: Vec<ObjectMeta>, counts: &[u64]) -> Self {
        let mut starts = Vec::with_capacity(counts.len() + 1);
        let mut total = 0;
        starts.push(0);
        for c in counts {
            total += c;
            starts.push(total);
        }
        RowLayout { files, starts }
    }

    /// Total rows.
    pub fn rows(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Units of `unit_rows` rows (the last may be shorter; none for an empty table).
    pub fn units(&self, unit_rows: u64) -> u64 {
        self.rows().div_ceil(unit_rows.max(1))
    }

    /// The rows of unit `unit`.
    pub fn unit_range(&self, unit: u64, unit_rows: u64) -> (u64, u64) {
        let start = unit.saturating_mul(unit_rows).min(self.rows());
        (start, start.saturating_add(unit_rows).min(self.rows()))
    }

    /// Rows `[start, end)` as file groups for a scan: up to `partitions` groups of
    /// contiguous rows each.
    pub fn file_groups(&self, start: u64, end: u64, partitions: usize) -> Vec<FileGroup> {
        let rows = end.saturating_sub(start);
        if rows == 0 {
            return Vec::new();
        }
        let parts = (partitions.max(1) as u64).min(rows.div_ceil(MIN_PARTITION_ROWS));
        (0..parts)
            .map(|p| {
                let a = start + rows * p / parts;
                let b = start + rows * (p + 1) / parts;
                FileGroup::new(self.pieces(a, b))
            })
            .filter(|g| !g.is_empty())
            .collect()
    }

    /// Rows `[start, end)` as one [`PartitionedFile`] per file they touch.
    fn pieces(&self, start: u64, end: u64) -> Vec<PartitionedFile> {
        let mut out = Vec::new();
        for (i, meta) in self.files.iter().enumerate() {
            let (file_start, file_end) = (self.starts[i], self.starts[i + 1]);
            let (a, b) = (start.max(file_start), end.min(file_end));
            if a >= b {
                continue;
            }
            let file = PartitionedFile::new_from_meta(meta.clone());
            let file_rows = file_end - file_start;
            let (skip, take) = (a - file_start, b - a);
            if take == file_rows {
                out.push(file);
                continue;
            }
            let mut selectors = Vec::with_capacity(3);
            if skip > 0 {
                selectors.push(RowSelector::skip(skip as usize));
            }
            selectors.push(RowSelector::select(take as usize));
            let after = file_rows - skip - take;
            if after > 0 {
                selectors.push(RowSelector::skip(after as usize));
            }
            out.push(file.with_extension(ParquetRowSelection::new(RowSelection::from(selectors))));
        }
        out
    }
}

async fn row_count(
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileMetadataCache>,
    meta: ObjectMeta,
    table: String,
) -> Result<u64> {
    let metadata = DFParquetMetadata::new(store.as_ref(), &meta)
        .with_file_metadata_cache(Some(cache))
        .fetch_metadata()
        .await
        .map_err(|e| {
            DataFusionError::Plan(format!(
                "table '{table}': cannot read the footer of '{}': {}",
                meta.location,
                e.strip_backtrace()
            ))
        })?;
    Ok(metadata
        .row_groups()
        .iter()
        .map(|rg| u64::try_from(rg.num_rows()).unwrap_or(0))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(name),
            last_modified: Default::default(),
            size: 1000,
            e_tag: None,
            version: None,
        }
    }

    /// (file, selected rows as (skip, take)) of each piece, group by group.
    fn describe(groups: &[FileGroup]) -> Vec<Vec<(String, Option<String>)>> {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|f| {
                        (
                            f.object_meta.location.to_string(),
                            f.extension::<ParquetRowSelection>()
                                .map(|s| format!("{:?}", s.selection())),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn units_cover_every_row_once() {
        let layout = RowLayout::from_counts(vec![meta("a"), meta("b"), meta("c")], &[250, 0, 130]);
        assert_eq!(layout.rows(), 380);
        assert_eq!(layout.units(100), 4);
        assert_eq!(layout.unit_range(3, 100), (300, 380));
        assert_eq!(layout.unit_range(9, 100), (380, 380));
        let mut seen = vec![0u32; 380];
        for unit in 0..layout.units(100) {
            let (a, b) = layout.unit_range(unit, 100);
            for p in [1, 2, 7] {
                let groups = layout.file_groups(a, b, p);
                assert!(groups.len() <= p);
                for g in &groups {
                    for f in g.iter() {
                        let file_start = match f.object_meta.location.as_ref() {
                            "a" => 0,
                            "c" => 250,
                            other => panic!("piece of {other}"),
                        };
                        let selected: Vec<u64> = match f.extension::<ParquetRowSelection>() {
                            None => (0..if file_start == 0 { 250 } else { 130 }).collect(),
                            Some(s) => {
                                let mut rows = Vec::new();
                                let mut at = 0u64;
                                for sel in s.selection().iter() {
                                    if !sel.skip {
                                        rows.extend(at..at + sel.row_count as u64);
                                    }
                                    at += sel.row_count as u64;
                                }
                                assert_eq!(at, if file_start == 0 { 250 } else { 130 });
                                rows
                            }
                        };
                        if p == 2 {
                            for r in selected {
                                seen[(file_start + r) as usize] += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    }

    #[test]
    fn a_range_inside_one_file_is_a_selection() {
        let layout = RowLayout::from_counts(vec![meta("a"), meta("b")], &[1000, 1000]);
        let groups = layout.file_groups(900, 1100, 1);
        let d = describe(&groups);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].len(), 2);
        assert!(
            d[0][0]
                .1
                .as_deref()
                .is_some_and(|s| s.contains("skip: true"))
        );
        let whole = layout.file_groups(1000, 2000, 1);
        assert_eq!(describe(&whole), vec![vec![("b".to_string(), None)]]);
        // Small ranges are not cut into tiny partitions.
        assert_eq!(layout.file_groups(0, 200, 8).len(), 2);
        assert!(layout.file_groups(5, 5, 8).is_empty());
    }
}
