//! A dense layer for training, `x Wᵀ + b` over the last dimension, as one CPU graph node with
//! its own backward pass.
//!
//! Composed from candle's ops it is five nodes (flatten to rows, transpose the weight, the
//! product, the bias add, the reshape back), and candle's backward pass zero-fills and then
//! adds each gradient it hands a node, so every layer paid several passes over its input and
//! output sizes beyond the two products of its backward. Here the forward pass is one gemm
//! writing onto rows pre-filled with the bias, and the backward pass returns the three
//! gradients in their final layouts (the weight's as gᵀx, [out, in], with no transpose).
//!
//! On other devices and dtypes the composed ops run; the tests check values and gradients
//! against them.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::fused::{self, fast_path, slice};

/// How a dense layer's weight matrix is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WeightLayout {
    /// [out, in], as checkpoints store it and training updates it.
    OutIn,
    /// [in, out]: transposed once at load for inference. gemm reads `Wᵀ` through its
    /// columns here, so it packs it with contiguous copies instead of gathering one float at
    /// a time from `out` rows (that gather was 15% of an f32 image tower's time).
    InOut,
}

impl WeightLayout {
    /// (out, in) from a weight's two dimensions.
    fn out_in(self, (rows, cols): (usize, usize)) -> (usize, usize) {
        match self {
            WeightLayout::OutIn => (rows, cols),
            WeightLayout::InOut => (cols, rows),
        }
    }
}

/// `xs Wᵀ + bias` for `xs` [..., in] and `weight` [out, in]: [..., out]. `None` where this
/// kernel does not apply (not CPU f32): the caller composes it.
pub fn linear(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    checked(xs, weight, bias, WeightLayout::OutIn)
}

/// `xs W + bias` for `xs` [..., in] and a weight stored transposed, `weight_t` [in, out]
/// (inference: the layout gemm reads fastest). `None` where this kernel does not apply (not
/// CPU f32): the caller composes it.
pub fn linear_transposed(
    xs: &Tensor,
    weight_t: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    checked(xs, weight_t, bias, WeightLayout::InOut)
}

fn checked(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    layout: WeightLayout,
) -> candle_core::Result<Option<Tensor>> {
    if !(fast_path(xs) && fast_path(weight) && bias.is_none_or(fast_path)) {
        return Ok(None);
    }
    let (out, input) = layout.out_in(weight.dims2()?);
    if xs.dims().last() != Some(&input) || bias.is_some_and(|b| b.dims() != [out]) {
        candle_core::bail!(
            "linear: input {:?}, weight {:?} ({layout:?}) and bias {:?} do not fit",
            xs.dims(),
            weight.dims(),
            bias.map(|b| b.dims())
        );
    }
    let (xs, weight) = (xs.contiguous()?, weight.contiguous()?);
    let op = Linear(layout);
    Ok(Some(match bias {
        Some(bias) => xs.apply_op3(&weight, &bias.contiguous()?, op)?,
        None => xs.apply_op2(&weight, op)?,
    }))
}

/// `weight`ᵀ as a contiguous tensor: [out, in] → [in, out], once per dense layer at load.
/// On the CPU in f32 in 32×32 tiles, rows of tiles in parallel: candle's strided copy moves
/// one float at a time down columns, which took half a second over a ViT-B/32 checkpoint.
pub fn transposed(weight: &Tensor) -> candle_core::Result<Tensor> {
    if !fast_path(weight) || weight.rank() != 2 {
        return weight.t()?.contiguous();
    }
    weight.contiguous()?.apply_op1_no_bwd(&Transpose)
}

struct Transpose;

