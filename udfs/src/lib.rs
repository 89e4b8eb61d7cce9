//! hqflow's model-backed SQL functions and the session options they read.
//!
//! Layout: `options` holds the `hqflow.*` session settings (model registry, defaults, error
//! policy) that `SET` and `hqflow sql -m/-s` write and the functions read per call.
//! Model code will live in `models/` (no SQL) and one SQL function per file in `functions/`.
//!
//! How to add a setting: add a field to [`HqflowOptions`], parse it in `set`, list it in
//! `entries`, and document it in the table on [`HqflowOptions`].

pub mod cache;
pub mod errors;
pub mod functions;
pub mod models;
mod options;
pub mod training;

pub use errors::{RowErrorSummary, RowErrors};
pub use options::{
    HqflowOptions, ModelLocation, OnError, RefinePrompt, RefineSettings, check_model_name,
};

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};

/// Registers every hqflow SQL function with `ctx`. Built-in names are never shadowed.
pub fn register_all(ctx: &SessionContext) -> Result<()> {
    let options = session_options(ctx);
    for udf in functions::all(&options) {
        if ctx.udf(udf.name()).is_ok() {
            return datafusion::common::internal_err!(
                "hqflow function '{}' would shadow a built-in",
                udf.name()
            );
        }
        ctx.register_udf(udf);
    }
    Ok(())
}

/// Adds hqflow's settings namespace (`hqflow.*`) to a session configuration, so that
/// `SET hqflow.model.NAME = 'DIR'` and friends are accepted and visible in `SHOW ALL`.
pub fn with_hqflow_options(config: SessionConfig) -> SessionConfig {
    config.with_option_extension(HqflowOptions::default())
}

/// The session's `hqflow.*` options (defaults when the namespace was not added).
pub fn session_options(ctx: &SessionContext) -> HqflowOptions {
    HqflowOptions::from_config(ctx.state().config().options())
}

/// Model-output cache hits and computed rows of this session so far, by function.
pub fn cache_counts(ctx: &SessionContext) -> Vec<cache::CacheCountSummary> {
    session_options(ctx).cache_counts.summary()
}

/// Per-row model errors of this session so far.
pub fn row_errors(ctx: &SessionContext) -> Vec<RowErrorSummary> {
    session_options(ctx).errors.summary()
}
