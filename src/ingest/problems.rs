//! Bad input met while ingesting: counted by kind with a few examples each, reported at the
//! end of a run (and in `ingest.json`); with `--strict` the first one is an error.

use std::collections::BTreeMap;
use std::fmt;

/// What was wrong with a piece of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// A tar shard ends in the middle of a header or a member.
    TruncatedTar,
    /// A file or shard could not be read at all.
    Unreadable,
    /// A sample has an image but no caption.
    NoCaption,
    /// A sample (or a caption) has no image member.
    NoImage,
    /// Bytes that should be an image are not one we can read.
    NotAnImage,
    /// A key or uid seen before (the first is kept).
    DuplicateKey,
    /// A sidecar JSON that does not parse, or a caption that is not UTF-8.
    BadMetadata,
    /// A member larger than hqflow reads into memory.
    TooLarge,
}

impl Problem {
    /// A short description, as the report prints it.
    pub fn describe(self) -> &'static str {
        match self {
            Problem::TruncatedTar => "truncated tar shard",
            Problem::Unreadable => "unreadable input",
            Problem::NoCaption => "image without a caption",
            Problem::NoImage => "sample without an image",
            Problem::NotAnImage => "not an image",
            Problem::DuplicateKey => "duplicate key or uid (first kept)",
            Problem::BadMetadata => "bad metadata",
            Problem::TooLarge => "member too large",
        }
    }

    /// The name used in `ingest.json`.
    pub fn word(self) -> &'static str {
        match self {
            Problem::TruncatedTar => "truncated_tar",
            Problem::Unreadable => "unreadable",
            Problem::NoCaption => "no_caption",
            Problem::NoImage => "no_image",
            Problem::NotAnImage => "not_an_image",
            Problem::DuplicateKey => "duplicate_key",
            Problem::BadMetadata => "bad_metadata",
            Problem::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Examples kept per kind.
const SAMPLES: usize = 3;

/// Counts and examples of bad input.
#[derive(Debug, Default, Clone)]
pub struct Problems {
    kinds: BTreeMap<Problem, (u64, Vec<String>)>,
}

impl Problems {
    /// Records one problem; `detail` names the file, member or row.
    pub fn add(&mut self, problem: Problem, detail: String) {
        let (count, samples) = self.kinds.entry(problem).or_default();
        *count += 1;
        if samples.len() < SAMPLES {
            samples.push(detail);
        }
    }

    /// All problems counted.
    pub fn total(&self) -> u64 {
        self.kinds.values().map(|(n, _)| n).sum()
    }

    /// How many of one kind.
    pub fn count(&self, problem: Problem) -> u64 {
        self.kinds.get(&problem).map_or(0, |(n, _)| *n)
    }

    /// Lines for the end-of-run report (none when there were no problems).
    pub fn report(&self) -> Vec<String> {
        if self.kinds.is_empty() {
            return Vec::new();
        }
        let mut lines = vec![format!(
            "{} bad input(s) skipped (--strict makes them fatal):",
            self.total()
        )];
        for (problem, (count, samples)) in &self.kinds {
            lines.push(format!(
                "  {problem}: {count} (e.g. {})",
                samples.join("; ")
            ));
        }
        lines
    }

    /// `{kind: {count, examples}}` for the manifest.
    pub fn to_json(&self) -> serde_json::Value {
        self.kinds
            .iter()
            .map(|(problem, (count, samples))| {
                (
                    problem.word().to_string(),
                    serde_json::json!({ "count": count, "examples": samples }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}
