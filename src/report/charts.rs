//! The report's charts as inline SVG (no scripts, no external files): the score histogram
//! with the threshold, and horizontal bar charts of counts.

use super::page::escape;

/// Kept rows' color; dropped rows' color; the threshold's.
pub const KEPT: &str = "#2e7d32";
/// See [`KEPT`].
pub const DROPPED: &str = "#9e9e9e";
const THRESHOLD: &str = "#c62828";

/// Counts of scores in equal-width bins over `[lo, hi]` (counted in SQL).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// The lower edge of the first bin.
    pub lo: f64,
    /// The upper edge of the last bin.
    pub hi: f64,
    /// Rows per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    fn edge(&self, i: usize) -> f64 {
        self.lo + (self.hi - self.lo) * i as f64 / self.counts.len() as f64
    }
}

/// The histogram as SVG: bars of kept bins (center at or above `threshold`) in [`KEPT`],
/// the others in [`DROPPED`], and the threshold as a dashed line.
pub fn histogram_svg(h: &Histogram, threshold: f64, label: &str) -> String {
    let (w, hgt, left, bottom, top) = (760.0, 240.0, 48.0, 36.0, 16.0);
    let plot_w = w - left - 12.0;
    let plot_h = hgt - bottom - top;
    let most = h.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = h.counts.len() as f64;
    let bar_w = plot_w / n;
    let span = (h.hi - h.lo).max(f64::MIN_POSITIVE);
    let x_of = |v: f64| left + ((v - h.lo) / span).clamp(0.0, 1.0) * plot_w;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" \
         viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    for (i, &c) in h.counts.iter().enumerate() {
        let center = (h.edge(i) + h.edge(i + 1)) / 2.0;
        let color = if center >= threshold { KEPT } else { DROPPED };
        let bh = plot_h * c as f64 / most;
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\">\
             <title>{:.4} to {:.4}: {c} rows</title></rect>",
            left + i as f64 * bar_w + 0.5,
            top + plot_h - bh,
            (bar_w - 1.0).max(0.5),
            h.edge(i),
            h.edge(i + 1),
        ));
    }
    let axis_y = top + plot_h;
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{:.1}\" y2=\"{axis_y}\" stroke=\"#333\"/>",
        left + plot_w
    ));
    for (v, anchor) in [(h.lo, "start"), (h.hi, "end")] {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"{anchor}\">{v:.3}</text>",
            x_of(v),
            axis_y + 16.0
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
        left - 6.0,
        top + 10.0,
        most as u64
    ));
    let tx = x_of(threshold);
    svg.push_str(&format!(
        "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{axis_y}\" stroke=\"{THRESHOLD}\" \
         stroke-width=\"2\" stroke-dasharray=\"5,3\"/>\
         <text x=\"{tx:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"{THRESHOLD}\">\
         threshold {threshold:.4}</text>",
        axis_y + 30.0
    ));
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars, one per `(label, count)`, longest first as given.
pub fn bars_svg(items: &[(String, u64)], color: &str, label: &str) -> String {
    let (w, row, left) = (760.0, 20.0, 260.0);
    let hgt = row * items.len() as f64 + 8.0;
    let most = items.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1) as f64;
    let plot_w = w - left - 70.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" \
         viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    for (i, (name, count)) in items.iter().enumerate() {
        let y = 4.0 + i as f64 * row;
        let bw = plot_w * *count as f64 / most;
        let shown: String = name.chars().take(40).collect();
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{count}</text>",
            left - 6.0,
            y + 14.0,
            escape(&shown),
            y + 3.0,
            row - 6.0,
            left + bw + 4.0,
            y + 14.0,
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_color_kept_bins_and_escape_labels() {
        let h = Histogram {
            lo: 0.0,
            hi: 1.0,
            counts: vec![1, 1],
        };
        let svg = histogram_svg(&h, 0.6, "scores");
        assert_eq!(svg.matches(KEPT).count(), 1, "{svg}");
        assert_eq!(svg.matches(DROPPED).count(), 1, "{svg}");
        assert!(svg.contains("threshold 0.6000"));
        let bars = bars_svg(&[("<b>".into(), 3), ("x".into(), 1)], KEPT, "tags");
        assert!(bars.contains("&lt;b&gt;") && !bars.contains("<b>"));
    }
}
