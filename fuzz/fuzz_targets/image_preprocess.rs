//! Encoded image bytes through decode, resize and center crop, as a checkpoint's
//! `Preprocessor` runs them. Contract: any bytes give Ok or a typed `DecodeError`, never a
//! panic, hang or unbounded allocation; Ok output is 3×H×W of the crop, and finite.
//!
//! The first input byte picks the configuration (the rest is the image), so the fuzzer
//! explores CLIP's 224 pipeline and a small 32 one with either filter and resize mode.
//!
//! `decode_rgb` catches a panic in the image codecs (third-party code) and returns it as a
//! corrupt image. libfuzzer-sys's panic hook aborts on every panic, caught or not, so this
//! target puts a hook back that only reports: a panic that escapes the target still ends
//! in libfuzzer-sys's abort, a finding, after its message is printed.
#![no_main]

use std::collections::HashSet;
use std::sync::{Mutex, Once};

use hqflow_udfs::models::preprocess::Preprocessor;
use libfuzzer_sys::fuzz_target;

/// Replaces the aborting panic hook with one that prints each panic location once.
fn report_panics_without_aborting() {
    static ONCE: Once = Once::new();
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
            if seen.get_or_insert_with(HashSet::new).insert(place) {
                eprintln!("panic (printed once per location): {info}");
            }
        }));
    });
}

/// The configuration selected by `sel`: bit 0 crop 224 or 32, bit 1 shortest-edge resize
/// or squash to height×width, bit 2 bicubic or bilinear, bit 3 with or without center crop
/// (only with squash: a shortest-edge resize without a crop has no fixed output size).
fn config(sel: u8) -> (String, (u32, u32)) {
    let n: u32 = if sel & 1 == 0 { 224 } else { 32 };
    let resample = if sel & 4 == 0 { 3 } else { 2 };
    let squash = sel & 2 != 0;
    let size = if squash {
        format!(r#"{{"height": {n}, "width": {n}}}"#)
    } else {
        format!(r#"{{"shortest_edge": {n}}}"#)
    };
    let crop = !squash || sel & 8 == 0;
    let json = format!(
        r#"{{"do_resize": true, "size": {size}, "resample": {resample},
            "do_center_crop": {crop}, "crop_size": {{"height": {n}, "width": {n}}},
            "do_rescale": true, "rescale_factor": 0.00392156862745098,
            "do_normalize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711]}}"#
    );
    (json, (n, n))
}

fuzz_target!(|data: &[u8]| {
    report_panics_without_aborting();
    let Some((&sel, image)) = data.split_first() else {
        return;
    };
    let (json, (h, w)) = config(sel);
    let pre = Preprocessor::from_json(&json).expect("the fuzz configs are valid");
    let want = 3 * h as usize * w as usize;
    if sel & 16 == 0 {
        if let Ok(planes) = pre.crop_bytes(image) {
            assert_eq!(planes.len(), want);
        }
    } else if let Ok(values) = pre.process_bytes(image) {
        assert_eq!(values.len(), want);
        assert!(values.iter().all(|v| v.is_finite()));
    }
});
