//! GELU and quick GELU in one vectorized pass (AVX-512F), for inference and (GELU and its
//! gradient) training's fused kernels ([`crate::fused`]). candle computes
//! quick GELU as three passes (multiply, sigmoid with libm's `expf`, multiply) and GELU with
//! libm's `erf` per value; over CLIP's widest tensor (the MLP's hidden layer) that was ~7% of
//! an f32 forward. The same functions finish the bf16 kernel's tiles
//! ([`super::bf16_matmul`]). Within 2e-6 of exact values (tested against f64).

use candle_core::{CpuStorage, InplaceOp1, Layout};
use rayon::prelude::*;

/// An activation these kernels compute in one pass; the bf16 kernel applies it to each
/// tile's outputs as they are stored (its epilogue), instead of in separate passes over the
/// layer's output (for CLIP's MLP: its widest tensor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// The values as they are.
    None,
    /// `x·σ(1.702x)`.
    QuickGelu,
    /// Exact (erf) GELU.
    Gelu,
}

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// Whether this CPU has the vector instructions these kernels use.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `activation(xs)` for a contiguous f32 tensor, as a candle op without a gradient.
pub struct FusedActivation(pub Epilogue);

/// In place: the tensor's own storage is overwritten, saving the output's allocation and
/// its first-touch page faults (CLIP's MLP hidden layer: 20 MB a batch of 32 ViT-B/32
/// images, each layer). For a contiguous tensor nothing else holds (the caller's own dense
/// output). Callers check [`available`].
impl InplaceOp1 for FusedActivation {
    fn name(&self) -> &'static str {
        "hqflow-fused-activation"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        if !available() {
            candle_core::bail!("fused activation: this CPU lacks AVX-512F");
        }
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("fused activation: only f32 is supported");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("fused activation: the input must be contiguous");
        };
        data[start..end]
            .par_chunks_mut(CHUNK)
            .for_each(|values| simd::map_in_place(self.0, values));
        Ok(())
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod simd {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::Epilogue;

    /// `dst = activation(src)` (same lengths), 16 lanes at a time with a masked tail.
    pub(crate) fn map(e: Epilogue, src: &[f32], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        // SAFETY: callers check `available()` (AVX-512F); every load and store is inside
        // `src`/`dst` (whole blocks of 16, then a tail masked to what remains).
        unsafe { map_simd(e, src.as_ptr(), dst.as_mut_ptr(), src.len()) }
    }

    /// `values = activation(values)`.
    pub(crate) fn map_in_place(e: Epilogue, values: &mut [f32]) {
        let at = values.as_mut_ptr();
        // SAFETY: as in `map`, over one slice: each block of 16 is loaded before the same
        // block is stored, through pointers derived from the one `&mut`.
        unsafe { map_simd(e, at, at, values.len()) }
    }

    /// [`map`] from sums that tile stores wrote (`src`, initialized, though its type cannot
    /// say so) into memory not yet initialized (`dst`), which it writes in full.
    pub(crate) fn map_into(e: Epilogue, src: &[MaybeUninit<f32>], dst: &mut [MaybeUninit<f32>]) {
        assert_eq!(src.len(), dst.len());
        // SAFETY: as in `map`; callers guarantee `src` was written (the bf16 tile kernel's
        // sums, stored by its tiles), and `dst` is only written, every value of it.
        unsafe { map_simd(e, src.as_ptr().cast(), dst.as_mut_ptr().cast(), src.len()) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn map_simd(e: Epilogue, src: *const f32, dst: *mut f32, n: usize) {
        // SAFETY: see `map`.
        unsafe {
            let mut i = 0;
            while i + 16 <= n {
                _mm512_storeu_ps(dst.add(i), apply(e, _mm512_loadu_ps(src.add(i))));
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u16 << (n - i)) - 1;
                let v = apply(e, _mm512_maskz_loadu_ps(mask, src.add(i)));
                _mm512_mask_storeu_ps(dst.add(i), mask, v);
            }
        }
    }

    /// The activation on 16 lanes.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn apply(e: Epilogue, v: __m512) -> __m512 {
        match e {
            Epilogue::None => v,
            Epilogue::QuickGelu => quick_gelu(v),
            Epilogue::Gelu => gelu_erf(v),
        }
    }

    /// `e^x` per lane: Cephes' `expf` (range reduction by ln 2, degree-6 polynomial),
    /// within 2 ulp; saturates to 0 and to f32's largest finite values' neighbourhood.
    #[target_feature(enable = "avx512f")]
    fn exp(x: __m512) -> __m512 {
        let x = _mm512_max_ps(
            _mm512_min_ps(x, _mm512_set1_ps(88.37)),
            _mm512_set1_ps(-87.33),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let e = _mm512_fmadd_ps(
            _mm512_mul_ps(p, r),
            r,
            _mm512_add_ps(r, _mm512_set1_ps(1.0)),
        );
        _mm512_scalef_ps(e, n)
    }

    /// `x·σ(1.702x)` = `x / (1 + e^(−1.702x))`.
    #[target_feature(enable = "avx512f")]
    fn quick_gelu(x: __m512) -> __m512 {
        let e = exp(_mm512_mul_ps(x, _mm512_set1_ps(-1.702)));
        _mm512_div_ps(x, _mm512_add_ps(e, _mm512_set1_ps(1.0)))
    }

    /// `(1 + erf(x/√2), e^(−x²/2))`: erf by Abramowitz and Stegun 7.1.26 (within 1.5e-7),
    /// whose tail term needs the same exponential as the normal density.
    #[target_feature(enable = "avx512f")]
    fn one_plus_erf(x: __m512) -> (__m512, __m512) {
        let z = _mm512_abs_ps(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        ));
        let one = _mm512_set1_ps(1.0);
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.327_591_1), z, one));
        let mut p = _mm512_set1_ps(1.061_405_4);
        for c in [-1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
            p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
        }
        let gauss = exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(z, z)));
        let tail = _mm512_mul_ps(_mm512_mul_ps(p, t), gauss);
        // erf(|x|/√2) = 1 − tail; for negative x, 1 + erf(x/√2) = tail.
        let positive = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_setzero_ps());
        let sum = _mm512_mask_blend_ps(positive, tail, _mm512_sub_ps(_mm512_set1_ps(2.0), tail));
        (sum, gauss)
    }

    /// `x/2·(1 + erf(x/√2))`.
    #[target_feature(enable = "avx512f")]
    fn gelu_erf(x: __m512) -> __m512 {
        let (one_plus_erf, _) = one_plus_erf(x);
        _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5)), one_plus_erf)
    }

    /// `g·(Φ(x) + x·φ(x))`: the upstream gradient `g` through exact GELU.
    #[target_feature(enable = "avx512f")]
    fn gelu_erf_grad(x: __m512, g: __m512) -> __m512 {
        // 1/√(2π)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let (one_plus_erf, gauss) = one_plus_erf(x);
        let cdf = _mm512_mul_ps(one_plus_erf, _mm512_set1_ps(0.5));
        let pdf = _mm512_mul_ps(gauss, _mm512_set1_ps(INV_SQRT_2PI));
        _mm512_mul_ps(g, _mm512_fmadd_ps(x, pdf, cdf))
    }

    /// `row[i] = e^(row[i] − shift)` in place, 0 where that underflows (masked scores of
    /// −∞ included); returns the sum. 16 lanes at a time with a masked tail.
    pub(crate) fn exp_shifted(row: &mut [f32], shift: f32) -> f32 {
        // SAFETY: callers check `available()` (AVX-512F); loads and stores stay inside
        // `row` (whole blocks of 16, then a masked tail).
        unsafe { exp_shifted_simd(row.as_mut_ptr(), row.len(), shift) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn exp_shifted_simd(row: *mut f32, n: usize, shift: f32) -> f32 {
        let shift = _mm512_set1_ps(shift);
        let floor = _mm512_set1_ps(-87.33);
        let one = |v: __m512| {
            let x = _mm512_sub_ps(v, shift);
            // `exp` saturates at its floor; below it the true value is (nearly) 0.
            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, floor), exp(x))
        };
        // SAFETY: see `exp_shifted`.
        unsafe {
            let mut sum = _mm512_setzero_ps();
            let mut i = 0;
            while i + 16 <= n {
                let e = one(_mm512_loadu_ps(row.add(i)));
                _mm512_storeu_ps(row.add(i), e);
                sum = _mm512_add_ps(sum, e);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u16 << (n - i)) - 1;
                let e = _mm512_maskz_mov_ps(mask, one(_mm512_maskz_loadu_ps(mask, row.add(i))));
                _mm512_mask_storeu_ps(row.add(i), mask, e);
                sum = _mm512_add_ps(sum, e);
            }
            _mm512_reduce_add_ps(sum)
        }
    }

    /// `dst = g·GELU'(x)` (same lengths), 16 lanes at a time with a masked tail.
    pub(crate) fn gelu_grad(x: &[f32], g: &[f32], dst: &mut [f32]) {
        assert!(x.len() == dst.len() && g.len() == dst.len());
        // SAFETY: callers check `available()` (AVX-512F); every load and store is inside
        // the three slices of equal length (whole blocks of 16, then a masked tail).
        unsafe { gelu_grad_simd(x.as_ptr(), g.as_ptr(), dst.as_mut_ptr(), dst.len()) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn gelu_grad_simd(x: *const f32, g: *const f32, dst: *mut f32, n: usize) {
        // SAFETY: see `gelu_grad`.
        unsafe {
            let mut i = 0;
            while i + 16 <= n {
                let v = gelu_erf_grad(_mm512_loadu_ps(x.add(i)), _mm512_loadu_ps(g.add(i)));
                _mm512_storeu_ps(dst.add(i), v);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u16 << (n - i)) - 1;
                let v = gelu_erf_grad(
                    _mm512_maskz_loadu_ps(mask, x.add(i)),
                    _mm512_maskz_loadu_ps(mask, g.add(i)),
                );
                _mm512_mask_storeu_ps(dst.add(i), mask, v);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) mod simd {
    use super::Epilogue;

    pub(crate) fn map(_e: Epilogue, _src: &[f32], _dst: &mut [f32]) {
        unreachable!("fused activations need x86-64 with AVX-512F (checked before use)")
    }

    pub(crate) fn map_in_place(_e: Epilogue, _values: &mut [f32]) {
        unreachable!("fused activations need x86-64 with AVX-512F (checked before use)")
    }

    pub(crate) fn map_into(
        _e: Epilogue,
        _src: &[std::mem::MaybeUninit<f32>],
        _dst: &mut [std::mem::MaybeUninit<f32>],
    ) {
        unreachable!("fused activations need x86-64 with AVX-512F (checked before use)")
    }

    pub(crate) fn gelu_grad(_x: &[f32], _g: &[f32], _dst: &mut [f32]) {
        unreachable!("fused activations need x86-64 with AVX-512F (checked before use)")
    }

    pub(crate) fn exp_shifted(_row: &mut [f32], _shift: f32) -> f32 {
        unreachable!("fused activations need x86-64 with AVX-512F (checked before use)")
    }
}

#[cfg(test)]
mod tests {
    use super::{Epilogue, available, simd};
    use crate::bf16_matmul::tests::values;

    fn map(e: Epilogue, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        simd::map(e, x, &mut out);
        out
    }

    #[test]
    fn activations_match_f64_references() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX-512F");
            return;
        }
        let erf = |x: f64| {
            // erf by its Taylor series: in f64, within 1e-10 for |x| ≤ 3.6 (cancellation
            // grows as e^(x²) past that).
            let (mut term, mut sum) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        // 4,099 values: whole blocks of 16 and a masked tail of 3.
        let x: Vec<f32> = values(4099, 7).iter().map(|v| v * 2.5).collect();
        let (quick, gelu) = (map(Epilogue::QuickGelu, &x), map(Epilogue::Gelu, &x));
        assert_eq!(map(Epilogue::None, &x), x);
        let mut worst = [0f64; 2];
        for (i, &v) in x.iter().enumerate() {
            let v = f64::from(v);
            let want_quick = v / (1.0 + (-1.702 * v).exp());
            let want_gelu = 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2));
            worst[0] = worst[0].max((f64::from(quick[i]) - want_quick).abs());
            worst[1] = worst[1].max((f64::from(gelu[i]) - want_gelu).abs());
        }
        assert!(
            worst[0] <= 2e-6 && worst[1] <= 2e-6,
            "worst errors {worst:?}"
        );
        // The gradient through GELU, g·(Φ(x) + x·φ(x)), for g of both signs.
        let g: Vec<f32> = values(4099, 8);
        let mut grad = vec![0f32; x.len()];
        simd::gelu_grad(&x, &g, &mut grad);
        let worst_grad = x
            .iter()
            .zip(&g)
            .zip(&grad)
            .fold(0f64, |w, ((&v, &g), &got)| {
                let v = f64::from(v);
                let cdf = 0.5 * (1.0 + erf(v / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
                w.max((f64::from(got) - f64::from(g) * (cdf + v * pdf)).abs())
            });
        assert!(worst_grad <= 2e-6, "worst gradient error {worst_grad}");
        // Far out: no NaN or infinity, the right limits.
        let far = [
            -200.0, -90.0, 90.0, 200.0, 0.0, -0.0, 1e-30, -1e-30, 60.0, -60.0,
        ];
        for e in [Epilogue::QuickGelu, Epilogue::Gelu] {
            let y = map(e, &far);
            assert!(y.iter().all(|v| v.is_finite()), "{e:?}: {y:?}");
            assert!(
                (y[3] - 200.0).abs() < 1e-4 && y[0].abs() < 1e-4,
                "{e:?}: {y:?}"
            );
        }
    }
}
