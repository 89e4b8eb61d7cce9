//! The training objective: CLIP's symmetric InfoNCE with a learnable temperature, plus
//! HQ-CLIP's negative descriptions as extra hard negatives.
//!
//! Our formulation (HQ-CLIP does not publish its formulas): with L2-normalized image
//! features `I`, text features `T`, scale `s = exp(logit_scale)` and for row `i` a negative
//! description `N_i` (a long text that contradicts image `i`):
//!
//! ```text
//! L_t2i = CE over images j of s·T_i·I_j, target i
//! L_i2t = CE over texts  [T_1 … T_B, N_i] with logits s·I_i·T_j and s·I_i·N_i + ln(w), target i
//! L     = ½ (L_i2t + L_t2i)
//! ```
//!
//! The weight `w ≥ 0` scales the hard negative's share of the softmax denominator
//! (`w·exp(s·I_i·N_i)`): `w = 1` makes it one more candidate, `w = 0` (or a row without a
//! negative) gives exactly plain CLIP. The negative only competes for its own image; it is
//! never a candidate for other images, nor an anchor on the text side.

use candle_core::{D, DType, Tensor};

use crate::models::ModelResult;

/// Rows without a negative get this logit: exp of it vanishes next to any real logit
/// (|s·cos| ≤ 100), and unlike −∞ it keeps every gradient finite.
const ABSENT: f32 = -1.0e4;

/// Divides each row by its L2 norm (composed ops, so gradients flow).
pub fn l2_normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norm = (xs.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    xs.broadcast_div(&norm)
}

/// The loss terms of one batch.
pub struct ContrastiveLoss {
    /// The total, ½ (i→t + t→i): a scalar tensor to call `backward` on.
    pub total: Tensor,
    /// Image→text cross-entropy (hard negatives included).
    pub image_to_text: f32,
    /// Text→image cross-entropy.
    pub text_to_image: f32,
    /// Share of images whose own caption scored above their negative (rows with one).
    pub negative_accuracy: Option<f32>,
}

/// The loss for `images` and `texts` ([B, D] each, row i a pair), with `negatives` [B, D]
/// and `has_negative` (which rows have one), under `logit_scale` (a scalar parameter; its
/// exponential multiplies the cosines).
pub fn contrastive(
    images: &Tensor,
    texts: &Tensor,
    negatives: Option<(&Tensor, &[bool])>,
    negative_weight: f64,
    logit_scale: &Tensor,
) -> ModelResult<ContrastiveLoss> {
    let b = images.dim(0)?;
    let device = images.device();
    let img = l2_normalize(images)?;
    let txt = l2_normalize(texts)?;
    let scale = logit_scale.exp()?;
    let logits = img.matmul(&txt.t()?)?.broadcast_mul(&scale)?;
    let targets = Tensor::arange(0u32, b as u32, device)?;
    let t2i = candle_nn::loss::cross_entropy(&logits.t()?.contiguous()?, &targets)?;
    let mut negative_accuracy = None;
    let i2t_logits = match negatives {
        Some((neg, has)) if negative_weight > 0.0 && has.iter().any(|&h| h) => {
            let neg = l2_normalize(neg)?;
            let cos_neg = (&img * &neg)?.sum_keepdim(D::Minus1)?;
            let cos_pos = (&img * &txt)?.sum_keepdim(D::Minus1)?;
            let offsets: Vec<f32> = has
                .iter()
                .map(|&h| {
                    if h {
                        negative_weight.ln() as f32
                    } else {
                        ABSENT
                    }
                })
                .collect();
            let offsets = Tensor::from_vec(offsets, (b, 1), device)?;
            let neg_logits = (cos_neg.broadcast_mul(&scale)? + offsets)?;
            let pos = cos_pos.flatten_all()?.to_vec1::<f32>()?;
            let negs = cos_neg.flatten_all()?.to_vec1::<f32>()?;
            let (wins, rows) = has
                .iter()
                .zip(pos.iter().zip(&negs))
                .filter(|(h, _)| **h)
                .fold((0usize, 0usize), |(w, n), (_, (p, q))| {
                    (w + usize::from(p > q), n + 1)
                });
            negative_accuracy = Some(wins as f32 / rows.max(1) as f32);
            Tensor::cat(&[&logits, &neg_logits], 1)?
        }
        _ => logits,
    };
    let i2t = candle_nn::loss::cross_entropy(&i2t_logits, &targets)?;
    let total = ((&i2t + &t2i)? * 0.5)?;
    Ok(ContrastiveLoss {
        image_to_text: i2t.to_dtype(DType::F32)?.to_scalar()?,
        text_to_image: t2i.to_dtype(DType::F32)?.to_scalar()?,
        total,
        negative_accuracy,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn t(rows: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 2), &Device::Cpu).expect("tensor")
    }

    fn scale(v: f32) -> Tensor {
        Tensor::new(v, &Device::Cpu).expect("scalar")
    }

    #[test]
    fn matches_a_hand_computed_infonce() {
        // Orthogonal pairs: cos = 1 on the diagonal, 0 off it; s = e^0 = 1.
        let x = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let loss = contrastive(&x, &x, None, 1.0, &scale(0.0)).expect("loss");
        let expected = -(1f32.exp() / (1f32.exp() + 1.0)).ln();
        let total: f32 = loss.total.to_scalar().expect("scalar");
        assert!((total - expected).abs() < 1e-5, "{total} vs {expected}");
    }

    #[test]
    fn a_hard_negative_raises_the_loss_and_weight_zero_removes_it() {
        let img = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let txt = t(&[[1.0, 0.2], [0.2, 1.0]]);
        let neg = t(&[[1.0, 0.1], [0.0, -1.0]]);
        let plain = contrastive(&img, &txt, None, 1.0, &scale(1.0)).expect("loss");
        let with =
            contrastive(&img, &txt, Some((&neg, &[true, true])), 1.0, &scale(1.0)).expect("loss");
        let zero =
            contrastive(&img, &txt, Some((&neg, &[true, true])), 0.0, &scale(1.0)).expect("loss");
        let absent =
            contrastive(&img, &txt, Some((&neg, &[false, false])), 1.0, &scale(1.0)).expect("loss");
        let v = |l: &ContrastiveLoss| l.total.to_scalar::<f32>().expect("scalar");
        assert!(v(&with) > v(&plain));
        assert!((v(&zero) - v(&plain)).abs() < 1e-6);
        assert!((v(&absent) - v(&plain)).abs() < 1e-6);
        // Row 0's negative is closer to its image than its caption is; row 1's is not.
        assert_eq!(with.negative_accuracy, Some(0.5));
    }
}
