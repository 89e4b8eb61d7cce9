//! A table provider that reads one unit of a Parquet listing table: the same schema and
//! format options as the table, but only the unit's rows. A unit's plan is the query's plan
//! with the table's scan pointed at this provider.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result, project_schema};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{
    Expr, LogicalPlan, TableProviderFilterPushDown, TableScan, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use super::locality::scan_key;

/// Rows of one unit of a Parquet table.
#[derive(Debug)]
pub struct UnitTable {
    schema: SchemaRef,
    format: Arc<dyn FileFormat>,
    store: ObjectStoreUrl,
    groups: Vec<FileGroup>,
}

impl UnitTable {
    /// The unit read as `groups` (see [`super::units::RowLayout::file_groups`]) of a table
    /// with `schema`, in `format`, from `store`.
    pub fn new(
        schema: SchemaRef,
        format: Arc<dyn FileFormat>,
        store: ObjectStoreUrl,
        groups: Vec<FileGroup>,
    ) -> Self {
        UnitTable {
            schema,
            format,
            store,
            groups,
        }
    }
}

#[async_trait]
impl TableProvider for UnitTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.groups.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        let source = self
            .format
            .file_source(TableSchema::from(Arc::clone(&self.schema)));
        let config = FileScanConfigBuilder::new(self.store.clone(), source)
            .with_file_groups(self.groups.clone())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        self.format.create_physical_plan(state, config).await
    }

    /// Filters are used for pruning only and applied again above the scan, as for the
    /// listing table this stands in for.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// `plan` with every scan of the table whose provider is `key` reading `unit` instead.
pub fn with_unit(plan: &LogicalPlan, key: usize, unit: Arc<UnitTable>) -> Result<LogicalPlan> {
    let source = provider_as_source(unit);
    plan.clone()
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) if scan_key(&scan) == Some(key) => {
                Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
                    source: Arc::clone(&source),
                    ..scan
                })))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
}
