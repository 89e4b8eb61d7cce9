//! A one-line progress display on stderr (rows, bad input, share done, ETA), drawn only when
//! stderr is a terminal and `--quiet` is off.

use std::io::Write;
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(200);

/// The progress line.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
    total: u64,
    unit: &'static str,
}

impl Progress {
    /// A progress line, drawn only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            started: Instant::now(),
            last: None,
            total: 0,
            unit: "",
        }
    }

    /// Sets the amount of work (in `unit`s: "bytes", "files", "rows") the ETA is measured on.
    pub fn set_total(&mut self, total: u64, unit: &'static str) {
        self.total = total;
        self.unit = unit;
    }

    /// Redraws the line if enough time has passed: `done` of the total, `rows` written,
    /// `problems` counted.
    pub fn update(&mut self, done: u64, rows: u64, problems: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < REDRAW)
        {
            return;
        }
        self.last = Some(now);
        let line = self.line(done, rows, problems, now.duration_since(self.started));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    fn line(&self, done: u64, rows: u64, problems: u64, elapsed: Duration) -> String {
        let mut line = format!("ingest: {rows} rows, {problems} bad");
        if self.total > 0 {
            let share = (done as f64 / self.total as f64).clamp(0.0, 1.0);
            let total = if self.unit == "bytes" {
                format!("{:.0} MB", self.total as f64 / 1e6)
            } else {
                format!("{} {}", self.total, self.unit)
            };
            line.push_str(&format!(", {:.0}% of {total}", share * 100.0));
            if share > 0.0 {
                let left = elapsed.as_secs_f64() * (1.0 - share) / share;
                line.push_str(&format!(", ETA {}", clock(left)));
            }
        }
        line
    }

    /// Erases the line (before the final report).
    pub fn clear(&mut self) {
        if self.enabled && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// `h:mm:ss` of a number of seconds.
pub(crate) fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_counts_share_and_eta() {
        let mut p = Progress::new(true);
        p.set_total(200, "files");
        let line = p.line(50, 40, 2, Duration::from_secs(10));
        assert_eq!(
            line,
            "ingest: 40 rows, 2 bad, 25% of 200 files, ETA 0:00:30"
        );
    }
}
