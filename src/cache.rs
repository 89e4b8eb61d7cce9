//! `hqflow cache`: where the model-output cache lives, what is in it, and clearing it.
//!
//! Every `hqflow` command that runs model functions reads and writes the cache in
//! `--cache DIR` (or `$HQFLOW_CACHE`), by default `$XDG_CACHE_HOME/hqflow/outputs` or
//! `~/.cache/hqflow/outputs`; `--no-cache` (or `HQFLOW_NO_CACHE=1`) turns it off.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use datafusion::common::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use crate::cli::{Outcome, Status};

/// `hqflow cache …`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the cache's location, size, and stored outputs by function and model.
    Stats,
    /// Delete every stored output (refused while another hqflow process uses the cache).
    Clear,
}

/// The cache directory a command uses: `--cache`/`$HQFLOW_CACHE`, else the user's cache
/// directory; `None` with `--no-cache` or when there is no home directory.
pub fn resolve_dir(explicit: Option<&Path>, disabled: bool) -> Option<PathBuf> {
    if disabled {
        return None;
    }
    if let Some(dir) = explicit {
        return Some(dir.to_path_buf());
    }
    Some(hqflow_udfs::cache::user_cache_dir()?.join("outputs"))
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Runs `hqflow cache …` on `dir`.
pub fn run(command: &CacheCommand, dir: Option<&Path>, status: Status) -> Result<Outcome> {
    let Some(dir) = dir else {
        return Err(DataFusionError::Plan(
            "no cache directory: --no-cache was given, or there is no home directory \
             (pass --cache DIR)"
                .into(),
        ));
    };
    match command {
        CacheCommand::Stats => stats(dir),
        CacheCommand::Clear => {
            let freed = hqflow_udfs::cache::clear(dir)
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            status.line(&format!(
                "cleared the model-output cache in '{}' ({} freed)",
                dir.display(),
                mib(freed)
            ));
            Ok(Outcome::Success)
        }
    }
}

#[allow(clippy::print_stdout)]
fn stats(dir: &Path) -> Result<Outcome> {
    let file = dir.join(hqflow_udfs::cache::FILE_NAME);
    if !file.exists() {
        println!("model-output cache: {} (empty)", dir.display());
        return Ok(Outcome::Success);
    }
    let cache =
        hqflow_udfs::cache::open(dir).map_err(|e| DataFusionError::Execution(e.to_string()))?;
    let tables = cache
        .summary()
        .map_err(|e| DataFusionError::Execution(e.to_string()))?;
    let entries: u64 = tables.iter().map(|t| t.entries).sum();
    println!(
        "model-output cache: {} ({}, {} outputs)",
        cache.dir().display(),
        mib(cache.file_bytes()),
        thousands(entries)
    );
    let mut table = comfy_table::Table::new();
    table.set_header(["function", "model", "fingerprint", "outputs", "size"]);
    for t in &tables {
        table.add_row([
            t.function.clone(),
            t.model.clone().unwrap_or_else(|| "?".into()),
            t.fingerprint.clone(),
            thousands(t.entries),
            mib(t.bytes),
        ]);
    }
    if !tables.is_empty() {
        println!("{table}");
    }
    Ok(Outcome::Success)
}

/// Prints, on stderr, how many rows each model function took from the cache and computed.
pub fn report_use(ctx: &SessionContext, status: Status) {
    let options = hqflow_udfs::session_options(ctx);
    let Some(dir) = options.cache_dir.as_deref() else {
        return;
    };
    let counts = options.cache_counts.summary();
    if counts.is_empty() {
        return;
    }
    let lines: Vec<String> = counts
        .iter()
        .map(|c| {
            format!(
                "{} {} from cache, {} computed",
                c.function,
                thousands(c.hits),
                thousands(c.computed)
            )
        })
        .collect();
    status.line(&format!("model-output cache ({dir}): {}", lines.join("; ")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn no_cache_wins_and_explicit_dir_is_used() {
        assert_eq!(resolve_dir(Some(Path::new("/x")), true), None);
        assert_eq!(
            resolve_dir(Some(Path::new("/x")), false),
            Some(PathBuf::from("/x"))
        );
    }
}
