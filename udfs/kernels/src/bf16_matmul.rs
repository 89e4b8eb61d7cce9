//! Dense layers in bfloat16 on CPUs with AVX512-BF16 (`hqflow.precision = 'bf16'`):
//! `x Wᵀ + b` with `x` and `W` rounded to bfloat16 (8 significant bits) and every product
//! summed in f32. `VDPBF16PS` does two multiply-adds per f32 lane, so one instruction does the
//! work of two f32 FMAs: where f32 matrix products already run at the FMA units' limit (they
//! do, in gemm's kernels), this is the way to more throughput. Embeddings move by about 1e-3
//! (cosine to the f32 ones ≥ 0.999), which is why it is opt-in.
//!
//! The layout is the classic blocked one (Goto and van de Geijn): weights are packed once, at
//! load, into panels of [`NR`] output columns holding bfloat16 pairs along K, so a micro-tile
//! reads them as whole vectors; activations are packed per block of rows into panels of
//! [`MR`] rows of pairs, each broadcast to every lane; a micro-tile of MR×NR outputs lives in
//! registers for a whole K block. Row blocks run in parallel on rayon's pool.
//!
//! Where the CPU has AMX ([`amx`]), the same packed weights feed its tile instructions
//! instead: one `TDPBF16PS` is 16,384 flops, one `VDPBF16PS` 64.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::activation::Epilogue;
use super::aligned::Aligned;

mod amx;

/// Output columns per micro-tile: two 16-lane vectors.
const NR: usize = 32;
/// Rows per micro-tile: 12 × 2 accumulators, plus the two weight vectors, in 32 registers.
const MR: usize = 12;
/// K pairs per block: a weight micro-panel (NR × 2·KCP bfloat16, 48 KB) stays in L2 and the
/// activations' micro-panel (MR rows, 18 KB) in L1 while a tile is computed. Measured on
/// ViT-B shapes: 384 beat 128, 256 and 512.
const KCP: usize = 384;
/// Rows per packed activation block.
const MC: usize = 96;

/// Whether this CPU can run bfloat16 dense layers.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The bfloat16 bits of `x`, rounded to nearest even (as `VCVTNEPS2BF16` rounds).
fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        // Quiet NaN, whatever the payload.
        return (bits >> 16) | 0x40;
    }
    bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16
}

/// Two values as one bfloat16 pair: `lo` in the low half, as `VDPBF16PS` pairs them.
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | (bf16_bits(hi) << 16)
}

/// A weight matrix [N, K] (a linear layer's `[out, in]`) packed for the kernel, with its bias.
#[derive(Debug)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    /// K pairs (K rounded up to even, halved).
    kp: usize,
    /// K pairs per panel: `kp` rounded up to whole AMX tile steps.
    stride: usize,
    /// Panels of NR columns: `[panel][k pair][column]`, zero-padded past N and K.
    data: Aligned<u32>,
    /// The bias padded to whole panels (zeros without one).
    bias: Aligned<f32>,
}

impl PackedWeight {
    /// Packs `weight` [N, K] and `bias` [N] (f32 tensors on the CPU).
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let (n, k) = weight.dims2()?;
        if k == 0 {
            candle_core::bail!("bf16 dense: a layer without inputs ({n} x 0 weights)");
        }
        let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
        let kp = k.div_ceil(2);
        let stride = kp.next_multiple_of(amx::KSTEP);
        let panels = n.div_ceil(NR);
        let mut data = Aligned::zeroed(panels * stride * NR);
        for (j, row) in w.chunks_exact(k).enumerate() {
            let panel = &mut data.as_mut_slice()[(j / NR) * stride * NR..];
            for p in 0..kp {
                let hi = row.get(2 * p + 1).copied().unwrap_or(0.0);
                panel[p * NR + j % NR] = pair(row[2 * p], hi);
            }
        }
        let mut padded = Aligned::zeroed(panels * NR);
        if let Some(b) = bias {
            let b: Vec<f32> = b.to_vec1()?;
            if b.len() != n {
                candle_core::bail!("bf16 dense: bias has {} values for {n} outputs", b.len());
            }
            padded.as_mut_slice()[..n].copy_from_slice(&b);
        }
        Ok(PackedWeight {
            n,
            k,
            kp,
            stride,
            data,
            bias: padded,
        })
    }
}

/// `rows Wᵀ + b` for `rows` [M, K] (f32, contiguous), then the epilogue, as a candle op
/// without a gradient.
pub struct Bf16Dense(pub Arc<PackedWeight>, pub Epilogue);

