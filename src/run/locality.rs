//! Which table a query can be split by, and whether it can be split at all.
//!
//! Running the query once per slice of a table T and concatenating the results gives the
//! query's result exactly when the query is *row-local* in T: every result row comes from one
//! row of T (plus rows of other tables), independently of T's other rows. That holds for
//! projections, filters, `UNNEST`, aliases and joins in which T's side is the one whose rows
//! are kept (inner joins, T LEFT JOIN d, semi and anti joins with T on the outer side), with
//! T read once. It does not hold for aggregates, DISTINCT, ORDER BY, LIMIT, window functions,
//! UNION, joins that keep the other side's unmatched rows, or T read twice (a self-join, or T
//! in a subquery); such queries run as one unit.
//!
//! The check is on the plan as written (views and CTEs are already inlined there), before the
//! optimizer rewrites it; it is conservative: a node it does not know stops the split.

use datafusion::common::Result;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{JoinType, LogicalPlan, TableScan};

use super::inputs::{ListedTable, provider_key};

/// How a query's work is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Into row ranges of `tables[index]`.
    Rows {
        /// The split table's index in the listed tables.
        index: usize,
        /// Why this table, when the query reads several.
        note: Option<String>,
    },
    /// One unit, for this reason.
    Whole(String),
}

/// The provider behind a table scan, as a [`provider_key`].
pub fn scan_key(scan: &TableScan) -> Option<usize> {
    source_as_provider(&scan.source)
        .ok()
        .map(|p| provider_key(&p))
}

/// Keys of every table scan in `plan`, subqueries included or not.
fn scan_keys(plan: &LogicalPlan, with_subqueries: bool) -> Result<Vec<usize>> {
    let mut keys = Vec::new();
    let mut visit = |node: &LogicalPlan| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(key) = scan_key(scan)
        {
            keys.push(key);
        }
        Ok(TreeNodeRecursion::Continue)
    };
    if with_subqueries {
        plan.apply_with_subqueries(&mut visit)?;
    } else {
        plan.apply(&mut visit)?;
    }
    Ok(keys)
}

/// Decides how to cut `plan` (the last statement's plan, not optimized): by rows of one of
/// `tables`, or as one unit. `shard_by` names the table to split by.
pub fn choose(
    plan: &LogicalPlan,
    tables: &[ListedTable],
    shard_by: Option<&str>,
) -> Result<Choice> {
    let all = scan_keys(plan, true)?;
    let read: Vec<usize> = (0..tables.len())
        .filter(|&i| all.contains(&tables[i].key()))
        .collect();
    let (index, note) = match shard_by {
        Some(name) => {
            let Some(i) = tables.iter().position(|t| t.name == name) else {
                return datafusion::common::plan_err!(
                    "--shard-by '{name}': no Parquet table of that name (tables: {})",
                    names(tables, &(0..tables.len()).collect::<Vec<_>>())
                );
            };
            if !read.contains(&i) {
                return datafusion::common::plan_err!(
                    "--shard-by '{name}': the query does not read it (it reads: {})",
                    names(tables, &read)
                );
            }
            if !tables[i].splittable() {
                return datafusion::common::plan_err!(
                    "--shard-by '{name}': only Parquet tables without partition columns can be split"
                );
            }
            (i, None)
        }
        None => {
            let candidates: Vec<usize> = read
                .iter()
                .copied()
                .filter(|&i| tables[i].splittable())
                .collect();
            let Some(&largest) = candidates
                .iter()
                .max_by_key(|&&i| (tables[i].bytes(), std::cmp::Reverse(i)))
            else {
                return Ok(Choice::Whole(
                    "it reads no Parquet table to split by".into(),
                ));
            };
            let note = (candidates.len() > 1).then(|| {
                format!(
                    "the largest of {}; choose another with --shard-by",
                    names(tables, &candidates)
                )
            });
            (largest, note)
        }
    };
    let key = tables[index].key();
    let name = &tables[index].name;
    let reads = all.iter().filter(|&&k| k == key).count();
    if reads > 1 {
        return Ok(Choice::Whole(format!(
            "it reads '{name}' {reads} times (a self-join, or '{name}' in a subquery)"
        )));
    }
    let main = scan_keys(plan, false)?;
    if !main.contains(&key) {
        return Ok(Choice::Whole(format!(
            "it reads '{name}' only in a subquery"
        )));
    }
    Ok(match blocker(plan, key)? {
        Some(what) => Choice::Whole(format!("it has {what} over '{name}'")),
        None => Choice::Rows { index, note },
    })
}

