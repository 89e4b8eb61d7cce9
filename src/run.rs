//! `hqflow run FILE.sql --out DIR`: materializes a query's result as Parquet shards, resumably.
//!
//! The work is cut into units that a rerun cuts the same way: when the query is row-local in
//! a Parquet table ([`locality`]), unit `u` is the query over rows `[u·N, (u+1)·N)` of that
//! table ([`units`], [`unit_table`]); otherwise the whole query is one unit. Each unit's
//! result is written as shards under temporary names and renamed into place when the unit is
//! complete ([`unit_writer`]); then `_manifest.json` records it ([`manifest`], [`out_dir`]).
//! A rerun of the same command keeps the finished units, clears whatever a killed run left
//! half-done, and does the rest; `_SUCCESS` marks the end.

pub mod inputs;
pub mod locality;
pub mod manifest;
pub mod out_dir;
pub mod unit_table;
pub mod unit_writer;
pub mod units;

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::datasource::file_format::FileFormat;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;

use crate::cli::{Outcome, SessionArgs, Status, report_row_errors};
use crate::output::{Format, ResultWriter};
use crate::script::{parse_statements, run_statement, short, statement_context};
use crate::session::build_session;
use inputs::{ListedTable, session_models, session_tables};
use locality::Choice;
use manifest::{FORMAT, FinishedUnit, Manifest, Setting, Split, UnitRowErrors};
use out_dir::{Kind, OutDir, SUCCESS};
use unit_table::{UnitTable, with_unit};
use unit_writer::UnitWriter;
use units::RowLayout;

/// `hqflow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// SQL statements; the last must be a query (SELECT, WITH or VALUES), whose result is
    /// written. Earlier statements (SET, CREATE VIEW, …) run first, as in `hqflow sql`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The output directory: shards `part-*.parquet`, `_manifest.json`, and `_SUCCESS` at
    /// the end. Rerunning the same command resumes an unfinished run.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Tables, models and settings.
    #[command(flatten)]
    pub session: SessionArgs,

    /// Rows of the split table per unit of work, and result rows per shard at most.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub shard_rows: u64,

    /// The table to split the work by [default: the largest Parquet table the query reads].
    #[arg(long, value_name = "TABLE")]
    pub shard_by: Option<String>,

    /// Discard an earlier run's files in DIR (only files hqflow run writes) and start over.
    #[arg(long)]
    pub restart: bool,
}

/// How each unit's plan is made.
enum Target {
    /// The query over a row range of a table.
    Rows {
        key: usize,
        name: String,
        layout: RowLayout,
        schema: SchemaRef,
        format: Arc<dyn FileFormat>,
        store: ObjectStoreUrl,
    },
    /// The query as it is.
    Whole,
}

