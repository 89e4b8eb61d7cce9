//! The `hqflow` command line: argument definitions and what each subcommand does.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use datafusion::common::{DataFusionError, Result};

use crate::contract::Contract;
use crate::object_stores::redact_secrets;
use crate::output::{Format, ResultWriter};
use crate::session::{Assignment, SessionOptions, build_session, new_context};
use crate::tables::{TableSpec, register_parquet_table};

/// hqflow: curate image-text data for CLIP training with SQL over Parquet.
#[derive(Debug, Parser)]
#[command(name = "hqflow", version, about, long_about = None)]
pub struct Cli {
    /// Print only results and errors (no status lines on stderr).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Model-output cache directory: model functions store what they compute there and
    /// never compute it again [default: ~/.cache/hqflow/outputs, or under $XDG_CACHE_HOME].
    #[arg(long, global = true, value_name = "DIR", env = "HQFLOW_CACHE")]
    pub cache: Option<PathBuf>,

    /// Compute every model output: read and write no cache.
    #[arg(long, global = true, env = "HQFLOW_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// hqflow's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL over Parquet tables: a query, files of statements, stdin, or an interactive shell.
    Sql(SqlArgs),
    /// Materialize a query's result as Parquet shards in a directory, resumably.
    Run(crate::run::RunArgs),
    /// Check tables against the pool and refined contracts in schemas/.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Generate a small pool and walk through hqflow's SQL on it.
    Demo(crate::demo::DemoArgs),
    /// Generate a synthetic world with known truth: pools, seed annotations, eval sets.
    #[command(subcommand)]
    World(crate::world::WorldCommand),
    /// Turn webdataset shards, img2dataset output, folders or packaged datasets into pools.
    #[command(subcommand)]
    Ingest(crate::ingest::IngestCommand),
    /// Measure throughput (run a release build).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// The model-output cache: what it holds, clearing it.
    #[command(subcommand)]
    Cache(crate::cache::CacheCommand),
    /// What a filter kept and dropped, as one self-contained HTML page (scores, tags, image
    /// grids around the threshold).
    Report(crate::report::ReportArgs),
}

fn parse_table(s: &str) -> std::result::Result<TableSpec, String> {
    s.parse()
}

fn parse_model(s: &str) -> std::result::Result<Assignment, String> {
    Assignment::parse(s, "NAME=VALUE")
}

fn parse_setting(s: &str) -> std::result::Result<Assignment, String> {
    Assignment::parse(s, "KEY=VALUE")
}

/// Options that shape a session: tables, models, settings.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Register a Parquet table: a file, a directory, a glob, or s3://bucket/prefix.
    #[arg(short = 't', long = "table", value_name = "NAME=LOCATION", value_parser = parse_table)]
    pub tables: Vec<TableSpec>,

    /// Register a model under NAME: a checkpoint directory, or an http(s) endpoint.
    #[arg(short = 'm', long = "model", value_name = "NAME=VALUE", value_parser = parse_model)]
    pub models: Vec<Assignment>,

    /// A session setting, as SQL SET would (e.g. datafusion.execution.target_partitions=2).
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<Assignment>,

    /// Where models run: cpu (default), cuda[:N] or metal[:N] (GPUs need a build with the
    /// `cuda` or `metal` feature). Same as -s hqflow.device=DEVICE.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
}

impl SessionArgs {
    /// The session these arguments describe, with the model-output cache in `cache_dir`.
    pub fn options(&self, cache_dir: Option<&std::path::Path>) -> SessionOptions {
        let cache = cache_dir.map(|dir| Assignment {
            key: "hqflow.cache_dir".into(),
            value: dir.display().to_string(),
        });
        let device = self.device.iter().map(|d| Assignment {
            key: "hqflow.device".into(),
            value: d.clone(),
        });
        SessionOptions {
            settings: cache
                .into_iter()
                .chain(device)
                .chain(self.settings.iter().cloned())
                .collect(),
            models: self.models.clone(),
            tables: self.tables.clone(),
        }
    }
}