fn names(tables: &[ListedTable], indices: &[usize]) -> String {
    if indices.is_empty() {
        return "none".into();
    }
    indices
        .iter()
        .map(|&i| tables[i].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn contains(plan: &LogicalPlan, key: usize) -> Result<bool> {
    Ok(scan_keys(plan, false)?.contains(&key))
}

/// The first step on the way from `plan`'s root to the scan of table `key` that is not
/// row-local, described for people; `None` when every step is.
fn blocker(plan: &LogicalPlan, key: usize) -> Result<Option<String>> {
    match plan {
        LogicalPlan::TableScan(scan) => Ok(match scan.fetch {
            Some(_) if scan_key(scan) == Some(key) => Some("a LIMIT".into()),
            _ => None,
        }),
        LogicalPlan::Projection(p) => blocker(&p.input, key),
        LogicalPlan::Filter(f) => blocker(&f.input, key),
        LogicalPlan::SubqueryAlias(a) => blocker(&a.input, key),
        LogicalPlan::Unnest(u) => blocker(&u.input, key),
        LogicalPlan::Join(join) => {
            let on_left = contains(&join.left, key)?;
            let keeps_only_its_rows = match join.join_type {
                JoinType::Inner => true,
                JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                    on_left
                }
                JoinType::Right
                | JoinType::RightSemi
                | JoinType::RightAnti
                | JoinType::RightMark => !on_left,
                JoinType::Full => false,
            };
            if !keeps_only_its_rows {
                return Ok(Some(format!(
                    "a {} join that keeps rows of the other side",
                    join.join_type
                )));
            }
            blocker(if on_left { &join.left } else { &join.right }, key)
        }
        LogicalPlan::Aggregate(_) => Ok(Some(
            "an aggregate (GROUP BY or an aggregate function)".into(),
        )),
        LogicalPlan::Distinct(_) => Ok(Some("DISTINCT".into())),
        LogicalPlan::Sort(_) => Ok(Some("ORDER BY".into())),
        LogicalPlan::Limit(_) => Ok(Some("LIMIT or OFFSET".into())),
        LogicalPlan::Window(_) => Ok(Some("a window function".into())),
        LogicalPlan::Union(_) => Ok(Some("UNION".into())),
        LogicalPlan::RecursiveQuery(_) => Ok(Some("a recursive query".into())),
        other => {
            let text = other.display().to_string();
            let step = text.split(':').next().unwrap_or("an unknown").trim();
            Ok(Some(format!("a {step} step")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::inputs::session_tables;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    /// A session with Parquet tables `t` (big) and `d` (small), and the listed tables.
    async fn session() -> (SessionContext, Vec<ListedTable>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ctx = SessionContext::new();
        for (name, rows) in [("t", 100), ("d", 3)] {
            let path = dir.path().join(format!("{name}.parquet"));
            ctx.sql(&format!(
                "COPY (SELECT value AS k, value % 7 AS g FROM generate_series(1, {rows})) \
                 TO '{}' STORED AS PARQUET",
                path.display()
            ))
            .await
            .expect("copy plans")
            .collect()
            .await
            .expect("copy runs");
            ctx.register_parquet(
                name,
                path.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await
            .expect("registered");
        }
        ctx.sql("CREATE VIEW v AS SELECT k FROM t WHERE g > 1")
            .await
            .expect("view");
        let tables = session_tables(&ctx).await.expect("listed");
        (ctx, tables, dir)
    }

    async fn choice(ctx: &SessionContext, tables: &[ListedTable], sql: &str) -> Choice {
        let plan = ctx.state().create_logical_plan(sql).await.expect("plans");
        choose(&plan, tables, None).expect("chooses")
    }

    fn name(tables: &[ListedTable], c: &Choice) -> String {
        match c {
            Choice::Rows { index, .. } => format!("rows of {}", tables[*index].name),
            Choice::Whole(why) => format!("whole: {why}"),
        }
    }

    #[tokio::test]
    async fn row_local_queries_split_by_the_largest_table() {
        let (ctx, tables, _dir) = session().await;
        for sql in [
            "SELECT k, k * 2 FROM t WHERE g = 3",
            "SELECT k FROM v",
            "WITH w AS (SELECT k FROM t) SELECT k + 1 FROM w WHERE k > 5",
            "SELECT t.k, d.g FROM t JOIN d ON t.g = d.g",
            "SELECT t.k, d.g FROM t LEFT JOIN d ON t.g = d.g",
            "SELECT t.k FROM d RIGHT JOIN t ON t.g = d.g",
            "SELECT k FROM t WHERE g IN (SELECT g FROM d)",
            "SELECT k FROM t WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.k = t.k)",
            "SELECT k, unnest([1, 2]) FROM t",
        ] {
            assert_eq!(
                name(&tables, &choice(&ctx, &tables, sql).await),
                "rows of t",
                "{sql}"
            );
        }
    }

    #[tokio::test]
    async fn other_queries_run_whole_and_say_why() {
        let (ctx, tables, _dir) = session().await;
        for (sql, why) in [
            ("SELECT g, count(*) FROM t GROUP BY g", "an aggregate"),
            ("SELECT DISTINCT g FROM t", "over 't'"),
            ("SELECT k FROM t ORDER BY k", "ORDER BY"),
            ("SELECT k FROM t LIMIT 5", "LIMIT"),
            (
                "SELECT k, row_number() OVER (ORDER BY k) FROM t",
                "a window function",
            ),
            ("SELECT k FROM t UNION ALL SELECT k FROM d", "UNION"),
            (
                "SELECT a.k FROM t a JOIN t b ON a.k = b.k",
                "reads 't' 2 times",
            ),
            (
                "SELECT k FROM t WHERE k > (SELECT avg(k) FROM t)",
                "reads 't' 2 times",
            ),
            (
                "SELECT t.k FROM t RIGHT JOIN d ON t.g = d.g",
                "a Right join",
            ),
            ("SELECT t.k FROM t FULL JOIN d ON t.g = d.g", "a Full join"),
            (
                "SELECT k FROM d WHERE g IN (SELECT g FROM t)",
                "only in a subquery",
            ),
            ("SELECT 1 AS x", "no Parquet table"),
        ] {
            let c = name(&tables, &choice(&ctx, &tables, sql).await);
            assert!(c.starts_with("whole: ") && c.contains(why), "{sql}: {c}");
        }
    }

    #[tokio::test]
    async fn shard_by_picks_or_refuses() {
        let (ctx, tables, _dir) = session().await;
        let sql = "SELECT t.k, d.g FROM t JOIN d ON t.g = d.g";
        let plan = ctx.state().create_logical_plan(sql).await.expect("plans");
        let auto = choose(&plan, &tables, None).expect("chooses");
        assert!(matches!(&auto, Choice::Rows { note: Some(n), .. } if n.contains("largest of")));
        let by_d = choose(&plan, &tables, Some("d")).expect("chooses");
        assert_eq!(name(&tables, &by_d), "rows of d");
        let e = choose(&plan, &tables, Some("nope")).expect_err("refused");
        assert!(e.to_string().contains("--shard-by 'nope'"), "{e}");
        let only_t = ctx
            .state()
            .create_logical_plan("SELECT k FROM t")
            .await
            .expect("plans");
        let e = choose(&only_t, &tables, Some("d")).expect_err("refused");
        assert!(e.to_string().contains("does not read it"), "{e}");
    }
}
