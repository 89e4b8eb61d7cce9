//! Per-row errors of model functions: counted by function and reason, with a few samples,
//! so a run can say at the end what it could not compute and why.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Samples kept per (function, reason).
const SAMPLES: usize = 3;

/// One (function, reason) line of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowErrorSummary {
    /// The SQL function.
    pub function: String,
    /// The reason, stable for counting (e.g. "not an image").
    pub reason: String,
    /// How many rows.
    pub count: u64,
    /// Details of the first few.
    pub samples: Vec<String>,
}

/// (function, reason) → (count, sample details).
type Tally = BTreeMap<(String, String), (u64, Vec<String>)>;

/// The error tally of one session (shared by all its queries and partitions).
#[derive(Debug, Default)]
pub struct RowErrors {
    tally: Mutex<Tally>,
}

impl RowErrors {
    /// Counts one failed row.
    pub fn record(&self, function: &str, reason: &str, detail: &str) {
        let Ok(mut tally) = self.tally.lock() else {
            return;
        };
        let entry = tally
            .entry((function.to_string(), reason.to_string()))
            .or_default();
        entry.0 += 1;
        if entry.1.len() < SAMPLES {
            entry.1.push(detail.to_string());
        }
    }

    /// All counts so far, ordered by function and reason.
    pub fn summary(&self) -> Vec<RowErrorSummary> {
        let Ok(tally) = self.tally.lock() else {
            return Vec::new();
        };
        tally
            .iter()
            .map(|((function, reason), (count, samples))| RowErrorSummary {
                function: function.clone(),
                reason: reason.clone(),
                count: *count,
                samples: samples.clone(),
            })
            .collect()
    }
}