impl CustomOp1 for Bf16Dense {
    fn name(&self) -> &'static str {
        "hqflow-bf16-dense"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = crate::fused::slice(storage, layout, self.name())?;
        let (m, k) = layout.shape().dims2()?;
        let w = &self.0;
        if k != w.k {
            candle_core::bail!(
                "bf16 dense: input has {k} features, the layer takes {}",
                w.k
            );
        }
        if !available() {
            candle_core::bail!("bf16 dense: this CPU lacks AVX512-BF16");
        }
        let out = matmul(xs, w, self.1, amx::available());
        Ok((CpuStorage::F32(out), Shape::from((m, w.n))))
    }
}

/// `a` [M, K] · Wᵀ + b as [M, N], row blocks in parallel, on AMX tiles or with
/// `VDPBF16PS`. Callers check [`available`] (and [`amx::available`] for tiles).
fn matmul(a: &[f32], w: &PackedWeight, epilogue: Epilogue, tiles: bool) -> Vec<f32> {
    let m = a.len() / w.k;
    if m == 0 || w.n == 0 {
        return Vec::new();
    }
    // Twice as many blocks as threads, so a thread slowed by the other forward pass's work
    // does not leave the rest idle.
    let tasks = 2 * rayon::current_num_threads();
    if tiles {
        return amx::matmul(a, w, epilogue, m.div_ceil(tasks));
    }
    let mut out = vec![0f32; m * w.n];
    let rows = m.div_ceil(tasks).next_multiple_of(MR);
    out.par_chunks_mut(rows * w.n)
        .enumerate()
        .for_each(|(i, block)| row_block(a, w, epilogue, block, i * rows));
    out
}

/// One block of output rows starting at row `first`, over every column and K block.
fn row_block(a: &[f32], w: &PackedWeight, epilogue: Epilogue, out: &mut [f32], first: usize) {
    let rows = out.len() / w.n;
    let mut packed = Vec::new();
    let mut converted = vec![0u32; w.kp];
    for p0 in (0..w.kp).step_by(KCP) {
        let pc = KCP.min(w.kp - p0);
        for i0 in (0..rows).step_by(MC) {
            let mc = MC.min(rows - i0);
            pack_rows(a, w.k, first + i0, mc, p0, pc, &mut converted, &mut packed);
            for panel in 0..w.n.div_ceil(NR) {
                let cols = NR.min(w.n - panel * NR);
                let weights = &w.data.as_slice()[(panel * w.stride + p0) * NR..][..pc * NR];
                let bias = &w.bias.as_slice()[panel * NR..][..NR];
                for (t, r0) in (0..mc).step_by(MR).enumerate() {
                    let tile = Tile {
                        a: &packed[t * pc * MR..][..pc * MR],
                        b: weights,
                        pairs: pc,
                        bias: (p0 == 0).then_some(bias),
                        rows: MR.min(mc - r0),
                        cols,
                        epilogue: if p0 + pc == w.kp {
                            epilogue
                        } else {
                            Epilogue::None
                        },
                    };
                    let at = (i0 + r0) * w.n + panel * NR;
                    kernel::tile(&tile, &mut out[at..], w.n);
                }
            }
        }
    }
}

/// Rows `first..first + rows` of `a` [.., k], K pairs `p0..p0 + pc`, as panels of MR rows:
/// `[panel][pair][row]`, rows past the end zero.
#[allow(clippy::too_many_arguments)]
fn pack_rows(
    a: &[f32],
    k: usize,
    first: usize,
    rows: usize,
    p0: usize,
    pc: usize,
    converted: &mut [u32],
    out: &mut Vec<u32>,
) {
    out.clear();
    out.resize(rows.div_ceil(MR) * pc * MR, 0);
    for r in 0..rows {
        let row = &a[(first + r) * k..][..k];
        let pairs = &mut converted[..pc];
        kernel::to_pairs(&row[2 * p0..(2 * (p0 + pc)).min(k)], pairs);
        let panel = &mut out[(r / MR) * pc * MR + r % MR..];
        for (p, &v) in pairs.iter().enumerate() {
            panel[p * MR] = v;
        }
    }
}