/// Runs `hqflow run`.
pub async fn run(
    args: &RunArgs,
    cache_dir: Option<&std::path::Path>,
    status: Status,
) -> Result<Outcome> {
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| DataFusionError::Plan(format!("cannot read FILE '{file}': {e}")))?;
    // Refuses a directory with files of its own before any work.
    OutDir::new(&args.out)?.entries()?;

    let ctx = build_session(&args.session.options(cache_dir)).await?;
    let mut statements = parse_statements(&ctx, &text).map_err(|e| e.context(file.clone()))?;
    let texts: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    let Some(last) = statements.pop() else {
        return plan_err!("'{file}' holds no SQL statement");
    };
    if !is_query(&last) {
        return plan_err!(
            "'{file}': the last statement (statement {}: {}) is not a query; hqflow run writes \
             the result of a final SELECT, WITH or VALUES",
            texts.len(),
            short(&texts[texts.len() - 1])
        );
    }
    run_earlier_statements(&ctx, statements, &texts, &file, status).await?;
    let plan = ctx.state().statement_to_plan(last).await.map_err(|e| {
        statement_context(e, texts.len() - 1, &texts[texts.len() - 1]).context(file.clone())
    })?;

    let tables = session_tables(&ctx).await?;
    let dir = OutDir::new(&args.out)?;
    refuse_output_among_inputs(&dir, &tables)?;
    let choice = locality::choose(&plan, &tables, args.shard_by.as_deref())?;
    let target = target(&ctx, &tables, &choice).await?;
    let split = match (&target, &choice) {
        (Target::Rows { name, layout, .. }, _) => Split {
            table: Some(name.clone()),
            whole_because: None,
            shard_rows: args.shard_rows,
            input_rows: layout.rows(),
            units: layout.units(args.shard_rows).max(1),
        },
        (Target::Whole, Choice::Whole(why)) => Split {
            table: None,
            whole_because: Some(why.clone()),
            shard_rows: args.shard_rows,
            input_rows: 0,
            units: 1,
        },
        (Target::Whole, _) => Split {
            table: None,
            whole_because: None,
            shard_rows: args.shard_rows,
            input_rows: 0,
            units: 1,
        },
    };
    let job = Manifest {
        format: FORMAT,
        hqflow_version: env!("CARGO_PKG_VERSION").to_string(),
        query: text.clone(),
        statements: texts,
        settings: settings(&args.session),
        tables: tables.iter().map(|t| t.input.clone()).collect(),
        models: session_models(&ctx)?,
        split,
        finished: Vec::new(),
    };

    let dir = OutDir::create(&args.out)?;
    let _lock = dir.lock()?;
    let mut manifest = match reconcile(&dir, job, args.restart, status)? {
        Start::Complete(m) => {
            status.line(&format!(
                "run: '{}' is already complete ({} rows in {}); nothing to do",
                dir.path().display(),
                m.rows(),
                shards_text(&m)
            ));
            return Ok(Outcome::Success);
        }
        Start::Resume(m) => m,
    };
    dir.write_manifest(&manifest)?;
    describe_plan(&manifest, &choice, status);

    let mut progress = Progress::new(status);
    let done: HashSet<u64> = manifest.finished.iter().map(|u| u.unit).collect();
    let todo: Vec<u64> = (0..manifest.split.units)
        .filter(|u| !done.contains(u))
        .collect();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let resumed = !manifest.finished.is_empty();
    for unit in todo {
        let errors_before = error_counts(&ctx);
        let last_of_empty_result = manifest.finished.len() as u64 + 1 == manifest.split.units
            && shard_count(&manifest) == 0;
        let work = run_unit(
            &ctx,
            &plan,
            &target,
            unit,
            &dir,
            args.shard_rows,
            last_of_empty_result,
        );
        let finished = tokio::select! {
            finished = work => match finished {
                Ok(finished) => finished,
                Err(e) => {
                    report_row_errors(&ctx, status);
                    return Err(e.context(unit_text(&target, unit, args.shard_rows)));
                }
            },
            _ = &mut ctrl_c => {
                report_row_errors(&ctx, status);
                return Err(DataFusionError::Execution(format!(
                    "interrupted: {} of {} units are complete in '{}'; run the same command \
                     again to resume",
                    manifest.finished.len(),
                    manifest.split.units,
                    dir.path().display()
                )));
            }
        };
        let mut finished = finished;
        finished.row_errors = errors_since(&errors_before, &error_counts(&ctx));
        progress.unit_done(&finished);
        manifest.finished.push(finished);
        dir.write_manifest(&manifest)?;
        progress.maybe_print(&manifest, false);
    }
    dir.write_atomic(SUCCESS, b"")?;
    progress.maybe_print(&manifest, true);
    status.line(&format!(
        "run: complete: {} rows in {} at '{}' ({:.1} s)",
        manifest.rows(),
        shards_text(&manifest),
        dir.path().display(),
        progress.started.elapsed().as_secs_f64()
    ));
    report_row_errors(&ctx, status);
    let job_errors = manifest.row_errors();
    if resumed && !job_errors.is_empty() {
        let total: u64 = job_errors.iter().map(|e| e.rows).sum();
        status.line(&format!(
            "over the whole job (every run of it), {total} row(s) got NULL from a model function:"
        ));
        for e in job_errors {
            status.line(&format!("  {}: {} x {}", e.function, e.rows, e.reason));
        }
    }
    Ok(Outcome::Success)
}

/// The session's failed-row counts so far, by (function, reason).
fn error_counts(ctx: &SessionContext) -> BTreeMap<(String, String), u64> {
    hqflow_udfs::row_errors(ctx)
        .into_iter()
        .map(|s| ((s.function, s.reason), s.count))
        .collect()
}

