//! The per-row work `vocabulary_logps.rs` does on each slice of the logits: each position's
//! maximum, sum of `exp(z − max)` and sum of logits (and, for WPO, sum of `exp(2(z − max))`),
//! and the softmax's share of the gradient, `−g · exp(z − logsumexp)`. On the CPU each is one pass per row with vectorized
//! exponentials (`vector_math.rs`), rows spread over the cores, where candle's ops take four
//! passes and a slice-sized tensor each; elsewhere (CUDA) they are those candle ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, D, Layout, Result, Shape, Tensor};
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::cpu_tensor::{contiguous_f32, is_cpu_f32};
use super::vector_math::{exp_scaled_shifted, max_scaled};

/// One slice's statistics per row, each `(positions, 1)` in f32.
pub struct SliceStatistics {
    pub max: Tensor,
    /// `Σ exp(z − max)`.
    pub exp_sum: Tensor,
    /// `Σ z`.
    pub logit_sum: Tensor,
    /// `Σ exp(2(z − max))`, when asked for: with the log-sum-exp it gives `log Σ p²`.
    pub square_sum: Option<Tensor>,
}

/// The statistics of each row of f32 `logits` `(positions, width)`; `squares` adds
/// `square_sum`.
pub fn slice_statistics(logits: &Tensor, squares: bool) -> Result<SliceStatistics> {
    if is_cpu_f32(logits) {
        let stats = logits
            .contiguous()?
            .apply_op1_no_bwd(&SliceStatisticsOp { squares })?;
        return Ok(SliceStatistics {
            max: stats.narrow(1, 0, 1)?,
            exp_sum: stats.narrow(1, 1, 1)?,
            logit_sum: stats.narrow(1, 2, 1)?,
            square_sum: if squares {
                Some(stats.narrow(1, 3, 1)?)
            } else {
                None
            },
        });
    }
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    Ok(SliceStatistics {
        exp_sum: shifted.exp()?.sum_keepdim(D::Minus1)?,
        logit_sum: logits.sum_keepdim(D::Minus1)?,
        square_sum: if squares {
            Some((shifted * 2.0)?.exp()?.sum_keepdim(D::Minus1)?)
        } else {
            None
        },
        max,
    })
}

/// `−grad · exp(logits − log_sum)` for f32 `logits` `(positions, width)`, `log_sum` and
/// `grad` `(positions, 1)`: the softmax's part of the logits' gradient.
pub fn softmax_spread(logits: &Tensor, log_sum: &Tensor, grad: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(logits) && is_cpu_f32(grad) {
        return logits.contiguous()?.apply_op3_no_bwd(
            &log_sum.contiguous()?,
            &grad.contiguous()?,
            &SoftmaxSpread,
        );
    }
    logits
        .broadcast_sub(log_sum)?
        .exp()?
        .broadcast_mul(grad)?
        .neg()
}

fn width(layout: &Layout) -> Result<usize> {
    match layout.shape().dims() {
        [_, width] => Ok((*width).max(1)),
        dims => candle_core::bail!("vocabulary kernels: logits of shape {dims:?}"),
    }
}

struct SliceStatisticsOp {
    squares: bool,
}

impl CustomOp1 for SliceStatisticsOp {
    fn name(&self) -> &'static str {
        "vocabulary-slice-statistics"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits = contiguous_f32(storage, layout, "vocabulary-kernels")?;
        let width = width(layout)?;
        let rows = logits.len() / width;
        let columns = if self.squares { 4 } else { 3 };
        let mut stats = vec![0f32; rows * columns];
        stats
            .par_chunks_mut(columns)
            .zip(logits.par_chunks(width))
            .for_each_init(
                || vec![MaybeUninit::uninit(); width],
                |scratch, (stats, row)| {
                    let max = max_scaled(row, 1.0);
                    stats[0] = max;
                    stats[1] = exp_scaled_shifted(row, 1.0, max, scratch);
                    stats[2] = row.iter().sum();
                    if self.squares {
                        stats[3] = exp_scaled_shifted(row, 2.0, 2.0 * max, scratch);
                    }
                },
            );
        Ok((CpuStorage::F32(stats), Shape::from((rows, columns))))
    }
}