impl candle_core::CustomOp1 for Transpose {
    fn name(&self) -> &'static str {
        "hqflow-transpose"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const TILE: usize = 32;
        let src = slice(storage, layout, "transpose")?;
        let (rows, cols) = layout.shape().dims2()?;
        let mut dst = vec![0f32; rows * cols];
        // Each task writes TILE rows of the output (TILE columns of the input).
        dst.par_chunks_mut(TILE * rows.max(1))
            .enumerate()
            .for_each(|(block, out)| {
                let c0 = block * TILE;
                let width = out.len() / rows.max(1);
                for r0 in (0..rows).step_by(TILE) {
                    for r in r0..(r0 + TILE).min(rows) {
                        let row = &src[r * cols + c0..r * cols + c0 + width];
                        for (c, &v) in row.iter().enumerate() {
                            out[c * rows + r] = v;
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(dst), Shape::from((cols, rows))))
    }
}

struct Linear(WeightLayout);

impl Linear {
    fn forward(
        &self,
        xs: &[f32],
        x_layout: &Layout,
        weight: &[f32],
        w_layout: &Layout,
        bias: Option<&[f32]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (out, input) = self.0.out_in(w_layout.shape().dims2()?);
        let rows = xs.len() / input.max(1);
        let mut dst = match bias {
            Some(bias) => bias.repeat(rows),
            None => vec![0f32; rows * out],
        };
        product(
            &mut dst,
            bias.is_some(),
            xs,
            (weight, self.0),
            rows,
            out,
            input,
        );
        let mut dims = x_layout.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = out;
        }
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }

    /// d loss / d (x, W, b) from the upstream gradient: g W, gᵀ x and g's column sums (for a
    /// transposed weight g Wᵀ and xᵀ g, the gradient in the weight's own layout).
    fn backward(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (out, input) = self.0.out_in(weight.dims2()?);
        let g = grad.reshape(((), out))?;
        let x = xs.reshape(((), input))?;
        let (dx, dw) = match self.0 {
            WeightLayout::OutIn => (g.matmul(weight)?, g.t()?.matmul(&x)?),
            WeightLayout::InOut => (g.matmul(&weight.t()?)?, x.t()?.matmul(&g)?),
        };
        let db = fused::column_sum(&g)?;
        Ok((dx.reshape(xs.shape())?, dw, db))
    }
}

/// `dst (+)= xs Wᵀ` for row-major `xs` [rows, input], `weight` [out, input] (or its transpose
/// [input, out], by `layout`) and `dst` [rows, out], adding onto `dst` when `accumulate`.
#[allow(unsafe_code)]
fn product(
    dst: &mut [f32],
    accumulate: bool,
    xs: &[f32],
    (weight, layout): (&[f32], WeightLayout),
    rows: usize,
    out: usize,
    input: usize,
) {
    // Wᵀ's element (k, j) is weight[k·w_rs + j·w_cs].
    let (w_rs, w_cs) = match layout {
        WeightLayout::OutIn => (1, input as isize),
        WeightLayout::InOut => (out as isize, 1),
    };
    assert!(dst.len() == rows * out && xs.len() == rows * input && weight.len() == out * input);
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above bounds every index gemm forms from these sizes and strides:
    // dst is rows × out (row stride out), xs rows × input (row stride input), and Wᵀ's
    // element (k, j) is weight[k·w_rs + j·w_cs], within out × input either way.
    unsafe {
        gemm::gemm(
            rows,
            out,
            input,
            dst.as_mut_ptr(),
            1,
            out as isize,
            accumulate,
            xs.as_ptr(),
            1,
            input as isize,
            weight.as_ptr(),
            w_cs,
            w_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "hqflow-linear"
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
        let name = CustomOp3::name(self);
        let bias = slice(s3, l3, name)?;
        self.forward(
            slice(s1, l1, name)?,
            l1,
            slice(s2, l2, name)?,
            l2,
            Some(bias),
        )
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.backward(xs, weight, grad)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "hqflow-linear-no-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = CustomOp2::name(self);
        self.forward(slice(s1, l1, name)?, l1, slice(s2, l2, name)?, l2, None)
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.backward(xs, weight, grad)?;
        Ok((Some(dx), Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::{linear, linear_transposed, transposed};
    use crate::fused::tests::{max_diff, random};

    #[test]
    fn transposes_as_candle_does() {
        for (rows, cols) in [(40, 24), (33, 65), (1, 7), (64, 32)] {
            let w = random(&[rows, cols], 5);
            let want = w.t().and_then(|t| t.contiguous()).expect("candle");
            let got = transposed(&w).expect("transposed");
            assert_eq!(got.dims(), [cols, rows]);
            assert_eq!(max_diff(&got, &want), 0.0, "{rows}×{cols}");
        }
    }

    #[test]
    fn matches_the_composed_ops_forward_and_backward() {
        for (with_bias, transposed) in [(true, false), (false, false), (true, true), (false, true)]
        {
            let x = Var::from_tensor(&random(&[3, 37, 24], 1)).expect("x");
            let w = Var::from_tensor(&random(&[40, 24], 2)).expect("w");
            let b = Var::from_tensor(&random(&[40], 3)).expect("b");
            let upstream = random(&[3, 37, 40], 4);
            let bias = with_bias.then(|| b.as_tensor());
            let run = |fused: bool| {
                let y = if fused && transposed {
                    // The weight's gradient flows back through the transposing copy.
                    let w_t = w.as_tensor().t().and_then(|t| t.contiguous()).expect("wᵀ");
                    linear_transposed(x.as_tensor(), &w_t, bias)
                        .expect("linear")
                        .expect("the kernel applies")
                } else if fused {
                    linear(x.as_tensor(), w.as_tensor(), bias)
                        .expect("linear")
                        .expect("the kernel applies")
                } else {
                    let y = x
                        .as_tensor()
                        .broadcast_matmul(&w.as_tensor().t().expect("t"));
                    match bias {
                        Some(b) => y.and_then(|y| y.broadcast_add(b)),
                        None => y,
                    }
                    .expect("composed")
                };
                let loss = (&y * &upstream).and_then(|l| l.sum_all()).expect("loss");
                let grads = loss.backward().expect("backward");
                let grad = |v: &Var| grads.get(v.as_tensor()).cloned();
                (y, grad(&x), grad(&w), grad(&b))
            };
            let (fused, composed) = (run(true), run(false));
            assert!(max_diff(&fused.0, &composed.0) < 1e-5, "output differs");
            for (got, want) in [(&fused.1, &composed.1), (&fused.2, &composed.2)] {
                let (got, want) = (got.as_ref().expect("grad"), want.as_ref().expect("grad"));
                assert!(max_diff(got, want) < 1e-4, "gradient differs");
            }
            match (&fused.3, &composed.3) {
                (Some(got), Some(want)) => assert!(max_diff(got, want) < 1e-4),
                (None, None) => assert!(!with_bias),
                _ => panic!("the bias gradient is there on one side only"),
            }
        }
    }
}
