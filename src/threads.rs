//! How many threads candle's CPU backend uses, fixed once at start.
//!
//! Two of candle's defaults cost hqflow's model work on the CPU:
//!
//! - candle asks for its matrix-product thread count on every product
//!   (`candle_core::utils::get_num_threads`; our kernels' dense layers ask too). Unless
//!   `RAYON_NUM_THREADS` is set, each ask counts physical cores by reading and parsing
//!   `/proc/cpuinfo` (`num_cpus::get_physical`, not cached): a syscall and a parse on the
//!   forward thread per product, 2.4% of `dfn_score`'s CPU samples. With the variable set to
//!   the count candle computes anyway, an ask is an environment lookup.
//! - candle runs element-wise operations over 64Ki elements on a pool of its own
//!   (`CANDLE_NUM_THREADS` threads, the caller being one of them) whose workers spin for
//!   25,000 pauses after each operation before they sleep. In `dfn_score` the image decoding
//!   needs those cores: on 2 cores the spinning worker took 16% of the CPU samples and the
//!   forward thread 11% more waiting for it, and with one thread (no pool) a 10k-row
//!   `dfn_score` ran 1.45x faster (7.40 -> 5.10 s). Training ran at the same rate with 17% less
//!   CPU. So one thread, unless the user sets `CANDLE_NUM_THREADS`; matrix products stay
//!   parallel on rayon.
//!
//! rayon's global pool, which our kernels run on, also reads `RAYON_NUM_THREADS` when it is
//! first used; where its own default (the logical cores) differs from candle's count (SMT), it
//! is built here first at that default, so its size does not change. Where they agree it is
//! left to start when first used.

/// Element-wise operations run on the calling thread (see the module comment).
const CANDLE_ELEMENTWISE_THREADS: &str = "1";

/// Fixes candle's thread counts for the process; a variable the user set is left alone.
/// Call it first thing in `main`, before any other thread exists.
#[allow(unsafe_code)]
pub fn pin() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet (the caller's contract), so nothing reads the
        // environment while it changes.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", CANDLE_ELEMENTWISE_THREADS) };
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let logical = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let candle = candle_core::utils::get_num_threads();
    // SAFETY: as above.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", candle.to_string()) };
    if logical != candle {
        // Fails only if the global pool already exists, which then keeps its size.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(logical)
            .build_global();
    }
}
