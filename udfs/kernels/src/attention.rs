//! Multi-head scaled dot-product attention for training as one CPU kernel with its own
//! backward pass.
//!
//! Composed from candle's ops, attention is about fifteen graph nodes per layer (scaling,
//! splitting each of q, k and v into heads with a copy, transposing keys, the two matrix
//! products, the mask's broadcast add, softmax, merging heads with another copy), and
//! candle's backward pass zero-fills and then adds every gradient it hands each node: for
//! CLIP's short sequences those passes over full-size tensors cost more than the products
//! themselves. Here the heads are read in place from the projections' [batch, tokens, width]
//! outputs, one task per sequence, and the backward pass recomputes each row's attention
//! weights from q and k (as FlashAttention does) instead of keeping them.
//!
//! On other devices and dtypes, or with a mask of another shape, the composed ops run; the
//! tests check values and gradients against them.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::fused::{fast_path, lane_dot, slice, softmax_in_place, storage_slice, vectorized};

/// Attention of `q` [batch, m, width] over keys `k` and values `v` [batch, n, width], each
/// split into `heads` heads, scores scaled by `scale` plus the additive `mask` (a constant:
/// [m, n], or [1 or batch, 1, m, n]); returns [batch, m, width], the heads side by side.
/// `None` when this kernel does not apply (not a CPU f32 tensor, another mask shape): the
/// caller composes it from candle's ops.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f32,
    mask: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    match Attention::checked(q, k, v, heads, scale, mask)? {
        None => Ok(None),
        Some(op) => Ok(Some(q.contiguous()?.apply_op3(
            &k.contiguous()?,
            &v.contiguous()?,
            op,
        )?)),
    }
}

impl Attention {
    /// The op for these inputs, or `None` where the CPU kernels do not apply (see
    /// [`attention`]); an error where the shapes do not fit.
    pub(crate) fn checked(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        scale: f32,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Option<Self>> {
        if !(fast_path(q) && fast_path(k) && fast_path(v)) {
            return Ok(None);
        }
        let (b, m, width) = q.dims3()?;
        let (kb, n, kw) = k.dims3()?;
        if kb != b || kw != width || v.dims3()? != (b, n, width) || heads == 0 || width % heads != 0
        {
            candle_core::bail!(
                "attention: q {:?}, k {:?}, v {:?} do not fit {heads} heads",
                q.dims(),
                k.dims(),
                v.dims()
            );
        }
        let mask = match mask {
            None => None,
            Some(mask) => {
                let batches = match *mask.dims() {
                    [mm, mn] if (mm, mn) == (m, n) => 1,
                    [mb, 1, mm, mn] if (mb == 1 || mb == b) && (mm, mn) == (m, n) => mb,
                    _ => return Ok(None),
                };
                if !fast_path(mask) {
                    return Ok(None);
                }
                let values = mask.flatten_all()?.to_vec1::<f32>()?;
                Some(Mask { values, batches })
            }
        };
        Ok(Some(Attention { heads, scale, mask }))
    }
}

/// An additive mask over [m, n] scores, one per sequence or one for all.
pub(crate) struct Mask {
    values: Vec<f32>,
    batches: usize,
}

pub(crate) struct Attention {
    heads: usize,
    pub(crate) scale: f32,
    mask: Option<Mask>,
}

/// The sizes of one call: query tokens, key tokens, width, heads, head width.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) width: usize,
    pub(crate) heads: usize,
    pub(crate) d: usize,
}

impl Attention {
    pub(crate) fn dims(&self, q: &Layout, k: &Layout) -> candle_core::Result<Dims> {
        let (_, m, width) = q.shape().dims3()?;
        let n = k.shape().dims3()?.1;
        Ok(Dims {
            m,
            n,
            width,
            heads: self.heads,
            d: width / self.heads,
        })
    }

