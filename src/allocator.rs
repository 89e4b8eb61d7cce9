//! Allocator tuning for model work, called first thing by both binaries.
//!
//! candle allocates a fresh buffer for every tensor an operation produces, and most of a
//! forward or backward pass's buffers are between a few hundred KiB and a few MiB. glibc
//! serves blocks above its mmap threshold (128 KiB at start, raised only when such a block is
//! freed) with a fresh `mmap`, so each operation paid for zeroed pages and page faults, and
//! each free for an `munmap` with a TLB shootdown across cores. Measured on the 2-core
//! machine: training spent about a third of its time in the kernel, and `dfn_score` about a
//! sixth. Serving blocks up to 32 MiB (glibc's largest threshold) from the heap and keeping
//! up to 256 MiB of freed memory for reuse removes that; the figures are in the commit that
//! introduced this file.
//!
//! glibc also gives every thread that allocates an arena of its own, up to eight per core,
//! and each arena keeps its freed memory (the threshold above is per arena). Decoding,
//! Parquet and tokio's blocking threads come and go, so over a long query more and more
//! arenas held memory: `dfn_score` over a 100k-row pool peaked at 1.42x the RSS of a
//! 10k-row one, 1.20x with arenas capped at two, in the same time.
//!
//! Only glibc has `mallopt`; elsewhere this does nothing.

/// Blocks at most this large come from the heap, not from their own `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Freed memory at the top of the heap up to this size is kept for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 << 20;

/// Arenas at most: one per core, up to this many (glibc's default is eight per core).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAX_ARENAS: usize = 8;

/// Applies the tuning; a setting glibc refuses leaves its default in place.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune() {
    let arenas = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_ARENAS) as libc::c_int;
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists, and the values are within the ranges glibc documents.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Applies the tuning (nothing to do on this platform).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
