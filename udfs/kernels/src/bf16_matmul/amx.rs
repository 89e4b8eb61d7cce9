//! The bfloat16 dense layer on AMX tiles (Intel Xeons from Sapphire Rapids on). One
//! `TDPBF16PS` multiplies a 16×32 bfloat16 tile by a 32×16 one into 16×16 f32 sums, 16,384
//! flops, where `VDPBF16PS` does 64: measured on a 2-core Xeon VM, 3,500 GFLOP/s per core on
//! register tiles against ~240 for 512-bit f32 FMAs. PyTorch's bf16 (oneDNN) runs on these
//! tiles, which is why it ran at twice hqflow's f32 there while our `VDPBF16PS` kernel did no
//! better than f32.
//!
//! Rust has no stable AMX intrinsics, so the tile instructions are inline assembly. Linux
//! hands out the 8 KB of tile state only to processes that ask (`arch_prctl`), once.
//!
//! Blocking: a block of [`MB`] rows × [`NR`] columns is four 16×16 accumulator tiles (two
//! A tiles of rows, two B tiles of columns: all eight tile registers) held over the whole K.
//! The weights' packing is already what a B tile loads: K pairs × 16 columns, a panel row
//! 128 bytes. A task converts its rows to bfloat16 pairs once, one contiguous 1 KB piece
//! per A tile; groups of weight panels small enough to stay in L2 ([`GROUP_BYTES`]) then
//! pass over every row block. Operands start on cache lines (a tile row across two lines
//! halves the speed). Each block's sums go straight into the output where it is whole and
//! has no activation to apply, else through a buffer and the epilogue. (Copying a buffer
//! out one block later, so as not to read what the tiles just stored, measured slower.)

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Epilogue, NR, PackedWeight, kernel::to_pairs};
use crate::activation::simd;
use crate::aligned::Aligned;

/// K pairs per tile step: a tile row is 64 bytes, 16 pairs.
pub(super) const KSTEP: usize = 16;
/// Rows per block: two A tiles of 16.
const MB: usize = 32;
/// Bytes of weights a group of panels holds: while the task's row blocks pass under them,
/// they stay in L2 (2 MB a core on Sapphire Rapids). Measured on a probe: tile products
/// streaming their operands from L2 ran at 2,000 GFLOP/s on one core, from L3 at 450.
const GROUP_BYTES: usize = 768 << 10;

/// Whether this CPU has AMX-BF16 and the kernel let the process use its tiles (asked once).
pub(super) fn available() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| has_amx_bf16() && tiles::request_permission())
}