    /// Runs `task` on every sequence, in parallel: its queries [m, width], keys and values
    /// [n, width], mask rows [m, n] (if any) and output rows [m, width]; returns the output,
    /// [batch, m, width] like `q`.
    pub(crate) fn each_sequence(
        &self,
        (q, k, v): (&[f32], &[f32], &[f32]),
        dims: Dims,
        task: impl Fn(Sequence<'_>, &mut [f32]) + Sync,
    ) -> Vec<f32> {
        let Dims { m, n, width, .. } = dims;
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(m * width)
            .enumerate()
            .for_each(|(seq, out)| {
                let sequence = Sequence {
                    q: &q[seq * m * width..][..m * width],
                    k: &k[seq * n * width..][..n * width],
                    v: &v[seq * n * width..][..n * width],
                    mask: self.mask_of(seq, dims),
                };
                task(sequence, out)
            });
        out
    }

    /// The mask's rows for sequence `seq`, [m, n], if there is a mask.
    pub(crate) fn mask_of(&self, seq: usize, dims: Dims) -> Option<&[f32]> {
        self.mask.as_ref().map(|mask| {
            let at = if mask.batches == 1 { 0 } else { seq };
            &mask.values[at * dims.m * dims.n..(at + 1) * dims.m * dims.n]
        })
    }
}

/// One sequence's rows (see [`Attention::each_sequence`]).
pub(crate) struct Sequence<'a> {
    pub(crate) q: &'a [f32],
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) mask: Option<&'a [f32]>,
}

/// One head of one sequence, copied out of the [tokens, width] rows: keys transposed
/// [d, n] (so a query's scores are sums of contiguous rows), keys [n, d], values [n, d]
/// and values transposed [d, n].
struct Head {
    keys_t: Vec<f32>,
    keys: Vec<f32>,
    values: Vec<f32>,
    values_t: Vec<f32>,
}

impl Head {
    fn new(dims: Dims) -> Self {
        let size = dims.n * dims.d;
        Head {
            keys_t: vec![0.0; size],
            keys: vec![0.0; size],
            values: vec![0.0; size],
            values_t: vec![0.0; size],
        }
    }

    /// Loads head `h` from one sequence's key and value rows ([n, width] each).
    #[inline(always)]
    fn load(&mut self, k: &[f32], v: &[f32], h: usize, dims: Dims) {
        let Dims { n, d, width, .. } = dims;
        for j in 0..n {
            let krow = &k[j * width + h * d..][..d];
            let vrow = &v[j * width + h * d..][..d];
            self.keys[j * d..(j + 1) * d].copy_from_slice(krow);
            self.values[j * d..(j + 1) * d].copy_from_slice(vrow);
            for c in 0..d {
                self.keys_t[c * n + j] = krow[c];
                self.values_t[c * n + j] = vrow[c];
            }
        }
    }

    /// Query `qrow`'s attention weights over the keys into `p` (length n): softmax of the
    /// scaled scores plus the mask row.
    #[inline(always)]
    fn weights(&self, qrow: &[f32], scale: f32, mask_row: Option<&[f32]>, p: &mut [f32]) {
        let n = p.len();
        match mask_row {
            Some(row) => p.copy_from_slice(row),
            None => p.fill(0.0),
        }
        for (c, &qc) in qrow.iter().enumerate() {
            axpy(p, qc * scale, &self.keys_t[c * n..(c + 1) * n]);
        }
        softmax_in_place(p);
    }
}

/// `y += a·x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "hqflow-attention"
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
        let dims = self.dims(l1, l2)?;
        let Dims { m, n, width, d, .. } = dims;
        let out = self.each_sequence((q, k, v), dims, |sequence, out| {
            vectorized(
                #[inline(always)]
                || {
                    let Sequence { q, k, v, mask } = sequence;
                    let mut head = Head::new(dims);
                    let mut p = vec![0f32; n];
                    for h in 0..dims.heads {
                        head.load(k, v, h, dims);
                        for i in 0..m {
                            let qrow = &q[i * width + h * d..][..d];
                            head.weights(qrow, self.scale, mask.map(|r| &r[i * n..][..n]), &mut p);
                            let orow = &mut out[i * width + h * d..][..d];
                            for (j, &pj) in p.iter().enumerate() {
                                axpy(orow, pj, &head.values[j * d..(j + 1) * d]);
                            }
                        }
                    }
                },
            )
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let ((sq, lq), (sk, lk), (sv, lv), (sg, lg)) = (
            q.storage_and_layout(),
            k.storage_and_layout(),
            v.storage_and_layout(),
            grad.storage_and_layout(),
        );
        let (qs, ks, vs, gs) = (
            storage_slice(&sq, lq, "attention")?,
            storage_slice(&sk, lk, "attention")?,
            storage_slice(&sv, lv, "attention")?,
            storage_slice(&sg, lg, "attention")?,
        );
        let dims = self.dims(lq, lk)?;
        let (dq, dk, dv) = self.gradients(qs, ks, vs, gs, dims);
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, lq.shape().clone(), device)?),
            Some(Tensor::from_vec(dk, lk.shape().clone(), device)?),
            Some(Tensor::from_vec(dv, lv.shape().clone(), device)?),
        ))
    }
}

