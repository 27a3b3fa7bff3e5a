//! The log-probability of each scored position's target token under the output head, a slice
//! of the vocabulary at a time (the memory pattern of Liger's fused linear cross-entropy).
//! Whole, the head's logits are positions × 151,936 floats, and autograd keeps them, their
//! log-softmax's intermediates and, in the backward pass, a gradient of the same size:
//! gigabytes at a thousand tokens. Here each slice of the head's rows is multiplied with every
//! position at once (one large product per slice, so the slice's weights are packed for the
//! matrix kernel once, not once per position chunk), its logits fold into a running log-sum-exp
//! per position, and are dropped; the backward pass multiplies each slice again and turns its
//! softmax into the hidden states' gradient (and the slice's own, when the head is trained)
//! before the next.
//!
//! With `z` a position's logits, `t` its target and `g` the gradient of its log-probability:
//! `log p(t) = z_t − logsumexp(z)`, `∂z = g (onehot(t) − softmax(z))`, so `∂h = g W_t − Σ_slices
//! (g softmax(z_slice)) W_slice` and `∂W_slice = (g softmax)ᵀ h`, with `g h` added to each
//! target's row. The log-sum-exp runs in f32 whatever the compute dtype, as the whole-matrix
//! form in `dpo_batch.rs` does. For WPO the same pass also folds `Σ exp(2z)` into `log Σ p²`
//! (`= logsumexp(2z) − 2 logsumexp(z)`), detached as TRL's is.

use candle_core::{D, DType, Result, Tensor};

use super::custom_backward::{Backward, attach};
use super::linear_product::linear_product;
use super::vocabulary_kernels::{slice_statistics, softmax_spread};

/// The scores of a batch's scored positions.
pub struct PositionScores {
    /// Log-probability of each position's target, `(positions, 1)` in f32, differentiable.
    pub picked: Tensor,
    /// Mean logit over the vocabulary at each position, `(positions,)` in f32, detached.
    pub mean_logits: Tensor,
    /// `log Σ_v p(v)²` at each position, `(positions,)` in f32, detached; when asked for.
    pub log_sum_squared_probs: Option<Tensor>,
}

/// The log-probabilities of `targets` `(positions,)` after the output head `(vocab, hidden)`
/// on `hidden` `(positions, hidden)`, computed a slice of the vocabulary at a time, each
/// slice's f32 logits at most `chunk_bytes` (and at least 8 tokens wide); `squared_probs`
/// adds `log_sum_squared_probs`.
pub fn vocabulary_logps(
    hidden: &Tensor,
    head: &Tensor,
    targets: &Tensor,
    chunk_bytes: usize,
    squared_probs: bool,
) -> Result<PositionScores> {
    let head = head.to_dtype(hidden.dtype())?;
    let (positions, _) = hidden.dims2()?;
    let (vocab, _) = head.dims2()?;
    let slice = (chunk_bytes / (positions.max(1) * 4))
        .max(8)
        .min(vocab.max(1));
    let (hidden_value, head_value) = (hidden.detach(), head.detach());
    // Per position: the running max, Σ exp(z − max) and Σ exp(2(z − max)) over the slices
    // so far.
    let mut running: Option<(Tensor, Tensor, Option<Tensor>)> = None;
    let mut logit_sum = Tensor::zeros((positions, 1), DType::F32, hidden.device())?;
    for start in (0..vocab).step_by(slice) {
        let width = slice.min(vocab - start);
        let logits = linear_product(&hidden_value, &head_value.narrow(0, start, width)?)?
            .to_dtype(DType::F32)?;
        let stats = slice_statistics(&logits, squared_probs)?;
        running = Some(match running {
            None => (stats.max, stats.exp_sum, stats.square_sum),
            Some((old_max, old_sum, old_squares)) => {
                let max = old_max.maximum(&stats.max)?;
                let (old_shift, slice_shift) = ((old_max - &max)?, (stats.max - &max)?);
                let sum =
                    ((old_sum * old_shift.exp()?)? + (stats.exp_sum * slice_shift.exp()?)?)?;
                let squares = match (old_squares, stats.square_sum) {
                    (Some(old), Some(new)) => Some(
                        ((old * (old_shift * 2.0)?.exp()?)?
                            + (new * (slice_shift * 2.0)?.exp()?)?)?,
                    ),
                    _ => None,
                };
                (max, sum, squares)
            }
        });
        logit_sum = (logit_sum + stats.logit_sum)?;
    }
    let Some((max, sum, squares)) = running else {
        candle_core::bail!("vocabulary-logps: an empty vocabulary");
    };
    let log_sum = (&max + sum.log()?)?;
    let log_sum_squared_probs = match squares {
        Some(squares) => Some(((max * 2.0)? + squares.log()? - (&log_sum * 2.0)?)?.squeeze(1)?),
        None => None,
    };
    let target_logits = target_logits(&hidden_value, &head_value, targets)?;
    let picked = (target_logits - &log_sum)?;
    let backward = VocabularyBackward {
        targets: targets.clone(),
        log_sum,
        slice,
    };
    Ok(PositionScores {
        picked: attach(picked, &[hidden, &head], backward)?,
        mean_logits: (logit_sum / vocab as f64)?.squeeze(1)?,
        log_sum_squared_probs,
    })
}

