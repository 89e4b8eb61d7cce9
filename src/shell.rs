//! The interactive SQL shell of `hqflow sql` (no query, no file, a terminal on stdin).
//!
//! Statements may span lines and run when a line ends with `;`. Backslash commands:
//! `\q` quits, `\d` lists tables, `\d NAME` describes one, `\?` helps. History is kept in
//! `$HQFLOW_HISTORY` (default `~/.hqflow_history`).

use std::path::PathBuf;

use datafusion::common::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::cli::Status;
use crate::object_stores::redact_secrets;
use crate::output::{Format, ResultWriter};
use crate::script::run_script;

const HELP: &str = "statements end with ';'\n  \\d          list tables\n  \\d NAME     describe a table\n  \\q          quit (or Ctrl-D)\n  \\?          this help";

const LIST_TABLES: &str = "SELECT table_name, table_type FROM information_schema.tables \
     WHERE table_schema <> 'information_schema' ORDER BY table_name";

fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HQFLOW_HISTORY") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".hqflow_history"))
}

async fn execute(ctx: &SessionContext, sql: &str, format: Format, status: Status) {
    let mut out = ResultWriter::stdout(format);
    let mut report = |line: &str| status.line(line);
    let result = match run_script(ctx, sql, &mut out, &mut report).await {
        Ok(()) => out.finish(),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("error: {}", redact_secrets(&e.strip_backtrace()));
    }
}

/// Runs the shell until `\q` or end of input.
pub async fn run(ctx: &SessionContext, format: Format, status: Status) -> Result<()> {
    let mut editor = DefaultEditor::new()
        .map_err(|e| DataFusionError::Execution(format!("cannot start the shell: {e}")))?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    status.line("hqflow sql: statements end with ';', \\? for help, \\q to quit");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "hqflow> "
        } else {
            "     -> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && trimmed.starts_with('\\') {
                    let _ = editor.add_history_entry(trimmed);
                    let mut parts = trimmed.split_whitespace();
                    match (parts.next(), parts.next()) {
                        (Some("\\q"), _) => break,
                        (Some("\\d"), None) => execute(ctx, LIST_TABLES, format, status).await,
                        (Some("\\d"), Some(name)) => {
                            execute(ctx, &format!("DESCRIBE {name}"), format, status).await
                        }
                        _ => eprintln!("{HELP}"),
                    }
                    continue;
                }
                if !buffer.is_empty() {
                    buffer.push('\n');
                }
                buffer.push_str(&line);
                if trimmed.ends_with(';') {
                    let _ = editor.add_history_entry(buffer.as_str());
                    execute(ctx, &buffer, format, status).await;
                    buffer.clear();
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                return Err(DataFusionError::Execution(format!(
                    "shell input failed: {e}"
                )));
            }
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    crate::cli::report_row_errors(ctx, status);
    Ok(())
}