/// What was counted between two snapshots (units run one after another).
fn errors_since(
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
) -> Vec<UnitRowErrors> {
    after
        .iter()
        .filter_map(|((function, reason), &count)| {
            let rows = count.saturating_sub(
                before
                    .get(&(function.clone(), reason.clone()))
                    .copied()
                    .unwrap_or(0),
            );
            (rows > 0).then(|| UnitRowErrors {
                function: function.clone(),
                reason: reason.clone(),
                rows,
            })
        })
        .collect()
}

fn is_query(statement: &DFStatement) -> bool {
    matches!(statement, DFStatement::Statement(s) if matches!(**s, SqlStatement::Query(_)))
}

/// Runs the statements before the query, as `hqflow sql` would (results of queries among
/// them go to stdout).
async fn run_earlier_statements(
    ctx: &SessionContext,
    statements: Vec<DFStatement>,
    texts: &[String],
    file: &str,
    status: Status,
) -> Result<()> {
    if statements.is_empty() {
        return Ok(());
    }
    let format = if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Csv
    };
    let mut out = ResultWriter::stdout(format);
    for (i, statement) in statements.into_iter().enumerate() {
        let mut report = |line: &str| status.line(line);
        run_statement(ctx, statement, &mut out, &mut report)
            .await
            .map_err(|e| statement_context(e, i, &texts[i]).context(file.to_string()))?;
    }
    out.finish()
}

/// The settings that shape results (`-s`, `--device`); the cache directory is not one.
fn settings(session: &SessionArgs) -> Vec<Setting> {
    session
        .options(None)
        .settings
        .into_iter()
        .map(|s| Setting {
            key: s.key,
            value: s.value,
        })
        .collect()
}

/// Refuses an output directory that holds files of an input table.
fn refuse_output_among_inputs(dir: &OutDir, tables: &[ListedTable]) -> Result<()> {
    let Ok(out) = std::fs::canonicalize(dir.path()) else {
        return Ok(());
    };
    for table in tables {
        for file in &table.input.files {
            if std::path::Path::new(&file.path).starts_with(&out) {
                return plan_err!(
                    "--out '{}' holds '{}', a file of table '{}': a run cannot write over its \
                     own input",
                    dir.path().display(),
                    file.path,
                    table.name
                );
            }
        }
    }
    Ok(())
}

async fn target(ctx: &SessionContext, tables: &[ListedTable], choice: &Choice) -> Result<Target> {
    let Choice::Rows { index, .. } = choice else {
        return Ok(Target::Whole);
    };
    let table = &tables[*index];
    let listing = table.listing().ok_or_else(|| {
        DataFusionError::Internal(format!("'{}' is not a listing table", table.name))
    })?;
    let store = listing
        .table_paths()
        .first()
        .map(|u| u.object_store())
        .ok_or_else(|| DataFusionError::Plan(format!("table '{}' has no location", table.name)))?;
    Ok(Target::Rows {
        key: table.key(),
        name: table.name.clone(),
        layout: RowLayout::read(ctx, table).await?,
        schema: table.provider.schema(),
        format: Arc::clone(&listing.options().format),
        store,
    })
}

/// Where a run starts.
enum Start {
    /// `_SUCCESS` is there and the job is the same: nothing to do.
    Complete(Manifest),
    /// Units to do (those in the manifest's `finished` are kept).
    Resume(Manifest),
}

