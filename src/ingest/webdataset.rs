//! `ingest webdataset`: tar shards read as a stream, members grouped by key.
//!
//! A sample is the run of consecutive members whose names share a key: everything before
//! the first dot of the file name, with its directory (`dir/000123.jpg` → `dir/000123`), as
//! the webdataset library splits it. Only the current sample is in memory.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use datafusion::common::Result;

use super::problems::Problem;
use super::progress::Progress;
use super::sample::{Member, Sample};
use super::sink::PoolSink;

/// Members larger than this are skipped (a problem), so one member cannot exhaust memory.
pub const MAX_MEMBER_BYTES: u64 = 256 << 20;

/// Splits a member name into key and lowercase extension; `None` for names without one.
pub fn split_name(name: &str) -> Option<(&str, String)> {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[base_start..].find('.')? + base_start;
    if dot == base_start {
        return None;
    }
    Some((&name[..dot], name[dot + 1..].to_ascii_lowercase()))
}

/// Ingests `shards` in order.
pub fn ingest(shards: &[PathBuf], sink: &mut PoolSink, progress: &mut Progress) -> Result<()> {
    let sizes: Vec<u64> = shards
        .iter()
        .map(|s| std::fs::metadata(s).map_or(0, |m| m.len()))
        .collect();
    progress.set_total(sizes.iter().sum(), "bytes");
    let mut done_before = 0u64;
    for (shard, size) in shards.iter().zip(&sizes) {
        read_shard(shard, done_before, sink, progress)?;
        done_before += size;
    }
    Ok(())
}

fn read_shard(
    shard: &Path,
    done_before: u64,
    sink: &mut PoolSink,
    progress: &mut Progress,
) -> Result<()> {
    let origin = shard.display().to_string();
    let file = match File::open(shard) {
        Ok(file) => file,
        Err(e) => return sink.problem(Problem::Unreadable, format!("{origin}: {e}")),
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return sink.problem(Problem::Unreadable, format!("{origin}: {e}")),
    };
    let mut current: Option<Sample> = None;
    let mut last_member = String::from("(none)");
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                return truncated(sink, &origin, &last_member, current, &e.to_string());
            }
        };
        let name = match entry.path() {
            Ok(path) => path.to_string_lossy().into_owned(),
            Err(e) => {
                sink.problem(
                    Problem::BadMetadata,
                    format!("{origin}: a member name: {e}"),
                )?;
                continue;
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let size = entry.size();
        let position = entry.raw_file_position();
        last_member.clone_from(&name);
        let Some((key, ext)) = split_name(&name) else {
            // Hidden files (`._x.jpg` from macOS tar) and names without an extension.
            sink.skip("members without KEY.EXT names");
            continue;
        };
        let key = key.to_string();
        let kind = Member::of(&ext);
        if size > MAX_MEMBER_BYTES {
            sink.problem(
                Problem::TooLarge,
                format!("{origin}: '{name}' has {size} bytes (at most {MAX_MEMBER_BYTES})"),
            )?;
            continue;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let short = match entry.read_to_end(&mut bytes) {
            Err(e) => Some(e.to_string()),
            Ok(_) if (bytes.len() as u64) < size => {
                Some(format!("'{name}' has {} of its {size} bytes", bytes.len()))
            }
            Ok(_) => None,
        };
        if let Some(why) = short {
            // The sample before this member's is complete when the member starts a new key.
            if let Some(sample) = current.take_if(|s| s.key != key) {
                sample.finish(sink, &origin)?;
            }
            let current = current.or_else(|| Some(Sample::new(key)));
            return truncated(sink, &origin, &name, current, &why);
        }
        match current.as_mut() {
            Some(sample) if sample.key == key => {
                sample.add(name, kind, bytes, sink, &origin)?;
            }
            _ => {
                if let Some(sample) = current.take() {
                    sample.finish(sink, &origin)?;
                }
                let mut sample = Sample::new(key);
                sample.add(name, kind, bytes, sink, &origin)?;
                current = Some(sample);
            }
        }
        progress.update(
            done_before + position + size,
            sink.rows(),
            sink.problem_count(),
        );
    }
    if let Some(sample) = current {
        sample.finish(sink, &origin)?;
    }
    Ok(())
}

/// A shard that ends early: the sample being read is dropped (it may lack members, and when
/// the cut falls in a header, which key comes next is unknown), the samples before it are kept.
fn truncated(
    sink: &mut PoolSink,
    origin: &str,
    last: &str,
    current: Option<Sample>,
    why: &str,
) -> Result<()> {
    let dropped = current.map_or_else(String::new, |s| format!("; sample '{}' dropped", s.key));
    sink.problem(
        Problem::TruncatedTar,
        format!("{origin}: ends early after '{last}' ({why}){dropped}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_dot_of_the_file_name() {
        assert_eq!(split_name("000123.jpg"), Some(("000123", "jpg".into())));
        assert_eq!(split_name("a.b/c.d.JSON"), Some(("a.b/c", "d.json".into())));
        assert_eq!(split_name("dir/._x.jpg"), None);
        assert_eq!(split_name("README"), None);
    }
}