impl Attention {
    /// d loss / d (q, k, v) from the upstream gradient `g` of the output. Per query row i
    /// with weights p (recomputed) and upstream row gᵢ: dv_j += p_j·gᵢ; dp_j = gᵢ·v_j;
    /// ds = p ⊙ (dp − p·dp); dqᵢ = scale·Σ_j ds_j k_j; dk_j += scale·ds_j qᵢ.
    fn gradients(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        g: &[f32],
        dims: Dims,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let Dims { m, n, width, d, .. } = dims;
        let mut dq = vec![0f32; q.len()];
        let mut dk = vec![0f32; k.len()];
        let mut dv = vec![0f32; v.len()];
        dq.par_chunks_mut(m * width)
            .zip(dk.par_chunks_mut(n * width))
            .zip(dv.par_chunks_mut(n * width))
            .enumerate()
            .for_each(|(seq, ((dq, dk), dv))| {
                vectorized(
                    #[inline(always)]
                    || {
                        let (q, k, v, g) = (
                            &q[seq * m * width..][..m * width],
                            &k[seq * n * width..][..n * width],
                            &v[seq * n * width..][..n * width],
                            &g[seq * m * width..][..m * width],
                        );
                        let mask = self.mask_of(seq, dims);
                        let mut head = Head::new(dims);
                        let (mut p, mut ds) = (vec![0f32; n], vec![0f32; n]);
                        let (mut dk_h, mut dv_h) = (vec![0f32; n * d], vec![0f32; n * d]);
                        for h in 0..dims.heads {
                            head.load(k, v, h, dims);
                            dk_h.fill(0.0);
                            dv_h.fill(0.0);
                            for i in 0..m {
                                let qrow = &q[i * width + h * d..][..d];
                                let grow = &g[i * width + h * d..][..d];
                                head.weights(
                                    qrow,
                                    self.scale,
                                    mask.map(|r| &r[i * n..][..n]),
                                    &mut p,
                                );
                                // dp = gᵢ Vᵀ, then ds in place.
                                ds.fill(0.0);
                                for (c, &gc) in grow.iter().enumerate() {
                                    axpy(&mut ds, gc, &head.values_t[c * n..(c + 1) * n]);
                                }
                                let dot = lane_dot(&p, &ds);
                                ds.iter_mut()
                                    .zip(&p)
                                    .for_each(|(ds, p)| *ds = p * (*ds - dot) * self.scale);
                                let dqrow = &mut dq[i * width + h * d..][..d];
                                for j in 0..n {
                                    if p[j] != 0.0 {
                                        axpy(&mut dv_h[j * d..(j + 1) * d], p[j], grow);
                                    }
                                    if ds[j] != 0.0 {
                                        axpy(dqrow, ds[j], &head.keys[j * d..(j + 1) * d]);
                                        axpy(&mut dk_h[j * d..(j + 1) * d], ds[j], qrow);
                                    }
                                }
                            }
                            for j in 0..n {
                                dk[j * width + h * d..][..d]
                                    .copy_from_slice(&dk_h[j * d..(j + 1) * d]);
                                dv[j * width + h * d..][..d]
                                    .copy_from_slice(&dv_h[j * d..(j + 1) * d]);
                            }
                        }
                    },
                )
            });
        (dq, dk, dv)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, Tensor, Var};

