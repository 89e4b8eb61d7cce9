//! The allocator of `hqflow` (queries): large blocks in mappings of their own, kept for
//! reuse; everything else from glibc, tuned. `hqflow-train` keeps glibc for everything (see
//! [`Workload::Training`]).
//!
//! candle allocates a fresh buffer for every tensor an operation produces, and most of a
//! forward or backward pass's buffers are between a few hundred KiB and a few MiB. Left to
//! glibc those blocks either came from a fresh `mmap` each (glibc's default for blocks above
//! its threshold: zeroed pages, page faults, and an `munmap` with a TLB shootdown across cores
//! per free — about a third of training's time and a sixth of `dfn_score`'s went to the
//! kernel), or, with the threshold raised, from glibc's heap. The heap was fast but
//! fragmented over long queries: tensors freed between long-lived small allocations (Parquet
//! writers, DataFusion's state) leave holes that later blocks do not fit, so the heap grew
//! all through a run — scoring a million rows ended with 40 MB of free chunks in a 110 MB
//! heap, and peak RSS 1.55x that of 10,000 rows.
//!
//! So blocks of [`LARGE`] bytes or more bypass the heap: each is a mapping of its own,
//! rounded up to a size class (four per doubling), and a freed one is cached to serve the
//! next request of its class (a forward pass asks for the same sizes batch after batch): no
//! page faults, no `munmap`, nothing left in the heap to fragment it. The cache is held to
//! the peak: blocks in use and cached together stay within the most ever in use at once,
//! plus a sixteenth; a request that must map a new block first unmaps cached blocks of the
//! classes asked for least recently. A request its class cannot serve takes a cached block
//! of up to one doubling larger and gives back the excess. Growing a large block (`Vec`
//! doubling) remaps it instead of copying it.
//!
//! glibc also gives every thread that allocates an arena of its own, up to eight per core,
//! and each arena keeps its freed memory. Decoding, Parquet and tokio's blocking threads come
//! and go, so over a long query more and more arenas held memory: `dfn_score` over a
//! 100k-row pool peaked at 1.42x the RSS of a 10k-row one, 1.20x with arenas capped at two.
//!
//! Only Linux with glibc gets any of this; elsewhere [`Allocator`] is the system allocator
//! and [`tune`] does nothing.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large get a mapping of their own.
pub const LARGE: usize = 256 << 10;

/// Freed large blocks kept for reuse at most, in bytes of their size classes.
pub const CACHE_BYTES: usize = 256 << 20;