/// Each position's logit for its own target, `h · W_t`, rounded through the compute dtype
/// as the head's product rounds it: `(positions, 1)` in f32.
fn target_logits(hidden: &Tensor, head: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let rows = head.index_select(targets, 0)?.to_dtype(DType::F32)?;
    (hidden.to_dtype(DType::F32)? * rows)?
        .sum_keepdim(D::Minus1)?
        .to_dtype(hidden.dtype())?
        .to_dtype(DType::F32)
}

struct VocabularyBackward {
    targets: Tensor,
    /// `logsumexp(z)` per position, `(positions, 1)` in f32.
    log_sum: Tensor,
    slice: usize,
}

impl Backward for VocabularyBackward {
    fn name(&self) -> &'static str {
        "vocabulary-logps"
    }

    fn backward(
        &self,
        args: &[&Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (hidden, head) = (args[0].detach(), args[1].detach());
        let dtype = hidden.dtype();
        let (vocab, _) = head.dims2()?;
        // The gradient's products run in f32 (no-ops in f32; under half precision the
        // logits' gradient is never rounded, and slicing adds no rounding to the sums).
        let wide_hidden = hidden.to_dtype(DType::F32)?;
        // The target's part, `g W_t` (and `g h` into the target rows of a trained head).
        let rows = head.index_select(&self.targets, 0)?.to_dtype(DType::F32)?;
        let mut hidden_grad = grad.broadcast_mul(&rows)?;
        let mut head_slices = Vec::new();
        for start in (0..vocab).step_by(self.slice) {
            let width = self.slice.min(vocab - start);
            let weights = head.narrow(0, start, width)?;
            let logits = linear_product(&hidden, &weights)?.to_dtype(DType::F32)?;
            let spread = softmax_spread(&logits, &self.log_sum, grad)?;
            hidden_grad = (hidden_grad + spread.matmul(&weights.to_dtype(DType::F32)?)?)?;
            if args[1].track_op() {
                head_slices.push(spread.t()?.matmul(&wide_hidden)?);
            }
        }
        let head_grad = if head_slices.is_empty() {
            None
        } else {
            let targeted = grad.broadcast_mul(&wide_hidden)?;
            Some(
                Tensor::cat(&head_slices, 0)?
                    .index_add(&self.targets, &targeted, 0)?
                    .to_dtype(head.dtype())?,
            )
        };
        Ok(vec![Some(hidden_grad.to_dtype(dtype)?), head_grad])
    }
}