/// `hqflow sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// One or more ;-separated statements. Without QUERY and -f: an interactive shell on a
    /// terminal, or the statements read from stdin.
    pub query: Option<String>,

    /// Run the statements in FILE (repeatable; files run before QUERY).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Tables, models and settings.
    #[command(flatten)]
    pub session: SessionArgs,

    /// Result format [default: table on a terminal; else from --output's extension; else csv].
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Write results to PATH instead of stdout (the file appears only when complete).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// `hqflow schema …`.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Exit 0 when the table conforms to the schema; else exit 2 naming each bad column.
    Check {
        /// The table to check.
        #[arg(short = 't', long = "table", value_name = "NAME=LOCATION", value_parser = parse_table)]
        table: TableSpec,
        /// `pool`, `refined`, or a contract JSON file.
        #[arg(long, default_value = "pool", value_name = "FILE")]
        schema: String,
    },
}

/// How a run ended, as an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked.
    Success,
    /// A check found problems (schema mismatch): exit 2.
    CheckFailed,
}

/// Prints status lines on stderr unless `--quiet`.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    quiet: bool,
}

impl Status {
    /// A status printer.
    pub fn new(quiet: bool) -> Self {
        Status { quiet }
    }

    /// Whether `--quiet` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Prints one line on stderr.
    pub fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!("{}", redact_secrets(text));
        }
    }
}

/// Parses arguments, runs, and turns the result into an exit code; errors are printed once.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    install_panic_hook();
    // Spawned, so that a panic anywhere (ours or a dependency's) ends as one error line and
    // exit 1 rather than an abort with a backtrace dump.
    match runtime.block_on(async { tokio::spawn(run(cli)).await }) {
        Ok(Ok(Outcome::Success)) => ExitCode::SUCCESS,
        Ok(Ok(Outcome::CheckFailed)) => ExitCode::from(2),
        Ok(Err(e)) => {
            eprintln!("error: {}", redact_secrets(&e.strip_backtrace()));
            ExitCode::from(1)
        }
        Err(join_error) => {
            let fallback = join_error.to_string();
            let message = join_error.try_into_panic().ok().and_then(|payload| {
                payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
            });
            // The hook also sees panics that were caught (a codec's, turned into a row error):
            // its record is this panic's only when the messages agree.
            let recorded = LAST_PANIC.lock().ok().and_then(|p| p.clone());
            let detail = match (message, recorded) {
                (Some(m), Some(r)) if r.starts_with(&m) => r,
                (Some(m), _) => m,
                (None, _) => fallback,
            };
            eprintln!(
                "error: internal error: {} (this is a bug in hqflow; please report it)",
                redact_secrets(&detail)
            );
            ExitCode::from(1)
        }
    }
}

/// How long an idle thread of the runtime's blocking pool lives (tokio's default: 10 s).
/// Model calls leave their worker with `block_in_place`, which starts another thread for
/// the worker's other tasks, and local object-store reads run on the pool too, so a long
/// query passes through many threads; with 10 s, about 40 were alive at once, each holding
/// glibc's per-thread cache of freed blocks and pinning the heap pages around them. Scoring
/// 100,000 rows (100 files, 2 cores): anonymous memory at its peak 65 MB → 56 MB, same
/// time (two runs each, alternated).
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(100);

/// The binaries' multi-threaded runtime (`workers`: its thread count, default one per
/// core); when it cannot start, the error is printed and the exit code returned.
pub fn runtime(workers: Option<usize>) -> std::result::Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE);
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}

/// The message and location of the last panic, printed once by `main` instead of the
/// default hook's multi-line dump.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn install_panic_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            default_hook(info);
        }
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message}{location}"));
        }
    }));
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HQFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr)
        .try_init();
}

/// Log output goes through the same credential redaction as error messages: at debug and
/// trace levels, HTTP clients may log request details.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = redact_secrets(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome> {
    let status = Status::new(cli.quiet);
    let cache_dir = crate::cache::resolve_dir(cli.cache.as_deref(), cli.no_cache);
    match cli.command {
        Command::Sql(args) => run_sql(args, cache_dir.as_deref(), status).await,
        Command::Run(args) => crate::run::run(&args, cache_dir.as_deref(), status).await,
        Command::Schema(SchemaCommand::Check { table, schema }) => {
            schema_check(&table, &schema, status).await
        }
        Command::Demo(args) => crate::demo::run(&args, status).await,
        Command::World(crate::world::WorldCommand::Judge(args)) => {
            crate::world::judge::run(&args, status).await
        }
        Command::World(command) => crate::world::run(&command, status),
        Command::Ingest(command) => crate::ingest::run(&command, status),
        Command::Bench(command) => crate::bench::run(&command, status),
        Command::Cache(command) => crate::cache::run(&command, cache_dir.as_deref(), status),
        Command::Report(args) => crate::report::run(&args, cache_dir.as_deref(), status).await,
    }
}

