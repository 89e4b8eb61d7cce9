//! Running SQL text: one or more `;`-separated statements, each planned against the session
//! as it stands after the previous one (so `SET` and `CREATE` take effect for what follows).

use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{LogicalPlan, Statement};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use futures::StreamExt;

use crate::output::ResultWriter;
use crate::session::copy_state;

/// Whether a statement's rows are a report on an action (not a result for the user).
/// `EXECUTE` runs a prepared query, so its rows are a result.
fn is_command(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => true,
        LogicalPlan::Statement(statement) => !matches!(statement, Statement::Execute(_)),
        _ => false,
    }
}

/// Splits `sql` into statements with the session's SQL dialect.
pub fn parse_statements(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<datafusion::sql::parser::Statement>> {
    let state = ctx.state();
    let options = state.config().options();
    let dialect_name = options.sql_parser.dialect.to_string();
    let dialect = dialect_from_str(&dialect_name).ok_or_else(|| {
        DataFusionError::Plan(format!("unsupported SQL dialect '{dialect_name}'"))
    })?;
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(options.sql_parser.recursion_limit.get())
        .build()?;
    Ok(parser.parse_statements()?.into_iter().collect())
}

/// A statement on one line, cut at 60 characters, for messages.
pub fn short(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 60 {
        one_line.chars().take(59).collect::<String>() + "…"
    } else {
        one_line
    }
}

/// Runs every statement in `sql`. Query results go to `out`; commands (`CREATE`, `SET`,
/// `COPY`, `INSERT`) report what they did through `status` (stderr in the CLI), so that
/// stdout holds only results.
pub async fn run_script(
    ctx: &SessionContext,
    sql: &str,
    out: &mut ResultWriter,
    status: &mut (dyn FnMut(&str) + Send),
) -> Result<()> {
    let statements = parse_statements(ctx, sql)?;
    let many = statements.len() > 1;
    for (i, statement) in statements.into_iter().enumerate() {
        let text = statement.to_string();
        run_statement(ctx, statement, out, status)
            .await
            .map_err(|e| {
                if many {
                    statement_context(e, i, &text)
                } else {
                    e
                }
            })?;
        if out.broken_pipe() {
            break;
        }
    }
    Ok(())
}

/// Names statement `index` (0-based) of a script in an error.
pub fn statement_context(e: DataFusionError, index: usize, text: &str) -> DataFusionError {
    e.context(format!("statement {} ({})", index + 1, short(text)))
}

/// Runs one parsed statement, as [`run_script`] runs each of its statements.
pub async fn run_statement(
    ctx: &SessionContext,
    statement: datafusion::sql::parser::Statement,
    out: &mut ResultWriter,
    status: &mut (dyn FnMut(&str) + Send),
) -> Result<()> {
    let plan = ctx.state().statement_to_plan(statement).await?;
    let command = is_command(&plan);
    let label = match &plan {
        LogicalPlan::Copy(_) => Some("COPY"),
        LogicalPlan::Dml(_) => Some("INSERT"),
        _ => None,
    };
    let df = match &plan {
        LogicalPlan::Copy(copy) => DataFrame::new(copy_state(ctx, &copy.output_url), plan),
        _ => ctx.execute_logical_plan(plan).await?,
    };
    if command {
        let mut stream = df.execute_stream().await?;
        let mut count: Option<u64> = None;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if let Some(col) = batch.columns().first()
                && let Some(c) = col
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::UInt64Array>()
            {
                count = Some(count.unwrap_or(0) + c.iter().flatten().sum::<u64>());
            }
        }
        if let (Some(label), Some(count)) = (label, count) {
            status(&format!("{label}: {count} rows"));
        }
    } else {
        out.write_stream(df.execute_stream().await?).await?;
    }
    Ok(())
}