/// Compares `job` with what `dir` holds, clears what cannot be kept, and says where to start.
fn reconcile(dir: &OutDir, job: Manifest, restart: bool, status: Status) -> Result<Start> {
    let entries = dir.entries()?;
    if restart {
        if !entries.is_empty() {
            status.line(&format!(
                "run: --restart: removing {} files of an earlier run from '{}'",
                entries.len(),
                dir.path().display()
            ));
        }
        for (name, _) in &entries {
            dir.remove(name)?;
        }
        dir.sync()?;
        return Ok(Start::Resume(job));
    }
    let Some(old) = dir.read_manifest()? else {
        if let Some((name, _)) = entries
            .iter()
            .find(|(_, kind)| matches!(kind, Kind::Shard | Kind::Success))
        {
            return plan_err!(
                "--out '{}' holds '{name}' but no _manifest.json, so it cannot be resumed; \
                 use --restart to clear it, or choose another --out",
                dir.path().display()
            );
        }
        for (name, _) in &entries {
            dir.remove(name)?;
        }
        return Ok(Start::Resume(job));
    };
    let differences = old.differences(&job);
    if !differences.is_empty() {
        return plan_err!(
            "--out '{}' holds a run of another job; it differs in: {}. Use --restart to \
             discard it, or choose another --out",
            dir.path().display(),
            differences.join("; ")
        );
    }
    // Keep the finished units whose shards are all there, as recorded.
    let mut kept: Vec<FinishedUnit> = Vec::new();
    for unit in old.finished {
        let intact = unit.unit < job.split.units
            && !kept.iter().any(|k| k.unit == unit.unit)
            && unit.shards.iter().all(|s| {
                std::fs::metadata(dir.join(&s.name)).is_ok_and(|m| m.is_file() && m.len() == s.size)
            });
        if intact {
            kept.push(unit);
        } else {
            status.line(&format!(
                "run: unit {}'s shards are missing or changed; redoing it",
                unit.unit
            ));
        }
    }
    let keep: HashSet<&str> = kept
        .iter()
        .flat_map(|u| u.shards.iter().map(|s| s.name.as_str()))
        .collect();
    let all_done = kept.len() as u64 == job.split.units;
    let mut success = false;
    for (name, kind) in &entries {
        match kind {
            Kind::Manifest => {}
            Kind::Success if all_done => success = true,
            Kind::Shard if keep.contains(name.as_str()) => {}
            // Temporary files of a killed run, shards of a unit it did not record, a marker
            // that no longer holds.
            _ => dir.remove(name)?,
        }
    }
    dir.sync()?;
    let manifest = Manifest {
        finished: kept,
        ..job
    };
    Ok(if success {
        Start::Complete(manifest)
    } else {
        Start::Resume(manifest)
    })
}

fn shard_count(manifest: &Manifest) -> usize {
    manifest.finished.iter().map(|u| u.shards.len()).sum()
}

fn shards_text(manifest: &Manifest) -> String {
    match shard_count(manifest) {
        1 => "1 shard".into(),
        n => format!("{n} shards"),
    }
}

fn describe_plan(manifest: &Manifest, choice: &Choice, status: Status) {
    let split = &manifest.split;
    let resumed = if manifest.finished.is_empty() {
        String::new()
    } else {
        format!("; {} already complete", manifest.finished.len())
    };
    match (&split.table, &split.whole_because) {
        (Some(table), _) => {
            let note = match choice {
                Choice::Rows {
                    note: Some(note), ..
                } => format!(" ({note})"),
                _ => String::new(),
            };
            status.line(&format!(
                "run: {} units of up to {} rows of '{table}'{note}, {} rows in all{resumed}",
                split.units, split.shard_rows, split.input_rows
            ));
        }
        (None, why) => status.line(&format!(
            "run: the query runs as one unit{}, so an interrupted run redoes it whole{resumed}",
            why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
        )),
    }
}

/// Names a unit in an error.
fn unit_text(target: &Target, unit: u64, shard_rows: u64) -> String {
    match target {
        Target::Rows { name, layout, .. } => {
            let (start, end) = layout.unit_range(unit, shard_rows);
            format!(
                "unit {unit} (rows {start} to {} of '{name}')",
                end.saturating_sub(1)
            )
        }
        Target::Whole => "the query".into(),
    }
}

/// Runs one unit and writes its shards; returns it as finished.
async fn run_unit(
    ctx: &SessionContext,
    plan: &LogicalPlan,
    target: &Target,
    unit: u64,
    dir: &OutDir,
    shard_rows: u64,
    force_shard: bool,
) -> Result<FinishedUnit> {
    let (unit_plan, rows_in) = match target {
        Target::Rows {
            key,
            layout,
            schema,
            format,
            store,
            ..
        } => {
            let (start, end) = layout.unit_range(unit, shard_rows);
            let partitions = ctx.state().config().target_partitions();
            let table = UnitTable::new(
                Arc::clone(schema),
                Arc::clone(format),
                store.clone(),
                layout.file_groups(start, end, partitions),
            );
            (with_unit(plan, *key, Arc::new(table))?, end - start)
        }
        Target::Whole => (plan.clone(), 0),
    };
    let mut stream = ctx
        .execute_logical_plan(unit_plan)
        .await?
        .execute_stream()
        .await?;
    let mut writer = UnitWriter::new(dir, unit, stream.schema(), shard_rows);
    if force_shard {
        // The result has no rows so far and this is its last unit: one empty shard keeps
        // the schema readable.
        writer.ensure_shard()?;
    }
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    Ok(FinishedUnit {
        unit,
        rows_in,
        rows,
        shards: writer.commit()?,
        row_errors: Vec::new(),
    })
}