struct SoftmaxSpread;

impl CustomOp3 for SoftmaxSpread {
    fn name(&self) -> &'static str {
        "vocabulary-softmax-spread"
    }

    fn cpu_fwd(
        &self,
        logits: &CpuStorage,
        logits_layout: &Layout,
        log_sum: &CpuStorage,
        log_sum_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits_values = contiguous_f32(logits, logits_layout, "vocabulary-kernels")?;
        let (log_sum, grad) = (
            contiguous_f32(log_sum, log_sum_layout, "vocabulary-kernels")?,
            contiguous_f32(grad, grad_layout, "vocabulary-kernels")?,
        );
        let width = width(logits_layout)?;
        let mut out = Vec::with_capacity(logits_values.len());
        out.spare_capacity_mut()
            .par_chunks_mut(width)
            .zip(logits_values.par_chunks(width))
            .enumerate()
            .for_each(|(row, (out, z))| {
                exp_scaled_shifted(z, 1.0, log_sum[row], out);
                let factor = -grad[row];
                for o in out.iter_mut() {
                    // SAFETY: `exp_scaled_shifted` wrote every element of `out`.
                    o.write(unsafe { o.assume_init_read() } * factor);
                }
            });
        // SAFETY: every row wrote each of its elements above.
        unsafe { out.set_len(logits_values.len()) };
        Ok((CpuStorage::F32(out), logits_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn logits() -> Tensor {
        let values: Vec<f32> = (0..7 * 300)
            .map(|i| ((i * 53 % 211) as f32 - 105.0) * 0.21)
            .collect();
        Tensor::from_vec(values, (7, 300), &Device::Cpu).unwrap()
    }

    fn max_relative(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        let difference = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        (difference / scale).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn the_cpu_statistics_are_candles() {
        let logits = logits();
        let stats = slice_statistics(&logits, true).unwrap();
        let expected_max = logits.max_keepdim(1).unwrap();
        let shifted = logits.broadcast_sub(&expected_max).unwrap();
        let expected_sum = shifted.exp().unwrap().sum_keepdim(1).unwrap();
        let expected_squares = (&shifted * 2.0)
            .unwrap()
            .exp()
            .unwrap()
            .sum_keepdim(1)
            .unwrap();
        assert_eq!(
            stats.max.to_vec2::<f32>().unwrap(),
            expected_max.to_vec2::<f32>().unwrap()
        );
        assert!(max_relative(&stats.exp_sum, &expected_sum) < 1e-6);
        assert!(max_relative(&stats.logit_sum, &logits.sum_keepdim(1).unwrap()) < 1e-6);
        assert!(max_relative(&stats.square_sum.unwrap(), &expected_squares) < 1e-6);
        assert!(
            slice_statistics(&logits, false)
                .unwrap()
                .square_sum
                .is_none()
        );
    }

    #[test]
    fn the_cpu_spread_is_candles() {
        let logits = logits();
        let log_sum = (logits.max_keepdim(1).unwrap() + 3.0).unwrap();
        let grad = Tensor::from_vec(
            vec![0.5f32, -1.0, 2.0, 0.0, 1.5, -0.25, 3.0],
            (7, 1),
            &Device::Cpu,
        )
        .unwrap();
        let expected = logits
            .broadcast_sub(&log_sum)
            .unwrap()
            .exp()
            .unwrap()
            .broadcast_mul(&grad)
            .unwrap()
            .neg()
            .unwrap();
        let got = softmax_spread(&logits, &log_sum, &grad).unwrap();
        assert!(max_relative(&got, &expected) < 1e-6);
    }
}
