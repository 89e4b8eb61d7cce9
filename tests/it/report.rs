//! `hqflow report`: the HTML page over a world pool scored by the built-in DFN, with a
//! hostile alt-text and an undecodable image among the rows, its plan errors, and (where
//! Chromium is installed) a headless screenshot of the page.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::support::hqflow_in;

/// The pool, scored in the query; the smallest uid gets the top score, an undecodable image
/// and a script for an alt-text, so it lands in the "kept, the best" grid.
const QUERY: &str = "SELECT uid, truth_quality, long_pos, long_neg, short_pos, short_neg, \
     CASE WHEN uid = (SELECT min(uid) FROM pool) THEN arrow_cast('not an image', 'Binary') \
          ELSE img END AS img, \
     CASE WHEN uid = (SELECT min(uid) FROM pool) THEN '<script>alert(1)</script>' \
          ELSE txt END AS txt, \
     CASE WHEN uid = (SELECT min(uid) FROM pool) THEN 2.0 \
          ELSE dfn_score(img, txt) END AS dfn_score \
     FROM pool";

fn pool(dir: &Path) {
    hqflow_in(
        dir,
        &[
            "world", "seed", "--rows", "240", "--seed", "4", "--size", "32", "--out", "pool",
        ],
    )
    .ok();
}

#[test]
fn the_report_shows_scores_tags_and_rows_around_the_threshold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    pool(d);
    hqflow_in(
        d,
        &[
            "report",
            "-t",
            "pool=pool",
            "--query",
            QUERY,
            "--grid",
            "6",
            "--out",
            "r.html",
        ],
    )
    .ok();
    let html = fs::read_to_string(d.join("r.html")).expect("the report");
    for section in [
        "<h2>Scores</h2>",
        "<h2>Most frequent positive tags</h2>",
        "<h2>Most frequent negative tags</h2>",
        "<h2>Kept, just above the threshold</h2>",
        "<h2>Dropped, just below the threshold</h2>",
        "<h2>Kept, the best</h2>",
        "<h2>Dropped, the worst</h2>",
    ] {
        assert!(html.contains(section), "no {section}");
    }
    // Self-contained and inert: no scripts, no external resources, the hostile text escaped.
    assert!(!html.contains("<script"), "unescaped script");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("src=\"http") && !html.contains("href="));
    // The bad image is a placeholder on its card, not a failed report.
    assert!(html.contains("undecodable image"));
    // Four grids of 6 cards, one of them the bad image: 23 thumbnails or more (the NULL-score
    // grid adds the rows without alt-text).
    let thumbnails = html.matches("<img src=\"data:image/png;base64,").count();
    assert!(thumbnails >= 23, "{thumbnails} thumbnails");
    // The top 30% of the scored rows are kept (the 22 rows without alt-text have no score).
    assert!(html.contains("kept</td><td>"), "no kept fact");
    assert!(
        html.contains("world") || html.contains("correct"),
        "truth not shown"
    );

    if let Some(chromium) = chromium() {
        screenshot(&chromium, &d.join("r.html"), &d.join("r.png"));
    }
}

#[test]
fn bad_report_arguments_are_plan_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    pool(d);
    hqflow_in(d, &["report", "-t", "pool=pool", "--out", "r.html"]).fails_with(
        1,
        &[
            "lack column(s) dfn_score",
            "they have: uid",
            "dfn_score(img, txt)",
        ],
    );
    hqflow_in(
        d,
        &[
            "report",
            "-t",
            "pool=pool",
            "--score",
            "width",
            "--keep-top",
            "1.5",
            "--out",
            "r.html",
        ],
    )
    .fails_with(1, &["--keep-top must be in (0, 1]"]);
    hqflow_in(
        d,
        &[
            "report",
            "-t",
            "pool=pool",
            "--score",
            "txt",
            "--out",
            "r.html",
        ],
    )
    .fails_with(1, &["score column 'txt'", "not a number"]);
    hqflow_in(
        d,
        &[
            "report",
            "-t",
            "pool=pool",
            "--query",
            "SELECT txt AS img, txt, width FROM pool",
            "--score",
            "width",
            "--out",
            "r.html",
        ],
    )
    .fails_with(1, &["column 'img'", "not binary"]);
    assert!(!d.join("r.html").exists(), "a failed report wrote its file");
    // Tags that are text rather than lists are left out, not an error.
    hqflow_in(
        d,
        &[
            "report",
            "-t",
            "pool=pool",
            "--query",
            "SELECT img, txt, width, array_to_string(short_pos, ', ') AS short_pos FROM pool",
            "--score",
            "width",
            "--grid",
            "2",
            "--out",
            "text_tags.html",
        ],
    )
    .ok();
    let html = fs::read_to_string(d.join("text_tags.html")).expect("the report");
    assert!(!html.contains("Most frequent positive tags"));
}

/// Chromium, when installed (tests/run.sh installs Debian's); None with a line saying the
/// screenshot is skipped, unless HQFLOW_REQUIRE_CHROMIUM=1 makes its absence a failure.
fn chromium() -> Option<String> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(name.to_string());
        }
    }
    assert!(
        std::env::var("HQFLOW_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
        "HQFLOW_REQUIRE_CHROMIUM=1 but no chromium is installed"
    );
    eprintln!("report test: SKIPPED the screenshot: no chromium on PATH");
    None
}

/// Renders the page headless and checks the picture: the size asked for, not blank, and the
/// kept color of the histogram and card borders on screen.
fn screenshot(chromium: &str, html: &Path, png: &Path) {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1400",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs");
    assert!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = image::open(png).expect("the screenshot decodes").to_rgb8();
    assert_eq!(image.dimensions(), (1000, 1400));
    let kept = image.pixels().filter(|p| p.0 == [0x2e, 0x7d, 0x32]).count();
    let white = image.pixels().filter(|p| p.0 == [255, 255, 255]).count();
    assert!(kept > 500, "{kept} pixels of the kept color");
    assert!(
        white < image.pixels().len() * 95 / 100,
        "the page rendered (nearly) blank"
    );
}
