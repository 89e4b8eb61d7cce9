//! Multi-head attention for inference on the CPU: one op that reads the heads in place from
//! the projections' [batch, tokens, width] outputs and keeps both products' tiles in
//! registers.
//!
//! Composed from candle's ops, inference attention copied q, k and v into
//! [batch, heads, tokens, head_dim], scaled q in another pass, copied kᵀ, ran two small gemm
//! calls per sequence and head, and copied the heads back side by side: 6–7% of `dfn_score`'s
//! time on a ViT-B/32 image tower. Training's kernel ([`super::attention`]) reads the heads in
//! place too, but accumulates each score row through memory (bound by stores, and it keeps
//! copies its backward pass needs); on that tower it ran slower than the composed ops. Here
//! four query rows × sixteen keys of scores, then four rows × sixteen columns of output,
//! accumulate in registers over the head's width and over the keys.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::activation::available;
use super::attention::{Attention, Dims, Sequence};
use super::fused::{slice, softmax_in_place};

/// Query rows per tile.
const ROWS: usize = 4;
/// Keys (scores) or head columns (outputs) per tile: one 512-bit register of f32.
const LANES: usize = 16;

/// As [`super::attention::attention`] (same arguments, same result within float rounding),
/// without a backward pass: for inference. `None` where it does not apply (not CPU f32,
/// another mask shape, no AVX-512).
pub fn attention_forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f32,
    mask: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    // The tiles are written for AVX-512F; elsewhere the caller composes candle's ops.
    if !available() {
        return Ok(None);
    }
    match Attention::checked(q, k, v, heads, scale, mask)? {
        None => Ok(None),
        Some(op) => Ok(Some(q.contiguous()?.apply_op3_no_bwd(
            &k.contiguous()?,
            &v.contiguous()?,
            &Forward(op),
        )?)),
    }
}

struct Forward(Attention);

/// One task's buffers: one head's keys transposed [d][n_pad] and values [n][d_pad], both
/// zero-padded to whole tiles; a tile's scaled queries [ROWS][d] and scores [ROWS][n].
struct Scratch {
    keys_t: Vec<f32>,
    values: Vec<f32>,
    queries: Vec<f32>,
    scores: Vec<f32>,
    n_pad: usize,
    d_pad: usize,
}

impl Scratch {
    fn new(dims: Dims) -> Self {
        let n_pad = dims.n.div_ceil(LANES) * LANES;
        let d_pad = dims.d.div_ceil(LANES) * LANES;
        Scratch {
            keys_t: vec![0.0; dims.d * n_pad],
            values: vec![0.0; dims.n * d_pad],
            queries: vec![0.0; ROWS * dims.d],
            scores: vec![0.0; ROWS * dims.n],
            n_pad,
            d_pad,
        }
    }

    /// Head `h` of one sequence's key and value rows ([n, width] each).
    #[inline(always)]
    fn load(&mut self, k: &[f32], v: &[f32], h: usize, dims: Dims) {
        let Dims { n, d, width, .. } = dims;
        for j in 0..n {
            let (krow, vrow) = (&k[j * width + h * d..][..d], &v[j * width + h * d..][..d]);
            for (c, &kc) in krow.iter().enumerate() {
                self.keys_t[c * self.n_pad + j] = kc;
            }
            self.values[j * self.d_pad..][..d].copy_from_slice(vrow);
        }
    }

    /// Scores of the tile's `rows` queries over every key, plus the mask's rows, then
    /// softmax: the attention weights, [rows][n] in `scores`.
    #[inline(always)]
    fn weights(&mut self, rows: usize, mask: Option<&[f32]>, dims: Dims) {
        let Dims { n, d, .. } = dims;
        for j0 in (0..n).step_by(LANES) {
            let acc = tiles::product(&self.queries, d, &self.keys_t[j0..], self.n_pad);
            let width = LANES.min(n - j0);
            for (r, acc) in acc.iter().enumerate().take(rows) {
                let row = &mut self.scores[r * n + j0..][..width];
                match mask {
                    Some(mask) => {
                        let mask = &mask[r * n + j0..][..width];
                        for ((s, &a), &m) in row.iter_mut().zip(acc).zip(mask) {
                            *s = a + m;
                        }
                    }
                    None => row.copy_from_slice(&acc[..width]),
                }
            }
        }
        for r in 0..rows {
            softmax_in_place(&mut self.scores[r * n..][..n]);
        }
    }

