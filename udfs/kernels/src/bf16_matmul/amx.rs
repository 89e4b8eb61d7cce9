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
//! 128 bytes. Activations are converted to bfloat16 pairs [`MC`] rows at a time (row-major,
//! an A tile's row being 16 consecutive pairs); that chunk stays in L2 while every weight
//! panel passes over it.

use super::{Epilogue, NR, PackedWeight, kernel::to_pairs};
use crate::activation::simd;

/// K pairs per tile step: a tile row is 64 bytes, 16 pairs.
pub(super) const KSTEP: usize = 16;
/// Rows per block: two A tiles of 16.
const MB: usize = 32;
/// Rows converted to bfloat16 at a time.
const MC: usize = 128;

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

/// `out` [M, N] = `a` [M, K] · Wᵀ + b, then the epilogue. Callers check [`available`].
pub(super) fn row_block(
    a: &[f32],
    w: &PackedWeight,
    epilogue: Epilogue,
    out: &mut [f32],
    first: usize,
) {
    // Without the permission `available` asks for, the first tile instruction is SIGILL.
    assert!(
        available(),
        "AMX tiles used without checking amx::available()"
    );
    let rows = out.len() / w.n;
    let mut chunk = vec![0u32; MC * w.stride];
    // Pairs past kp stay zero from the allocation: padding multiplies to nothing.
    let mut pairs = vec![0u32; w.stride];
    let mut staged = [0f32; MB * NR];
    let session = tiles::Session::start();
    for i0 in (0..rows).step_by(MC) {
        let mc = MC.min(rows - i0);
        for r in 0..mc {
            to_pairs(&a[(first + i0 + r) * w.k..][..w.k], &mut pairs[..w.kp]);
            let block = &mut chunk[(r / MB) * MB * w.stride..][..MB * w.stride];
            for (s, step) in pairs.chunks_exact(KSTEP).enumerate() {
                block[(s * MB + r % MB) * KSTEP..][..KSTEP].copy_from_slice(step);
            }
        }
        for panel in 0..w.n.div_ceil(NR) {
            let cols = NR.min(w.n - panel * NR);
            let weights = &w.data[panel * w.stride * NR..][..w.stride * NR];
            let bias = &w.bias[panel * NR..][..NR];
            for r0 in (0..mc).step_by(MB) {
                // Rows past `mc` in the chunk hold zeros or an earlier chunk's rows: computed
                // and dropped.
                let block = &chunk[r0 * w.stride..][..MB * w.stride];
                session.block(block, weights, w.stride, bias, &mut staged);
                for r in 0..MB.min(mc - r0) {
                    let at = (i0 + r0 + r) * w.n + panel * NR;
                    simd::map(epilogue, &staged[r * NR..][..cols], &mut out[at..][..cols]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod tiles {
    use std::arch::asm;

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

        /// `staged` [MB × NR] = `a` · `b` + `bias` [NR], summed over the whole K: `a` is MB
        /// rows by `stride` pairs as `[k step][MB rows][KSTEP pairs]` (each A tile 1 KB in
        /// one piece), `b` `stride` pairs by NR columns.
        pub(super) fn block(
            &self,
            a: &[u32],
            b: &[u32],
            stride: usize,
            bias: &[f32],
            staged: &mut [f32; MB * NR],
        ) {
            assert!(stride.is_multiple_of(KSTEP));
            assert!(a.len() >= MB * stride && b.len() >= stride * NR && bias.len() >= NR);
            let (lda, ldb, ldc) = (4 * KSTEP, 4 * NR, 4 * NR);
            let (a, b, c) = (a.as_ptr(), b.as_ptr(), staged.as_mut_ptr());
            // SAFETY: tiles are configured (`self`); every tile load reads 16 rows of 64
            // bytes inside `a` (MB rows of `stride` pairs), `b` (`stride` rows of NR) or
            // `bias` (16 floats, stride 0: each row the same), and the stores write the 32
            // × 32 floats of `staged`, all bounds asserted above.
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
                for s in 0..stride / KSTEP {
                    let bs = b.add(s * KSTEP * NR);
                    asm!(
                        "tileloadd tmm4, [{a0} + {lda}*1]",
                        "tileloadd tmm5, [{a1} + {lda}*1]",
                        "tileloadd tmm6, [{b0} + {ldb}*1]",
                        "tileloadd tmm7, [{b1} + {ldb}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) a.add(s * MB * KSTEP),
                        a1 = in(reg) a.add((s * MB + 16) * KSTEP),
                        b0 = in(reg) bs,
                        b1 = in(reg) bs.add(16),
                        lda = in(reg) lda,
                        ldb = in(reg) ldb,
                        options(nostack, readonly),
                    );
                }
                asm!(
                    "tilestored [{c0} + {ldc}*1], tmm0",
                    "tilestored [{c1} + {ldc}*1], tmm1",
                    "tilestored [{c2} + {ldc}*1], tmm2",
                    "tilestored [{c3} + {ldc}*1], tmm3",
                    c0 = in(reg) c,
                    c1 = in(reg) c.add(16),
                    c2 = in(reg) c.add(16 * NR),
                    c3 = in(reg) c.add(16 * NR + 16),
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
    use super::{MB, NR};

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
            _stride: usize,
            _bias: &[f32],
            _staged: &mut [f32; MB * NR],
        ) {
            unreachable!("AMX tiles need x86-64 (checked before use)")
        }
    }
}