#[cfg(target_arch = "x86_64")]
fn has_amx_bf16() -> bool {
    // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
    let id = std::arch::x86_64::__cpuid_count(7, 0);
    id.edx & (1 << 22) != 0 && id.edx & (1 << 24) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn has_amx_bf16() -> bool {
    false
}

/// `a` [M, K] · Wᵀ + b, then the epilogue, as [M, N]: blocks of `rows` rows in parallel.
/// Callers check [`available`].
#[allow(unsafe_code)]
pub(super) fn matmul(a: &[f32], w: &PackedWeight, epilogue: Epilogue, rows: usize) -> Vec<f32> {
    let len = a.len() / w.k * w.n;
    // Every value is written once, so the output is not zeroed first (that was 4% of a
    // bf16 ViT-B/32 forward pass).
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(rows * w.n)
        .enumerate()
        .for_each(|(i, block)| row_block(a, w, epilogue, block, i * rows));
    // SAFETY: `row_block` writes every value of its rows (each of its row blocks, under
    // every panel, all rows and columns: through a tile store or the staged copy), and the
    // tasks cover all rows; had one panicked, the panic would have left before this.
    unsafe { out.set_len(len) };
    out
}

/// Rows `first..` of the output (`out`, whole rows of N), uninitialized until written.
fn row_block(
    a: &[f32],
    w: &PackedWeight,
    epilogue: Epilogue,
    out: &mut [MaybeUninit<f32>],
    first: usize,
) {
    // Without the permission `available` asks for, the first tile instruction is SIGILL.
    assert!(
        available(),
        "AMX tiles used without checking amx::available()"
    );
    let rows = out.len() / w.n;
    let panels = w.n.div_ceil(NR);
    let panel_len = w.stride * NR;
    let group = (GROUP_BYTES / (4 * panel_len)).clamp(1, panels);
    PACKED.with_borrow_mut(|packed| {
        pack_rows(&a[first * w.k..][..rows * w.k], w, packed);
        let blocks = packed
            .as_slice()
            .chunks_exact(MB * w.stride)
            .take(rows.div_ceil(MB));
        let session = tiles::Session::start();
        let mut staged = Sums([MaybeUninit::uninit(); MB * NR]);
        for g0 in (0..panels).step_by(group) {
            for (rb, a) in blocks.clone().enumerate() {
                let mb = MB.min(rows - rb * MB);
                for panel in g0..(g0 + group).min(panels) {
                    let b = &w.data.as_slice()[panel * panel_len..][..panel_len];
                    let bias = &w.bias.as_slice()[panel * NR..][..NR];
                    let (at, cols) = (rb * MB * w.n + panel * NR, NR.min(w.n - panel * NR));
                    if mb == MB && cols == NR && epilogue == Epilogue::None {
                        // A whole block with nothing to apply: the tiles store into `out`.
                        session.block(a, b, w.stride, bias, &mut out[at..], w.n);
                        continue;
                    }
                    session.block(a, b, w.stride, bias, &mut staged.0, NR);
                    for r in 0..mb {
                        let to = &mut out[at + r * w.n..][..cols];
                        simd::map_into(epilogue, &staged.0[r * NR..][..cols], to);
                    }
                }
            }
        }
    });
}

/// A block's sums on their way out through the epilogue, on a cache line (tile stores,
/// like loads, take twice as long across lines).
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Sums([MaybeUninit<f32>; MB * NR]);

thread_local! {
    /// Each thread's activations as bfloat16 pairs, kept between calls (a layer's are up
    /// to megabytes, allocated and faulted in on every call otherwise).
    static PACKED: std::cell::RefCell<Aligned<u32>> = std::cell::RefCell::new(Aligned::default());
}

/// `a` (rows of K) as bfloat16 pairs, one `[k step][MB rows][KSTEP pairs]` piece per block
/// of MB rows (each A tile 1 KB in one place). Rows past the end of the last block keep
/// what they held: computed and dropped.
fn pack_rows(a: &[f32], w: &PackedWeight, packed: &mut Aligned<u32>) {
    let rows = a.len() / w.k;
    packed.grow(rows.div_ceil(MB) * MB * w.stride);
    let packed = packed.as_mut_slice();
    // Pairs past kp stay zero: padding multiplies to nothing.
    let mut pairs = vec![0u32; w.stride];
    for (r, row) in a.chunks_exact(w.k).enumerate() {
        to_pairs(row, &mut pairs[..w.kp]);
        let block = &mut packed[(r / MB) * MB * w.stride..][..MB * w.stride];
        for (s, step) in pairs.chunks_exact(KSTEP).enumerate() {
            block[(s * MB + r % MB) * KSTEP..][..KSTEP].copy_from_slice(step);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod tiles {
    use std::arch::asm;

    use std::mem::MaybeUninit;

    use super::{KSTEP, MB, NR};

    /// Linux's `arch_prctl` request for permission to use an extended state component, and
    /// the component number of AMX's tile data.
    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;

    #[cfg(target_os = "linux")]
    pub(super) fn request_permission() -> bool {
        // SAFETY: a plain system call with integer arguments; on failure (an old kernel, or
        // a thread whose signal stack cannot hold the tile state) it returns an error and
        // the process goes on without AMX.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn request_permission() -> bool {
        false
    }

    /// `LDTILECFG`'s 64-byte operand: palette 1, each tile's rows and bytes per row.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        bytes_per_row: [u16; 16],
        rows: [u8; 16],
    }

    /// The calling thread's tiles, configured as eight 16 × 64-byte tiles: tmm0–3 the sums,
    /// tmm4–5 activations, tmm6–7 weights. Released (back to the init state, which context
    /// switches need not save) when dropped.
    pub(super) struct Session(());

    impl Session {
        /// Configures this thread's tiles. Callers check `available()` (which asked for them).
        pub(super) fn start() -> Session {
            let mut config = Config {
                palette: 1,
                start_row: 0,
                reserved: [0; 14],
                bytes_per_row: [0; 16],
                rows: [0; 16],
            };
            for t in 0..8 {
                config.bytes_per_row[t] = 64;
                config.rows[t] = 16;
            }
            // SAFETY: the CPU has AMX-TILE and the process has permission (`available()`);
            // the operand is a valid palette-1 configuration.
            unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
            Session(())
        }

        /// `sums` (MB rows of NR at row stride `ld`, written, never read) = `bias` [NR] +
        /// `a` · `b` over `pairs` K pairs: `a` is MB rows as `[k step][MB rows][KSTEP
        /// pairs]` (each A tile 1 KB in one piece), `b` `[pair][NR columns]`.
        pub(super) fn block(
            &self,
            a: &[u32],
            b: &[u32],
            pairs: usize,
            bias: &[f32],
            sums: &mut [MaybeUninit<f32>],
            ld: usize,
        ) {
            assert!(pairs.is_multiple_of(KSTEP));
            assert!(a.len() >= MB * pairs && b.len() >= pairs * NR && bias.len() >= NR);
            assert!(ld >= NR && sums.len() >= (MB - 1) * ld + NR);
            let (lda, ldb, ldc) = (4 * KSTEP, 4 * NR, 4 * ld);
            let (a, b, c) = (a.as_ptr(), b.as_ptr(), sums.as_mut_ptr());
            // SAFETY: tiles are configured (`self`); every tile load reads 16 rows of 64
            // bytes inside `a` (MB rows of `pairs`), `b` (`pairs` rows of NR) or `bias` (16
            // floats, stride 0: every row the same), and the stores write MB rows of NR
            // floats at stride `ld` inside `sums`, all bounds asserted above.
            unsafe {
                asm!(
                    "tileloadd tmm0, [{p} + {z}*1]",
                    "tileloadd tmm1, [{q} + {z}*1]",
                    "tileloadd tmm2, [{p} + {z}*1]",
                    "tileloadd tmm3, [{q} + {z}*1]",
                    p = in(reg) bias.as_ptr(),
                    q = in(reg) bias.as_ptr().add(16),
                    z = in(reg) 0usize,
                    options(nostack, readonly),
                );
                // Software-pipelined: tile registers are not renamed, so each step's loads
                // go right after the last product that reads the register they overwrite,
                // overlapping the remaining products instead of waiting for all four.
                let steps = pairs / KSTEP;
                let at = |s: usize| (a.add(s * MB * KSTEP), b.add(s * KSTEP * NR));
                let (a0, b0) = at(0);
                if steps > 0 {
                    asm!(
                        "tileloadd tmm4, [{a0} + {lda}*1]",
                        "tileloadd tmm6, [{b0} + {ldb}*1]",
                        "tileloadd tmm5, [{a1} + {lda}*1]",
                        "tileloadd tmm7, [{b1} + {ldb}*1]",
                        a0 = in(reg) a0,
                        a1 = in(reg) a0.add(16 * KSTEP),
                        b0 = in(reg) b0,
                        b1 = in(reg) b0.add(16),
                        lda = in(reg) lda,
                        ldb = in(reg) ldb,
                        options(nostack, readonly),
                    );
                    for s in 1..steps {
                        let (a0, b0) = at(s);
                        asm!(
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tileloadd tmm4, [{a0} + {lda}*1]",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tileloadd tmm6, [{b0} + {ldb}*1]",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            "tileloadd tmm5, [{a1} + {lda}*1]",
                            "tileloadd tmm7, [{b1} + {ldb}*1]",
                            a0 = in(reg) a0,
                            a1 = in(reg) a0.add(16 * KSTEP),
                            b0 = in(reg) b0,
                            b1 = in(reg) b0.add(16),
                            lda = in(reg) lda,
                            ldb = in(reg) ldb,
                            options(nostack, readonly),
                        );
                    }
                    asm!(
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        options(nostack, nomem),
                    );
                }
                asm!(
                    "tilestored [{c0} + {ldc}*1], tmm0",
                    "tilestored [{c1} + {ldc}*1], tmm1",
                    "tilestored [{c2} + {ldc}*1], tmm2",
                    "tilestored [{c3} + {ldc}*1], tmm3",
                    c0 = in(reg) c,
                    c1 = in(reg) c.add(16),
                    c2 = in(reg) c.add(16 * ld),
                    c3 = in(reg) c.add(16 * ld + 16),
                    ldc = in(reg) ldc,
                    options(nostack),
                );
            }
        }
    }

    impl Drop for Session {
        fn drop(&mut self) {
            // SAFETY: releases this thread's tiles, configured by `start`.
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod tiles {
    use std::mem::MaybeUninit;

    pub(super) fn request_permission() -> bool {
        false
    }

    pub(super) struct Session(());

    impl Session {
        pub(super) fn start() -> Session {
            unreachable!("AMX tiles need x86-64 (checked before use)")
        }

        pub(super) fn block(
            &self,
            _a: &[u32],
            _b: &[u32],
            _pairs: usize,
            _bias: &[f32],
            _sums: &mut [MaybeUninit<f32>],
            _ld: usize,
        ) {
            unreachable!("AMX tiles need x86-64 (checked before use)")
        }
    }
}