    /// The tile's `rows` outputs of this head, weights × values, into `out` rows (stride
    /// `width`, starting at the head's column).
    #[inline(always)]
    fn outputs(&self, rows: usize, out: &mut [f32], h: usize, dims: Dims) {
        let Dims { n, d, width, .. } = dims;
        for c0 in (0..d).step_by(LANES) {
            // Rows past `rows` hold an earlier tile's weights: computed, never stored.
            let acc = tiles::product(&self.scores, n, &self.values[c0..], self.d_pad);
            let cols = LANES.min(d - c0);
            for (r, acc) in acc.iter().enumerate().take(rows) {
                out[r * width + h * d + c0..][..cols].copy_from_slice(&acc[..cols]);
            }
        }
    }
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "hqflow-attention-forward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            slice(s1, l1, self.name())?,
            slice(s2, l2, self.name())?,
            slice(s3, l3, self.name())?,
        );
        let op = &self.0;
        let dims = op.dims(l1, l2)?;
        let Dims { m, n, width, d, .. } = dims;
        let out = op.each_sequence((q, k, v), dims, |sequence, out| {
            wide(
                #[inline(always)]
                || {
                    let Sequence { q, k, v, mask } = sequence;
                    let mut scratch = Scratch::new(dims);
                    for h in 0..dims.heads {
                        scratch.load(k, v, h, dims);
                        for i0 in (0..m).step_by(ROWS) {
                            let rows = ROWS.min(m - i0);
                            for r in 0..rows {
                                let qrow = &q[(i0 + r) * width + h * d..][..d];
                                let dst = &mut scratch.queries[r * d..][..d];
                                for (t, &x) in dst.iter_mut().zip(qrow) {
                                    *t = x * op.scale;
                                }
                            }
                            scratch.weights(rows, mask.map(|m| &m[i0 * n..]), dims);
                            scratch.outputs(rows, &mut out[i0 * width..], h, dims);
                        }
                    }
                },
            )
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Runs `f` compiled for AVX-512 (callers checked [`available`]), so the tiles inline into it.
#[inline]
fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: callers run only where `available()`: the CPU has AVX-512F.
        #[allow(unsafe_code)]
        unsafe {
            avx512(f)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The register tile: four rows of one 512-bit accumulator.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod tiles {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };

    use super::{LANES, ROWS};

    /// Σ_c a[r][c] · b[c][0..16] for the four rows of `a` ([4][k]); `b` starts at the tile's
    /// first column, rows `stride` apart. Scores: `a` the scaled queries, `b` the transposed
    /// keys; outputs: `a` the softmax weights, `b` the values.
    #[inline(always)]
    pub(super) fn product(a: &[f32], k: usize, b: &[f32], stride: usize) -> [[f32; LANES]; ROWS] {
        assert!(a.len() >= ROWS * k && (k == 0 || b.len() >= (k - 1) * stride + LANES));
        // SAFETY: AVX-512F is enabled in every caller (`wide`); the assert bounds every
        // load: a (r, c) at r·k + c < 4k, b's row c at c·stride + 16 ≤ b's length.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); ROWS];
            for c in 0..k {
                let row = _mm512_loadu_ps(b.as_ptr().add(c * stride));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.get_unchecked(r * k + c));
                    *acc = _mm512_fmadd_ps(x, row, *acc);
                }
            }
            stored(acc)
        }
    }

    #[inline(always)]
    unsafe fn stored(acc: [__m512; ROWS]) -> [[f32; LANES]; ROWS] {
        let mut out = [[0f32; LANES]; ROWS];
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: `o` holds 16 floats.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
        }
        out
    }
}

/// No tiles off x86-64: `available()` is false there, so these never run.
#[cfg(not(target_arch = "x86_64"))]
mod tiles {
    use super::{LANES, ROWS};

    pub(super) fn product(_: &[f32], _: usize, _: &[f32], _: usize) -> [[f32; LANES]; ROWS] {
        [[0.0; LANES]; ROWS]
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::attention_forward;
    use crate::attention::attention;
    use crate::fused::tests::{max_diff, random};

    /// Against the training kernel (itself tested against candle's composed ops).
    fn check(b: usize, m: usize, n: usize, heads: usize, width: usize, mask: Option<Tensor>) {
        let q = random(&[b, m, width], 1);
        let k = random(&[b, n, width], 2);
        let v = random(&[b, n, width], 3);
        type Kernel = fn(
            &Tensor,
            &Tensor,
            &Tensor,
            usize,
            f32,
            Option<&Tensor>,
        ) -> candle_core::Result<Option<Tensor>>;
        let run = |f: Kernel| -> Tensor {
            f(&q, &k, &v, heads, 0.3, mask.as_ref())
                .expect("attention")
                .expect("the kernel applies")
        };
        let (got, want) = (run(attention_forward), run(attention));
        assert!(
            max_diff(&got, &want) < 1e-5,
            "b {b} m {m} n {n} heads {heads} width {width}: {}",
            max_diff(&got, &want)
        );
    }

    #[test]
    fn matches_the_training_kernel_on_tiles_and_their_tails() {
        // Whole tiles, tails of rows, keys and head columns, one key, head widths of 8 to 64.
        for (b, m, n, heads, width) in [
            (2, 16, 32, 2, 64),
            (3, 17, 17, 4, 32),
            (2, 50, 50, 12, 768),
            (1, 5, 1, 2, 40),
            (2, 3, 19, 3, 24),
        ] {
            check(b, m, n, heads, width, None);
        }
    }

    #[test]
    fn matches_the_training_kernel_with_masks() {
        let n = 21;
        let causal: Vec<f32> = (0..n * n)
            .map(|at| {
                if at % n > at / n {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let causal = Tensor::from_vec(causal, (n, n), &Device::Cpu).expect("mask");
        check(3, n, n, 4, 32, Some(causal));
        // Per-sequence masks over fewer queries than keys, each hiding a different tail.
        let (b, m, n) = (3, 6, 19);
        let values: Vec<f32> = (0..b * m * n)
            .map(|at| {
                let (seq, key) = (at / (m * n), at % n);
                if key >= n - 3 * seq {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(values, (b, 1, m, n), &Device::Cpu).expect("mask");
        check(b, m, n, 4, 32, Some(mask));
    }
}
