//! The model thread count, worked out once at start instead of on every matrix product.
//!
//! candle asks for its thread count on every CPU matrix product
//! (`candle_core::utils::get_num_threads`; our kernels' dense layers ask too). Unless
//! `RAYON_NUM_THREADS` is set, each ask counts physical cores by reading and parsing
//! `/proc/cpuinfo` (`num_cpus::get_physical`, not cached): a syscall and a parse on the
//! forward thread per product, 2.4% of `dfn_score`'s CPU samples. With the variable set to
//! the count candle computes anyway, an ask is an environment lookup. rayon's global pool,
//! which our kernels run on, also reads the variable when it is first used; where its own
//! default (the logical cores) differs from candle's count (SMT), it is built here first at
//! that default, so that only candle's answer is fixed, not how many threads anything runs.
//! Where they agree it is left to start when first used: built here, its threads took their
//! glibc arenas before tokio's and the peak RSS of a 10k-row `dfn_score` rose 129 -> 142 MiB.

/// Fixes candle's thread count for the process (nothing when the user set
/// `RAYON_NUM_THREADS`). Call it first thing in `main`, before any other thread exists.
#[allow(unsafe_code)]
pub fn pin() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let logical = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let candle = candle_core::utils::get_num_threads();
    // SAFETY: no other thread exists yet (the caller's contract), so nothing reads the
    // environment while it changes.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", candle.to_string()) };
    if logical != candle {
        // Fails only if the global pool already exists, which then keeps its size.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(logical)
            .build_global();
    }
}
