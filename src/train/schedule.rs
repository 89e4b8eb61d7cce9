//! The learning-rate schedule: linear warmup, then cosine decay to zero, as open_clip's
//! `cosine_lr` computes it.

/// The learning rate at 0-based `step` of `total`, peaking at `base` after `warmup` steps.
pub fn cosine_lr(base: f64, warmup: u64, total: u64, step: u64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let e = (step - warmup) as f64;
    0.5 * (1.0 + (std::f64::consts::PI * e / span).cos()) * base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays() {
        assert!((cosine_lr(1.0, 10, 110, 0) - 0.1).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 110, 9) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 110, 10) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 110, 60) - 0.5).abs() < 1e-12);
        assert!(cosine_lr(1.0, 10, 110, 109) < 0.001);
        assert!((cosine_lr(1.0, 0, 10, 0) - 1.0).abs() < 1e-12);
    }
}
