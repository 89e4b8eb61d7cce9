//! hqflow: curate image-text data for CLIP training as SQL over Arrow/Parquet.
//!
//! The engine is Apache DataFusion; hqflow adds what a curation pipeline needs around it:
//! Parquet tables from files, directories, globs and S3 with errors that name the bad file
//! ([`tables`]), S3 stores configured from the environment ([`object_stores`]), the `hqflow.*`
//! settings and model functions (the `hqflow-udfs` crate), schema contracts for pools and
//! refined tables ([`contract`]), a synthetic image-text world with known truth ([`world`]), ingest of
//! webdataset shards, img2dataset output, folders and packaged datasets ([`ingest`]), and the `hqflow` command line ([`cli`]).
//!
//! How to add a subcommand: a variant in [`cli::Command`], its arguments as a clap struct,
//! and its body in a module of its own that returns [`cli::Outcome`].

pub mod allocator;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod contract;
pub mod demo;
pub mod ingest;
pub mod object_stores;
pub mod output;
pub mod report;
pub mod run;
pub mod script;
pub mod session;
pub mod shards;
pub mod shell;
pub mod tables;
pub mod threads;
pub mod train;
pub mod world;
