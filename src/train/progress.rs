//! The training progress bar: one line on stderr, redrawn in place (steps done, loss, lr,
//! pairs/s, ETA), drawn only when stderr is a terminal and `--quiet` is off. The status
//! lines every `run.log_every` steps are printed above it, so logs keep them either way.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::ingest::progress::clock;

/// How often the bar is redrawn at most.
const REDRAW: Duration = Duration::from_millis(200);

/// Characters of the bar itself.
const WIDTH: usize = 24;

/// What the bar shows after a step.
#[derive(Debug, Clone, Copy)]
pub struct StepView {
    /// Steps done.
    pub step: u64,
    /// Steps this run will have done when it stops.
    pub total: u64,
    /// The step's loss.
    pub loss: f32,
    /// The step's learning rate.
    pub lr: f64,
    /// Pairs per second since this run started.
    pub pairs_per_s: f64,
    /// Seconds left at the current rate.
    pub eta: f64,
}

/// The bar.
#[derive(Debug)]
pub struct ProgressBar {
    enabled: bool,
    last: Option<Instant>,
    shown: Option<StepView>,
}

impl ProgressBar {
    /// A bar, drawn only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        ProgressBar {
            enabled,
            last: None,
            shown: None,
        }
    }

    /// Redraws the bar if enough time has passed since the last time (always on the last
    /// step).
    pub fn update(&mut self, view: StepView) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= REDRAW);
        if due || view.step == view.total {
            self.last = Some(now);
            self.shown = Some(view);
            draw(&format!("\r\x1b[2K{}", bar_line(&view)));
        }
    }

    /// Prints `text` as a line of its own above the bar.
    pub fn line(&mut self, text: &str) {
        if self.enabled && self.shown.is_some() {
            draw("\r\x1b[2K");
        }
        eprintln!("{text}");
        if let Some(view) = self.shown.filter(|_| self.enabled) {
            draw(&bar_line(&view));
        }
    }

    /// Erases the bar (before the final report).
    pub fn clear(&mut self) {
        if self.enabled && self.shown.take().is_some() {
            draw("\r\x1b[2K");
        }
    }
}

impl Drop for ProgressBar {
    /// An error ends the run with the bar erased, so its message starts a clean line.
    fn drop(&mut self) {
        self.clear();
    }
}

fn draw(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{text}");
    let _ = err.flush();
}

/// `[######------] 120/300  40%  loss 3.9505  lr 9.12e-4  1813 pairs/s  ETA 0:00:10`.
fn bar_line(v: &StepView) -> String {
    let share = if v.total == 0 {
        1.0
    } else {
        (v.step as f64 / v.total as f64).clamp(0.0, 1.0)
    };
    let filled = (share * WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {}/{}  {:.0}%  loss {:.4}  lr {:.2e}  {:.0} pairs/s  ETA {}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        v.step,
        v.total,
        share * 100.0,
        v.loss,
        v.lr,
        v.pairs_per_s,
        clock(v.eta.max(0.0))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_share_loss_lr_rate_and_eta() {
        let view = StepView {
            step: 120,
            total: 300,
            loss: 3.950_51,
            lr: 9.12e-4,
            pairs_per_s: 1813.2,
            eta: 10.4,
        };
        assert_eq!(
            bar_line(&view),
            "[##########--------------] 120/300  40%  loss 3.9505  lr 9.12e-4  1813 pairs/s  ETA 0:00:10"
        );
        let done = StepView {
            step: 300,
            eta: 0.0,
            ..view
        };
        assert!(bar_line(&done).starts_with(&format!("[{}] 300/300  100%", "#".repeat(WIDTH))));
    }
}