    use super::attention;
    use crate::fused::tests::{max_diff, random};

    /// Attention composed from candle's ops, as the inference path runs it.
    fn composed(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        scale: f64,
        mask: Option<&Tensor>,
    ) -> Tensor {
        let split = |t: &Tensor| {
            let (b, n, w) = t.dims3().expect("dims");
            t.reshape((b, n, heads, w / heads))
                .and_then(|t| t.transpose(1, 2))
                .and_then(|t| t.contiguous())
                .expect("split")
        };
        let (b, m, w) = q.dims3().expect("dims");
        let mut scores = (split(q) * scale)
            .and_then(|q| q.matmul(&split(k).t()?.contiguous()?))
            .expect("scores");
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask).expect("mask");
        }
        let max = scores.max_keepdim(D::Minus1).expect("max");
        let e = scores
            .broadcast_sub(&max)
            .and_then(|s| s.exp())
            .expect("exp");
        let p = e
            .broadcast_div(&e.sum_keepdim(D::Minus1).expect("sum"))
            .expect("softmax");
        p.matmul(&split(v))
            .and_then(|o| o.transpose(1, 2))
            .and_then(|o| o.reshape((b, m, w)))
            .expect("out")
    }

    /// Values and gradients of the kernel against the composed ops for `mask`.
    fn check(b: usize, m: usize, n: usize, mask: Option<Tensor>) {
        let (heads, width) = (4, 32);
        let scale = 0.25;
        let q = Var::from_tensor(&random(&[b, m, width], 1)).expect("q");
        let k = Var::from_tensor(&random(&[b, n, width], 2)).expect("k");
        let v = Var::from_tensor(&random(&[b, n, width], 3)).expect("v");
        let upstream = random(&[b, m, width], 4);
        let run = |fused: bool| {
            let out = if fused {
                attention(
                    q.as_tensor(),
                    k.as_tensor(),
                    v.as_tensor(),
                    heads,
                    0.25,
                    mask.as_ref(),
                )
                .expect("attention")
                .expect("the kernel applies")
            } else {
                composed(
                    q.as_tensor(),
                    k.as_tensor(),
                    v.as_tensor(),
                    heads,
                    scale,
                    mask.as_ref(),
                )
            };
            let loss = (&out * &upstream).and_then(|l| l.sum_all()).expect("loss");
            let grads = loss.backward().expect("backward");
            let grad = |var: &Var| grads.get(var.as_tensor()).expect("a gradient").clone();
            (out, grad(&q), grad(&k), grad(&v))
        };
        let (fused, reference) = (run(true), run(false));
        assert!(max_diff(&fused.0, &reference.0) < 1e-5, "output differs");
        assert!(max_diff(&fused.1, &reference.1) < 1e-5, "d q differs");
        assert!(max_diff(&fused.2, &reference.2) < 1e-5, "d k differs");
        assert!(max_diff(&fused.3, &reference.3) < 1e-5, "d v differs");
    }

    fn causal(n: usize) -> Tensor {
        let values: Vec<f32> = (0..n * n)
            .map(|at| {
                if at % n > at / n {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_vec(values, (n, n), &Device::Cpu).expect("mask")
    }

    #[test]
    fn matches_the_composed_ops_without_a_mask() {
        check(3, 17, 17, None);
    }

    #[test]
    fn matches_the_composed_ops_with_a_causal_mask() {
        check(3, 21, 21, Some(causal(21)));
    }

    #[test]
    fn matches_the_composed_ops_with_per_sequence_masks_and_fewer_queries() {
        // Two queries per sequence over 19 keys, each sequence hiding a different tail.
        let (b, m, n) = (3, 2, 19);
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
        check(b, m, n, Some(mask));
    }

    #[test]
    fn another_mask_shape_leaves_it_to_the_composed_ops() {
        let q = random(&[2, 5, 8], 1);
        let mask = random(&[2, 2, 5, 5], 2);
        let got = attention(&q, &q, &q, 2, 1.0, Some(&mask)).expect("no error");
        assert!(got.is_none());
    }
}