/// Progress lines on stderr, at most every few seconds.
struct Progress {
    status: Status,
    started: Instant,
    last: Instant,
    rows_in: u64,
    rows: u64,
    /// Finished units at the last line printed.
    printed: Option<usize>,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    fn new(status: Status) -> Self {
        let now = Instant::now();
        Progress {
            status,
            started: now,
            last: now,
            rows_in: 0,
            rows: 0,
            printed: None,
        }
    }

    fn unit_done(&mut self, unit: &FinishedUnit) {
        self.rows_in += unit.rows_in;
        self.rows += unit.rows;
    }

    fn maybe_print(&mut self, manifest: &Manifest, last: bool) {
        let now = Instant::now();
        if !last && now.duration_since(self.last) < PROGRESS_EVERY {
            return;
        }
        if self.printed == Some(manifest.finished.len()) {
            return;
        }
        self.printed = Some(manifest.finished.len());
        self.last = now;
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let split = &manifest.split;
        let (rate_rows, of) = match &split.table {
            Some(table) => (
                self.rows_in,
                format!(
                    ", {}/{} rows of '{table}'",
                    manifest.rows_in(),
                    split.input_rows
                ),
            ),
            None => (self.rows, String::new()),
        };
        let rate = rate_rows as f64 / secs;
        // Rows still to read at this run's rate (a resumed run counts only its own rows).
        let remaining = split.input_rows.saturating_sub(manifest.rows_in());
        let eta = if split.table.is_some() && remaining > 0 && self.rows_in > 0 {
            format!(", ETA {}", duration_words(remaining as f64 / rate))
        } else {
            String::new()
        };
        self.status.line(&format!(
            "run: {}/{} units{of}, {} result rows ({rate:.0} rows/s{eta})",
            manifest.finished.len(),
            split.units,
            manifest.rows(),
        ));
    }
}

