//! `ingest folder`: image files with sidecar captions (`a.jpg` + `a.txt`, optional `a.json`)
//! in a directory tree; also img2dataset's `files` output. The key is the path relative to
//! the directory without its extension (`sub/a`).

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::common::Result;

use super::problems::Problem;
use super::progress::Progress;
use super::sample::{Member, Sample};
use super::sink::PoolSink;
use super::walk::{files, split_ext};

/// Ingests the tree under `dir`.
pub fn ingest(dir: &Path, sink: &mut PoolSink, progress: &mut Progress) -> Result<()> {
    let origin = dir.display().to_string();
    let mut by_key: BTreeMap<String, Vec<(String, Member)>> = BTreeMap::new();
    for rel in files(dir)? {
        let (stem, ext) = split_ext(&rel);
        let kind = Member::of(&ext);
        if kind == Member::Other {
            sink.skip("files that are not images, .txt or .json");
            continue;
        }
        by_key
            .entry(stem.to_string())
            .or_default()
            .push((rel.clone(), kind));
    }
    progress.set_total(by_key.len() as u64, "keys");
    for (done, (key, members)) in by_key.into_iter().enumerate() {
        let mut sample = Sample::new(key);
        for (rel, kind) in members {
            let bytes = match std::fs::read(dir.join(&rel)) {
                Ok(bytes) => bytes,
                Err(e) => {
                    sink.problem(Problem::Unreadable, format!("{origin}: '{rel}': {e}"))?;
                    continue;
                }
            };
            sample.add(rel, kind, bytes, sink, &origin)?;
        }
        sample.finish(sink, &origin)?;
        progress.update(done as u64 + 1, sink.rows(), sink.problem_count());
    }
    Ok(())
}
