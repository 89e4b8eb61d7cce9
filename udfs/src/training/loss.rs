//! The training objective: CLIP's symmetric InfoNCE with a learnable temperature, plus
//! HQ-CLIP's negative descriptions as extra hard negatives ([`contrastive`]) and its short
//! tags as a classification signal ([`tag_classification`]).
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

/// One labelled (image, tag) entry of a batch: row `row` of the images, entry `tag` of the
/// batch's tag list, and whether the tag is true of the image (a positive tag) or false (a
/// negative tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagLabel {
    /// The image's row.
    pub row: usize,
    /// The tag's index in the batch's tag list.
    pub tag: usize,
    /// True for a positive tag, false for a negative one.
    pub positive: bool,
}

/// The short-tag term of one batch.
pub struct TagLoss {
    /// Mean binary cross-entropy over the labelled entries: a scalar tensor.
    pub total: Tensor,
    /// Share of labelled entries on the right side of 0.
    pub accuracy: f32,
}

/// Binary cross-entropy of logits `z` against 0/1 targets `y`, element by element, in the
/// stable form max(z, 0) − y·z + ln(1 + e^−|z|).
pub fn bce_with_logits(z: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    (z.relu()? - (z * y)?)? + ((z.abs()?.neg()?.exp()? + 1.0)?.log()?)
}

/// HQ-CLIP's short-tag classification, our formulation: the classifier's weights are the text
/// tower's own embeddings of the tags (a head tied to the text tower, so the checkpoint stays
/// a plain CLIP and zero-shot prompts benefit), and each labelled (image, tag) entry is a
/// binary decision on
///
/// ```text
/// z = exp(tag_scale) · cos(I_i, T_k) + tag_bias,   BCE(z, 1 for a positive tag, 0 for a negative)
/// ```
///
/// averaged over the labelled entries only (a tag an image's annotation does not mention is
/// no evidence either way). `tags` [K, D] are the features of the batch's tags.
pub fn tag_classification(
    images: &Tensor,
    tags: &Tensor,
    labels: &[TagLabel],
    tag_scale: &Tensor,
    tag_bias: &Tensor,
) -> ModelResult<TagLoss> {
    let device = images.device();
    let k = tags.dim(0)?;
    let logits = l2_normalize(images)?
        .matmul(&l2_normalize(tags)?.t()?)?
        .broadcast_mul(&tag_scale.exp()?)?
        .broadcast_add(tag_bias)?;
    let index: Vec<u32> = labels.iter().map(|l| (l.row * k + l.tag) as u32).collect();
    let targets: Vec<f32> = labels
        .iter()
        .map(|l| f32::from(u8::from(l.positive)))
        .collect();
    let n = labels.len();
    let z = logits
        .flatten_all()?
        .index_select(&Tensor::from_vec(index, n, device)?, 0)?;
    let y = Tensor::from_vec(targets.clone(), n, device)?;
    let total = bce_with_logits(&z, &y)?.mean_all()?;
    let decided = z.to_vec1::<f32>()?;
    let right = decided
        .iter()
        .zip(&targets)
        .filter(|(z, y)| (**z > 0.0) == (**y > 0.5))
        .count();
    Ok(TagLoss {
        total,
        accuracy: right as f32 / n.max(1) as f32,
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

    #[test]
    fn tag_loss_is_binary_cross_entropy_on_labelled_entries() {
        let img = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let tags = t(&[[1.0, 0.0], [0.0, 2.0]]);
        // Row 0: tag 0 true (cos 1), tag 1 false (cos 0); row 1: tag 1 false (cos 1).
        let labels = [
            TagLabel {
                row: 0,
                tag: 0,
                positive: true,
            },
            TagLabel {
                row: 0,
                tag: 1,
                positive: false,
            },
            TagLabel {
                row: 1,
                tag: 1,
                positive: false,
            },
        ];
        let loss =
            tag_classification(&img, &tags, &labels, &scale(0.0), &scale(-0.5)).expect("loss");
        // z = cos − 0.5: 0.5, −0.5, 0.5; BCE: ln(1+e^−0.5), ln(1+e^−0.5), ln(1+e^0.5).
        let softplus = |x: f32| (1.0 + x.exp()).ln();
        let want = (2.0 * softplus(-0.5) + softplus(0.5)) / 3.0;
        let got: f32 = loss.total.to_scalar().expect("scalar");
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!((loss.accuracy - 2.0 / 3.0).abs() < 1e-6);
    }
}