/// Seconds as `1h02m`, `3m12s` or `45s`.
fn duration_words(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m{sec:02}s"),
        (h, min, _) => format!("{h}h{min:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::manifest::ShardFile;
    use super::out_dir::{shard_name, temp_name};
    use super::*;

    #[test]
    fn unit_errors_are_the_difference_of_two_tallies() {
        let key = |f: &str, r: &str| (f.to_string(), r.to_string());
        let before = BTreeMap::from([(key("dfn_score", "not an image"), 2)]);
        let after = BTreeMap::from([
            (key("dfn_score", "not an image"), 5),
            (key("dfn_score", "image too large"), 1),
            (key("clip_embed", "not an image"), 0),
        ]);
        let mut d = errors_since(&before, &after);
        d.sort_by(|a, b| a.reason.cmp(&b.reason));
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].reason.as_str(), d[0].rows), ("image too large", 1));
        assert_eq!((d[1].reason.as_str(), d[1].rows), ("not an image", 3));
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration_words(44.6), "45s");
        assert_eq!(duration_words(192.0), "3m12s");
        assert_eq!(duration_words(3725.0), "1h02m");
    }

    fn job(units: u64) -> Manifest {
        Manifest {
            format: FORMAT,
            hqflow_version: "0.1.0".into(),
            query: "SELECT uid FROM p".into(),
            statements: vec!["SELECT uid FROM p".into()],
            settings: vec![],
            tables: vec![],
            models: vec![],
            split: Split {
                table: Some("p".into()),
                whole_because: None,
                shard_rows: 10,
                input_rows: units * 10,
                units,
            },
            finished: vec![],
        }
    }

    fn finish(dir: &OutDir, m: &mut Manifest, unit: u64) {
        let name = shard_name(unit, 0);
        std::fs::write(dir.join(&name), b"0123456789").expect("written");
        m.finished.push(FinishedUnit {
            row_errors: vec![],
            unit,
            rows_in: 10,
            rows: 10,
            shards: vec![ShardFile {
                name,
                size: 10,
                rows: 10,
            }],
        });
    }

    fn names(dir: &OutDir) -> Vec<String> {
        dir.entries()
            .expect("ours")
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn a_killed_runs_leftovers_are_cleared_and_its_finished_units_kept() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = OutDir::create(tmp.path()).expect("dir");
        let mut old = job(4);
        finish(&dir, &mut old, 0);
        finish(&dir, &mut old, 2);
        dir.write_manifest(&old).expect("written");
        // Killed after renaming unit 1's shard, before recording it; and while writing
        // unit 3's shard and the manifest.
        std::fs::write(dir.join(&shard_name(1, 0)), b"complete").expect("written");
        std::fs::write(dir.join(&temp_name(&shard_name(3, 0))), b"half").expect("written");
        std::fs::write(dir.join(&temp_name(out_dir::MANIFEST)), b"{").expect("written");
        let Start::Resume(m) = reconcile(&dir, job(4), false, Status::new(true)).expect("ok")
        else {
            panic!("not complete")
        };
        let units: Vec<u64> = m.finished.iter().map(|u| u.unit).collect();
        assert_eq!(units, vec![0, 2]);
        assert_eq!(
            names(&dir),
            vec![
                "_manifest.json",
                "part-00000-000.parquet",
                "part-00002-000.parquet"
            ]
        );
    }

    #[test]
    fn a_changed_shard_is_redone_and_success_needs_every_unit() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = OutDir::create(tmp.path()).expect("dir");
        let mut old = job(2);
        finish(&dir, &mut old, 0);
        finish(&dir, &mut old, 1);
        dir.write_manifest(&old).expect("written");
        dir.write_atomic(SUCCESS, b"").expect("written");
        assert!(matches!(
            reconcile(&dir, job(2), false, Status::new(true)).expect("ok"),
            Start::Complete(_)
        ));
        std::fs::write(dir.join(&shard_name(1, 0)), b"truncated").expect("written");
        let Start::Resume(m) = reconcile(&dir, job(2), false, Status::new(true)).expect("ok")
        else {
            panic!("a changed shard was kept")
        };
        assert_eq!(m.finished.len(), 1);
        assert_eq!(
            names(&dir),
            vec!["_manifest.json", "part-00000-000.parquet"]
        );
    }

    #[test]
    fn another_job_is_refused_unless_restarted() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = OutDir::create(tmp.path()).expect("dir");
        let mut old = job(2);
        finish(&dir, &mut old, 0);
        dir.write_manifest(&old).expect("written");
        let mut other = job(2);
        other.statements = vec!["SELECT url FROM p".into()];
        let e = match reconcile(&dir, other.clone(), false, Status::new(true)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("resumed another job"),
        };
        assert!(
            e.contains("the query (statement 1: 'SELECT uid FROM p' then"),
            "{e}"
        );
        assert_eq!(names(&dir).len(), 2);
        let Start::Resume(m) = reconcile(&dir, other, true, Status::new(true)).expect("ok") else {
            panic!("not complete")
        };
        assert!(m.finished.is_empty());
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn shards_without_a_manifest_are_not_taken_for_a_run() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = OutDir::create(tmp.path()).expect("dir");
        std::fs::write(dir.join(&shard_name(0, 0)), b"x").expect("written");
        let e = match reconcile(&dir, job(1), false, Status::new(true)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("took shards without a manifest"),
        };
        assert!(e.contains("but no _manifest.json"), "{e}");
        // A run killed before its first manifest leaves only temporary files: cleared.
        std::fs::remove_file(dir.join(&shard_name(0, 0))).expect("removed");
        std::fs::write(dir.join(&temp_name(out_dir::MANIFEST)), b"{").expect("written");
        assert!(matches!(
            reconcile(&dir, job(1), false, Status::new(true)).expect("ok"),
            Start::Resume(_)
        ));
        assert!(names(&dir).is_empty());
    }
}
