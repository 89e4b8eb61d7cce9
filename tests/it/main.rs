//! hqflow's integration tests, one binary (each test binary is a costly link on 2 cores).
//!
//! - `slt`: the sqllogictest files under `tests/sql/` through hqflow's own session.
//! - `cli`: the real `hqflow` binary in temporary directories.
//! - `cache`: the model-output cache: re-runs compute nothing, changed checkpoints recompute.
//! - `clip_conformance`: hqflow's CLIP against transformers' outputs on tiny checkpoints.
//! - `s3`: a round trip through a local S3-compatible server (`tests/run.sh` starts one).
//! - `run`: `hqflow run` materializing a query into shards, resumed after kill -9 and Ctrl-C.
//! - `train`: `hqflow-train` fit, resume and eval on a small world table.
//! - `world`: `hqflow world` pools, seed texts and eval sets against their truth columns.
//! - `ingest`: `hqflow ingest` of webdataset shards (written by Python's tarfile),
//!   img2dataset output and folders, with bad input.
//! - `packages`: the package pools' row counts (only when tests/run.sh could fetch them).
//! - `refine`: `lvlm_refine` against a fake OpenAI-compatible server (`fake_openai`) on
//!   127.0.0.1: ordering under concurrency, retries, failures, keys, the cache.
//! - `report`: `hqflow report`'s HTML over a scored world pool, rendered by headless
//!   Chromium where it is installed.
//! - `bad_input_corpus`: over a thousand malformed images and texts through every model
//!   function.

mod bad_input_corpus;
mod cache;
mod cli;
mod clip_conformance;
mod fake_openai;
mod ingest;
mod packages;
mod refine;
mod report;
mod run;
mod s3;
mod slt;
mod support;
mod train;
mod world;