/// The allocator `hqflow` installs as `#[global_allocator]`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allocator;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod large {
    //! Large blocks: size classes, the mappings, and the cache of freed ones.

    use std::ptr::null_mut;
    use std::sync::Mutex;

    use super::{CACHE_BYTES, LARGE};

    /// Alignment every mapping has (the smallest page size Linux uses).
    pub const ALIGN: usize = 4096;

    /// Size classes per doubling of the size.
    const STEPS: usize = 4;
    const LARGE_BITS: usize = LARGE.trailing_zeros() as usize;
    /// Classes from `LARGE` up to 2^63 bytes.
    const CLASSES: usize = (64 - LARGE_BITS) * STEPS;
    /// How many classes above its own a request may take a cached block from (one
    /// doubling): at most half of the block is given back.
    const REUSE_ABOVE: usize = STEPS;

    /// The class of a block of `size >= LARGE` bytes.
    pub fn class_of(size: usize) -> usize {
        let bits = (usize::BITS - 1 - size.leading_zeros()) as usize;
        let step = 1usize << (bits - 2);
        // Steps above 2^bits, rounded up; 4 of them is the next doubling's first class.
        let steps = (size - (1 << bits)).div_ceil(step);
        (bits - LARGE_BITS) * STEPS + steps
    }

    /// Bytes of class `class`.
    pub fn class_bytes(class: usize) -> usize {
        let bits = LARGE_BITS + class / STEPS;
        (1usize << bits) + (class % STEPS) * (1usize << (bits - 2))
    }

    /// Freed blocks by class (each list linked through its blocks' first word) and the
    /// bytes, in whole classes, of large blocks cached and in use.
    struct Cache {
        heads: [*mut u8; CLASSES],
        /// When each class was last asked for, counted in requests.
        asked: [u64; CLASSES],
        requests: u64,
        cached: usize,
        live: usize,
        /// The most bytes in use at once so far.
        high: usize,
    }

    // SAFETY: the pointers are mappings owned by the cache; the mutex serializes access.
    unsafe impl Send for Cache {}

    static CACHE: Mutex<Cache> = Mutex::new(Cache {
        heads: [null_mut(); CLASSES],
        asked: [0; CLASSES],
        requests: 0,
        cached: 0,
        live: 0,
        high: 0,
    });

    /// Blocks unmapped per pass of eviction, outside the lock.
    const EVICT_BATCH: usize = 16;

    impl Cache {
        /// Blocks in use and cached together may take the most bytes ever in use at once
        /// (plus a sixteenth, against churn), so the cache does not raise the peak, it only
        /// keeps what the peak already held; and never more than `CACHE_BYTES` cached.
        fn over_budget(&self) -> bool {
            self.live + self.cached > self.high + self.high / 16 || self.cached > CACHE_BYTES
        }

        fn pop(&mut self, class: usize) -> *mut u8 {
            let p = self.heads[class];
            // SAFETY: a cached block's first word holds the next block of its list.
            self.heads[class] = unsafe { p.cast::<*mut u8>().read() };
            self.cached -= class_bytes(class);
            p
        }

        /// Takes out cached blocks of the classes asked for least recently until within
        /// budget, at most `EVICT_BATCH` of them, for the caller to unmap.
        fn evict(&mut self, out: &mut [(*mut u8, usize); EVICT_BATCH]) -> usize {
            let mut n = 0;
            while n < EVICT_BATCH && self.cached > 0 && self.over_budget() {
                let Some(class) = (0..CLASSES)
                    .filter(|&c| !self.heads[c].is_null())
                    .min_by_key(|&c| self.asked[c])
                else {
                    break;
                };
                out[n] = (self.pop(class), class_bytes(class));
                n += 1;
            }
            n
        }
    }

    fn map(bytes: usize) -> *mut u8 {
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            null_mut()
        } else {
            p.cast()
        }
    }

    /// # Safety
    /// `p..p+bytes` is a mapping (or the tail of one) nothing uses any more.
    unsafe fn unmap(p: *mut u8, bytes: usize) {
        // SAFETY: per the contract. A failed munmap only leaks the range.
        unsafe { libc::munmap(p.cast(), bytes) };
    }

    /// Unmaps cached blocks until the cache is within its budget.
    fn shrink() {
        let mut out = [(null_mut(), 0); EVICT_BATCH];
        loop {
            let n = match CACHE.lock() {
                Ok(mut cache) => cache.evict(&mut out),
                Err(_) => 0,
            };
            for &(p, bytes) in &out[..n] {
                // SAFETY: evicted blocks are out of the cache and unused.
                unsafe { unmap(p, bytes) };
            }
            if n < EVICT_BATCH {
                return;
            }
        }
    }

    /// A block for `size >= LARGE` bytes and whether its memory is known to be zero.
    pub fn alloc(size: usize) -> (*mut u8, bool) {
        let class = class_of(size);
        let bytes = class_bytes(class);
        // A cached block of this class or up to REUSE_ABOVE classes above, with its class.
        let taken = {
            let Ok(mut cache) = CACHE.lock() else {
                return (map(bytes), true);
            };
            cache.requests += 1;
            cache.asked[class] = cache.requests;
            cache.live += bytes;
            cache.high = cache.high.max(cache.live);
            let last = (class + REUSE_ABOVE).min(CLASSES - 1);
            (class..=last)
                .find(|&c| !cache.heads[c].is_null())
                .map(|found| (cache.pop(found), found))
        };
        match taken {
            Some((p, found)) => {
                if found != class {
                    // SAFETY: the tail beyond this class's bytes belongs to the block taken.
                    unsafe { unmap(p.add(bytes), class_bytes(found) - bytes) };
                }
                (p, false)
            }
            None => {
                shrink();
                let p = map(bytes);
                if p.is_null()
                    && let Ok(mut cache) = CACHE.lock()
                {
                    cache.live -= bytes;
                }
                (p, true)
            }
        }
    }

    /// Frees a block `alloc(size)` returned.
    ///
    /// # Safety
    /// `p` came from [`alloc`] (or [`realloc`]) with this `size` and is no longer used.
    pub unsafe fn free(p: *mut u8, size: usize) {
        let class = class_of(size);
        let bytes = class_bytes(class);
        if let Ok(mut cache) = CACHE.lock() {
            // Saturating: a block mapped while the lock was poisoned was never counted.
            cache.live = cache.live.saturating_sub(bytes);
            if cache.cached + bytes <= CACHE_BYTES {
                // SAFETY: the block is ours now; its first word links it into the list.
                unsafe { p.cast::<*mut u8>().write(cache.heads[class]) };
                cache.heads[class] = p;
                cache.cached += bytes;
                return;
            }
        }
        // SAFETY: per the contract, the whole class-sized mapping is unused.
        unsafe { unmap(p, bytes) };
    }

    /// Resizes a block from `old` to `new` bytes (both at least `LARGE`), moving it by
    /// remapping its pages rather than copying them.
    ///
    /// # Safety
    /// `p` came from [`alloc`] (or this function) with size `old` and is not used elsewhere.
    pub unsafe fn realloc(p: *mut u8, old: usize, new: usize) -> *mut u8 {
        let (from, to) = (class_bytes(class_of(old)), class_bytes(class_of(new)));
        if from == to {
            return p;
        }
        // SAFETY: `p..p+from` is this block's whole mapping.
        let q = unsafe { libc::mremap(p.cast(), from, to, libc::MREMAP_MAYMOVE) };
        if q == libc::MAP_FAILED {
            return null_mut();
        }
        if let Ok(mut cache) = CACHE.lock() {
            cache.live = cache.live.saturating_sub(from) + to;
            cache.high = cache.high.max(cache.live);
        }
        if to > from {
            shrink();
        }
        q.cast()
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn is_large(layout: Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= large::ALIGN
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
// SAFETY: large blocks are page-aligned mappings of at least their size, freed with the size
// they were allocated with (GlobalAlloc's contract), which gives back their class; all other
// requests go to the system allocator unchanged.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            large::alloc(layout.size()).0
        } else {
            // SAFETY: the caller's layout, passed on.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_large(layout) {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let (p, zeroed) = large::alloc(layout.size());
        if !p.is_null() && !zeroed {
            // SAFETY: the block holds at least `layout.size()` bytes.
            unsafe { p.write_bytes(0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout) {
            // SAFETY: a large layout's block came from `large::alloc` with this size.
            unsafe { large::free(ptr, layout.size()) }
        } else {
            // SAFETY: a small layout's block came from the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (for `new`): GlobalAlloc's contract makes the new size valid for the align.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(layout), is_large(new)) {
            // SAFETY: the block and its size as the caller has them.
            (true, true) => unsafe { large::realloc(ptr, layout.size(), new_size) },
            // SAFETY: as above, for the system allocator's block.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: a fresh block of the new layout; the old one is live until freed.
                let fresh = unsafe { self.alloc(new) };
                if !fresh.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and do not overlap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                fresh
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[allow(unsafe_code)]
// SAFETY: every call goes to the system allocator unchanged.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What a process mostly does, which decides how glibc is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Queries (`hqflow`): [`Allocator`] is the global allocator, so glibc only sees blocks
    /// below [`LARGE`] and C libraries' buffers, which it maps from [`LARGE`] up as
    /// [`Allocator`] would, and each arena returns the free memory at its top beyond 1 MiB
    /// (see [`QUERY_HEAP_TOP`]).
    Queries,
    /// Training (`hqflow-train`): the system allocator serves everything, from glibc's heap
    /// up to 32 MiB (its largest threshold) with up to 256 MiB of freed memory kept. A
    /// training step's forward and backward passes ask for different sizes, which glibc's
    /// heap splits and coalesces; the size-class cache held to the peak evicted one phase's
    /// blocks in the other and mapped them afresh every step (19% slower), and without that
    /// hold it kept 430 MiB instead of 245 (and was still 8% slower).
    Training,
}

/// Arenas at most: one per core, up to this many (glibc's default is eight per core).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAX_ARENAS: usize = 8;

/// How much free memory at the top of each of glibc's arenas a query keeps: glibc returns
/// the rest to the system once the top reaches it (`M_TRIM_THRESHOLD`), down to the same
/// amount (`M_TOP_PAD`, which also pads each growth). Decoding, tokenizing and a small
/// model's activations (a 64 px ViT's are about 140 KB a tensor) come and go below
/// [`LARGE`] with every batch, so what an arena keeps is held through the run: a
/// million-row COPY peaked at 65-66 MB of anonymous memory with 16 MiB kept (hqflow's
/// setting before), 66 with 4 MiB, 62 with 2 MiB and 58-60 with 1 MiB. Trimming down to
/// glibc's default pad of 128 KiB instead of 1 MiB cost 3% more CPU over 10,000 rows (the
/// next batch faulted the pages back in); with the 1 MiB pad, 1.3% (within noise).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const QUERY_HEAP_TOP: usize = 1 << 20;

/// Tunes glibc for `workload`; call first thing, before other threads exist. A setting
/// glibc refuses leaves its default in place.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune(workload: Workload) {
    // glibc's default top pad is 128 KiB.
    let (mmap_threshold, trim_threshold, top_pad) = match workload {
        Workload::Queries => (LARGE, QUERY_HEAP_TOP, QUERY_HEAP_TOP),
        Workload::Training => (32 << 20, 256 << 20, 128 << 10),
    };
    let arenas = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_ARENAS) as libc::c_int;
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists, and the values are within the ranges glibc documents.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold as libc::c_int);
        libc::mallopt(libc::M_TOP_PAD, top_pad as libc::c_int);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Applies the tuning (nothing to do on this platform).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune(_workload: Workload) {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_sizes_with_at_most_a_quarter_to_spare() {
        for size in (LARGE..LARGE * 64)
            .step_by(4093)
            .chain([LARGE, 1 << 30, usize::MAX / 2])
        {
            let class = large::class_of(size);
            let bytes = large::class_bytes(class);
            assert!(bytes >= size, "{size} in class {class} of {bytes}");
            assert!(
                bytes - size <= size / 4,
                "{size} in class {class} of {bytes}"
            );
            assert!(class == 0 || large::class_bytes(class - 1) < size);
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("a valid layout")
    }

    fn filled(layout: Layout, byte: u8) -> *mut u8 {
        // SAFETY: a valid non-zero layout; the block is written within its size.
        unsafe {
            let p = Allocator.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % layout.align(), 0);
            p.write_bytes(byte, layout.size());
            p
        }
    }

    #[test]
    fn large_blocks_are_reused_and_zeroed_on_request() {
        let layout = layout(3 * LARGE + 5, 64);
        let p = filled(layout, 0xab);
        // SAFETY: blocks from this allocator, freed with their layouts.
        unsafe {
            Allocator.dealloc(p, layout);
            let q = Allocator.alloc_zeroed(layout);
            assert!(!q.is_null());
            assert!(
                std::slice::from_raw_parts(q, layout.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            Allocator.dealloc(q, layout);
        }
    }

    #[test]
    fn realloc_keeps_contents_across_small_and_large() {
        let small = layout(1000, 8);
        let p = filled(small, 7);
        // SAFETY: each pointer is the live block of the layout it is passed with.
        unsafe {
            let grown = Allocator.realloc(p, small, 5 * LARGE);
            assert!(
                std::slice::from_raw_parts(grown, 1000)
                    .iter()
                    .all(|&b| b == 7)
            );
            let large = layout(5 * LARGE, 8);
            grown.add(1000).write_bytes(9, 5 * LARGE - 1000);
            let doubled = Allocator.realloc(grown, large, 11 * LARGE);
            let bytes = std::slice::from_raw_parts(doubled, 5 * LARGE);
            assert!(bytes[..1000].iter().all(|&b| b == 7));
            assert!(bytes[1000..].iter().all(|&b| b == 9));
            let large = layout(11 * LARGE, 8);
            let shrunk = Allocator.realloc(doubled, large, 10);
            assert!(
                std::slice::from_raw_parts(shrunk, 10)
                    .iter()
                    .all(|&b| b == 7)
            );
            Allocator.dealloc(shrunk, layout(10, 8));
        }
    }

    #[test]
    fn over_aligned_blocks_go_to_the_system_allocator() {
        let layout = layout(2 * LARGE, 1 << 16);
        let p = filled(layout, 1);
        // SAFETY: the block from `filled`, freed with its layout.
        unsafe { Allocator.dealloc(p, layout) };
    }
}
