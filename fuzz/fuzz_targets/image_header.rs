//! The ingest header sniffer (`hqflow::ingest::image_header::dimensions`): any bytes give
//! positive dimensions or an error message, never a panic, hang or big allocation.
//!
//! The module is compiled from its source file rather than through the `hqflow` crate, so
//! this target builds with the `image` crate alone (the root crate would bring DataFusion,
//! object stores and the rest under the fuzzer's instrumentation). The module depends on
//! nothing but `image`; if that changes, depend on `hqflow` instead.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/ingest/image_header.rs"]
#[allow(dead_code, missing_docs)]
mod image_header;

fuzz_target!(|data: &[u8]| {
    if let Ok((w, h)) = image_header::dimensions(data) {
        assert!(w > 0 && h > 0, "{w}x{h}");
    }
});