fn default_format(output: Option<&PathBuf>) -> Format {
    match output {
        None if std::io::stdout().is_terminal() => Format::Table,
        None => Format::Csv,
        Some(path) => match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("parquet") => Format::Parquet,
            Some("json") => Format::Json,
            Some("ndjson" | "jsonl") => Format::Ndjson,
            Some("txt") => Format::Table,
            _ => Format::Csv,
        },
    }
}

async fn run_sql(
    args: SqlArgs,
    cache_dir: Option<&std::path::Path>,
    status: Status,
) -> Result<Outcome> {
    let format = args
        .format
        .unwrap_or_else(|| default_format(args.output.as_ref()));
    if format == Format::Parquet && args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(DataFusionError::Plan(
            "--format parquet needs --output PATH or a redirected stdout".into(),
        ));
    }
    let mut scripts: Vec<(String, String)> = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            DataFusionError::Plan(format!("cannot read --file '{}': {e}", file.display()))
        })?;
        scripts.push((file.display().to_string(), text));
    }
    if let Some(query) = &args.query {
        scripts.push(("QUERY".into(), query.clone()));
    }
    if scripts.is_empty() && args.output.is_some() && std::io::stdin().is_terminal() {
        return Err(DataFusionError::Plan(
            "--output needs a QUERY, --file or statements on stdin".into(),
        ));
    }
    let ctx = build_session(&args.session.options(cache_dir)).await?;
    if scripts.is_empty() {
        if std::io::stdin().is_terminal() {
            return crate::shell::run(&ctx, args.format.unwrap_or(Format::Table), status)
                .await
                .map(|_| Outcome::Success);
        }
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            DataFusionError::Plan(format!("cannot read statements from stdin: {e}"))
        })?;
        scripts.push(("stdin".into(), text));
    }
    let mut out = match &args.output {
        Some(path) => ResultWriter::file(format, path)?,
        None => ResultWriter::stdout(format),
    };
    for (origin, text) in &scripts {
        let mut report = |line: &str| status.line(line);
        let result = crate::script::run_script(&ctx, text, &mut out, &mut report).await;
        if out.broken_pipe() {
            return Ok(Outcome::Success);
        }
        if let Err(e) = result {
            report_row_errors(&ctx, status);
            let many = scripts.len() > 1 || origin != "QUERY";
            return Err(if many { e.context(origin.clone()) } else { e });
        }
    }
    out.finish()?;
    report_row_errors(&ctx, status);
    Ok(Outcome::Success)
}

/// Prints, on stderr, the rows model functions could not compute, by function and reason,
/// and what the model-output cache saved.
pub fn report_row_errors(ctx: &datafusion::prelude::SessionContext, status: Status) {
    crate::cache::report_use(ctx, status);
    let summary = hqflow_udfs::row_errors(ctx);
    if summary.is_empty() {
        return;
    }
    let total: u64 = summary.iter().map(|s| s.count).sum();
    status.line(&format!("{total} row(s) got NULL from a model function:"));
    for s in summary {
        let sample = s
            .samples
            .first()
            .map(|d| format!(" (e.g. {d})"))
            .unwrap_or_default();
        status.line(&format!(
            "  {}: {} x {}{sample}",
            s.function, s.count, s.reason
        ));
    }
}

async fn schema_check(table: &TableSpec, schema: &str, status: Status) -> Result<Outcome> {
    let contract = Contract::load(schema)?;
    let ctx = new_context()?;
    let arrow_schema = register_parquet_table(&ctx, &table.name, &table.location).await?;
    let violations = contract.check(&arrow_schema);
    if violations.is_empty() {
        let checked = contract
            .fields
            .iter()
            .filter(|f| arrow_schema.field_with_name(&f.name).is_ok())
            .count();
        status.line(&format!(
            "table '{}' conforms to schema '{}' ({checked} contract columns present, {} columns in all)",
            table.name,
            contract.name,
            arrow_schema.fields().len()
        ));
        return Ok(Outcome::Success);
    }
    eprintln!(
        "table '{}' ({}) does not conform to schema '{}':",
        table.name, table.location, contract.name
    );
    for v in &violations {
        eprintln!("  {v}");
    }
    Ok(Outcome::CheckFailed)
}