/// One micro-tile's inputs.
struct Tile<'a> {
    /// Activations: `[pair][MR rows]`.
    a: &'a [u32],
    /// Weights: `[pair][NR columns]`.
    b: &'a [u32],
    pairs: usize,
    /// The bias to start from (the first K block), else the tile accumulates onto `out`.
    bias: Option<&'a [f32]>,
    /// Valid rows and columns (the rest is padding, computed and dropped).
    rows: usize,
    cols: usize,
    /// What to apply to the sums (on the last K block; `None` before it).
    epilogue: Epilogue,
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod kernel {
    use std::arch::x86_64::*;

    use super::{Epilogue, MR, NR, Tile, pair};
    use crate::activation;

    /// `src` as bfloat16 pairs (a trailing odd value pairs with zero).
    pub(super) fn to_pairs(src: &[f32], dst: &mut [u32]) {
        let whole = src.len() / 32;
        // SAFETY: callers reach this only after `available()` confirmed AVX512F and
        // AVX512-BF16; the loads and stores stay inside `src[..32·whole]` and
        // `dst[..16·whole]` (dst holds ⌈src/2⌉ pairs).
        unsafe { to_pairs_simd(src.as_ptr(), dst.as_mut_ptr(), whole) };
        let done = whole * 32;
        for (p, v) in dst[done / 2..].iter_mut().enumerate() {
            let lo = src[done + 2 * p];
            *v = pair(lo, src.get(done + 2 * p + 1).copied().unwrap_or(0.0));
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn to_pairs_simd(src: *const f32, dst: *mut u32, blocks: usize) {
        for i in 0..blocks {
            // SAFETY: block i reads src[32i..32i+32] and writes dst[16i..16i+16].
            unsafe {
                let lo = _mm512_loadu_ps(src.add(32 * i));
                let hi = _mm512_loadu_ps(src.add(32 * i + 16));
                let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(dst.add(16 * i).cast(), both);
            }
        }
    }

    /// Computes one tile into `out` (row stride `ld`): from the bias on the first K block,
    /// else adding to what `out` holds; the epilogue runs on the last block.
    pub(super) fn tile(t: &Tile, out: &mut [f32], ld: usize) {
        assert!(t.a.len() >= t.pairs * MR && t.b.len() >= t.pairs * NR);
        assert!(t.rows >= 1 && t.rows <= MR && t.cols >= 1 && t.cols <= NR);
        assert!(t.bias.is_none_or(|b| b.len() >= NR));
        let bias = t.bias.map_or(std::ptr::null(), <[f32]>::as_ptr);
        // Whole tiles are computed in place; ragged ones in a staged copy.
        let mut staged = (t.rows < MR || t.cols < NR).then_some([0f32; MR * NR]);
        let (c, ldc) = match staged.as_mut() {
            None => {
                assert!(out.len() >= (MR - 1) * ld + NR);
                (out.as_mut_ptr(), ld)
            }
            Some(staged) => {
                assert!(out.len() >= (t.rows - 1) * ld + t.cols);
                if t.bias.is_none() {
                    for r in 0..t.rows {
                        staged[r * NR..][..t.cols].copy_from_slice(&out[r * ld..][..t.cols]);
                    }
                }
                (staged.as_mut_ptr(), NR)
            }
        };
        // SAFETY: AVX512F/BF16 are present (callers check `available()`); the asserts bound
        // every read of `a`, `b` and `bias`, and `c` is MR rows of NR at stride `ldc`: `out`
        // itself for a whole tile (asserted above), else `staged`.
        unsafe {
            tile_simd(
                t.a.as_ptr(),
                t.b.as_ptr(),
                t.pairs,
                bias,
                t.epilogue,
                c,
                ldc,
            )
        };
        if let Some(staged) = staged {
            for r in 0..t.rows {
                out[r * ld..][..t.cols].copy_from_slice(&staged[r * NR..][..t.cols]);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn tile_simd(
        a: *const u32,
        b: *const u32,
        pairs: usize,
        bias: *const f32,
        epilogue: Epilogue,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: `a` holds pairs·MR values, `b` pairs·NR, `bias` (when not null) NR, and
        // `c` MR rows of NR at stride `ldc` (checked by `tile`).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            for (r, row) in acc.iter_mut().enumerate() {
                let from = if bias.is_null() { c.add(r * ldc) } else { bias };
                row[0] = _mm512_loadu_ps(from);
                row[1] = _mm512_loadu_ps(from.add(16));
            }
            for p in 0..pairs {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR).cast()));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16).cast()));
                for (r, row) in acc.iter_mut().enumerate() {
                    let x: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(p * MR + r) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], x, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], x, b1);
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (half, &v) in row.iter().enumerate() {
                    let v = activation::simd::apply(epilogue, v);
                    _mm512_storeu_ps(c.add(r * ldc + 16 * half), v);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::Tile;

    pub(super) fn to_pairs(_src: &[f32], _dst: &mut [u32]) {
        unreachable!("bf16 dense layers need x86-64 with AVX512-BF16 (checked before use)")
    }

    pub(super) fn tile(_t: &Tile, _out: &mut [f32], _ld: usize) {
        unreachable!("bf16 dense layers need x86-64 with AVX512-BF16 (checked before use)")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use candle_core::{Device, Tensor};

    use super::{Bf16Dense, Epilogue, PackedWeight, amx, available, bf16_bits, matmul};

    fn rounded(x: f32) -> f64 {
        f64::from(f32::from_bits(bf16_bits(x) << 16))
    }

    /// `n` values in [-2, 2) from a fixed-seed generator.
    pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_bits(-2.0), 0xc000);
        assert!(f32::from_bits(bf16_bits(f32::NAN) << 16).is_nan());
    }

    /// Against products of the same bfloat16-rounded inputs summed in f64: only the order
    /// of f32 additions differs, on shapes with partial tiles, odd K and K past one block;
    /// through the candle op, then with each kernel this CPU has (`VDPBF16PS`, AMX tiles).
    #[test]
    fn matches_rounded_reference_on_ragged_shapes() -> candle_core::Result<()> {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX512-BF16");
            return Ok(());
        }
        if !amx::available() {
            eprintln!("AMX tiles: not on this CPU, their kernel untested");
        }
        let shapes = [
            (1, 1, 1),
            (5, 33, 7),
            (13, 32, 64),
            (40, 70, 801),
            (97, 64, 1030),
            (300, 40, 96),
            (256, 96, 200),
        ];
        for &(m, n, k) in &shapes {
            let (a, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
            let weight = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?;
            let bias = Tensor::from_vec(b.clone(), n, &Device::Cpu)?;
            let packed = Arc::new(PackedWeight::new(&weight, Some(&bias))?);
            let xs = Tensor::from_vec(a.clone(), (m, k), &Device::Cpu)?;
            let op = |e| -> candle_core::Result<Vec<f32>> {
                xs.apply_op1_no_bwd(&Bf16Dense(Arc::clone(&packed), e))?
                    .flatten_all()?
                    .to_vec1()
            };
            let kernel = |e, tiles| matmul(&a, &packed, e, tiles);
            let mut runs = vec![
                (op(Epilogue::None)?, op(Epilogue::QuickGelu)?),
                (
                    kernel(Epilogue::None, false),
                    kernel(Epilogue::QuickGelu, false),
                ),
            ];
            if amx::available() {
                runs.push((
                    kernel(Epilogue::None, true),
                    kernel(Epilogue::QuickGelu, true),
                ));
            }
            for (plain, activated) in &runs {
                check(m, n, k, (&a, &w, &b), plain, activated);
            }
        }
        Ok(())
    }

    /// `plain` and `activated` (quick GELU) against the f64 sums of rounded products.
    fn check(
        m: usize,
        n: usize,
        k: usize,
        (a, w, b): (&[f32], &[f32], &[f32]),
        plain: &[f32],
        activated: &[f32],
    ) {
        // The epilogue runs once, on the last K block, over whole and ragged tiles.
        for i in 0..m {
            for j in 0..n {
                let terms = (0..k).map(|t| rounded(a[i * k + t]) * rounded(w[j * k + t]));
                let bound = 1e-5 * (terms.clone().map(f64::abs).sum::<f64>() + 1.0);
                let want = terms.sum::<f64>() + f64::from(b[j]);
                let got = f64::from(plain[i * n + j]);
                assert!(
                    (got - want).abs() <= bound,
                    "{m}x{n}x{k} ({i},{j}): {got} vs {want}"
                );
                let want = want / (1.0 + (-1.702 * want).exp());
                let got = f64::from(activated[i * n + j]);
                assert!(
                    (got - want).abs() <= 1.2 * bound + 1e-6,
                    "quick GELU ({i},{j})"
                );
            }
        }
    }

    #[test]
    fn wrong_input_width_is_an_error() -> candle_core::Result<()> {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX512-BF16");
            return Ok(());
        }
        let weight = Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu)?;
        let packed = Arc::new(PackedWeight::new(&weight, None)?);
        let xs = Tensor::zeros((2, 6), candle_core::DType::F32, &Device::Cpu)?;
        let err = xs
            .apply_op1_no_bwd(&Bf16Dense(packed, Epilogue::None))
            .err();
        assert!(err.is_some_and(|e| e.to_string().contains("6 features")));
        Ok(())
    }
}
