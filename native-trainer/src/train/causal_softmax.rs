//! The softmax of a chunk of attention scores under the causal mask, and its gradient, as
//! `fused_attention.rs` uses them. Rows are queries `i = 0, 1, …` of a chunk (repeated for each
//! head), columns keys; query `i` sees the first `visible + i` keys and no others.
//!
//! On the CPU each is one pass per row over a contiguous f32 buffer (exponentials
//! vectorized, `vector_math.rs`), rows spread over the cores: candle's ops would take seven
//! passes (scale, mask, max, shift, exp, sum, divide), each allocating a chunk-sized tensor.
//! Elsewhere (CUDA) they are those candle ops, with the mask as an additive −∞ tensor.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu_tensor::{contiguous_f32, is_cpu_f32};
use super::vector_math::{exp_scaled_shifted, max_scaled};

/// `softmax(scale · scores)` over each row's visible keys, 0 beyond them: `scores`
/// `(…, queries, keys)`; query `i` sees keys `0..visible + i`. The one-pass kernel for f32 on
/// the CPU, candle's ops for any other device or dtype.
pub fn causal_softmax(scores: &Tensor, scale: f64, visible: usize) -> Result<Tensor> {
    let op = CausalSoftmax { scale, visible };
    if is_cpu_f32(scores) {
        scores.contiguous()?.apply_op1_no_bwd(&op)
    } else {
        op.with_candle_ops(scores)
    }
}

/// The scores' gradient from the probabilities `P` and their gradient `dP` (same shape):
/// `scale · P ∘ (dP − rowsum(dP ∘ P))`.
pub fn causal_softmax_backward(
    probabilities: &Tensor,
    probability_grad: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let op = SoftmaxBackward { scale };
    if is_cpu_f32(probabilities) && is_cpu_f32(probability_grad) {
        probabilities
            .contiguous()?
            .apply_op2_no_bwd(&probability_grad.contiguous()?, &op)
    } else {
        op.with_candle_ops(probabilities, probability_grad)
    }
}

struct CausalSoftmax {
    scale: f64,
    visible: usize,
}

impl CausalSoftmax {
    /// The softmax as candle's ops, on any device.
    fn with_candle_ops(&self, scores: &Tensor) -> Result<Tensor> {
        let (queries, keys) = match scores.dims() {
            [.., queries, keys] => (*queries, *keys),
            dims => candle_core::bail!("causal-softmax: scores of shape {dims:?}"),
        };
        let mask = self
            .mask(queries, keys, scores.device())?
            .to_dtype(scores.dtype())?;
        candle_nn::ops::softmax(&(scores * self.scale)?.broadcast_add(&mask)?, D::Minus1)
    }

    /// The additive mask, `(queries, keys)`: 0 where a query may look, −∞ elsewhere.
    fn mask(&self, queries: usize, keys: usize, device: &Device) -> Result<Tensor> {
        let values: Vec<f32> = (0..queries)
            .flat_map(|i| {
                (0..keys).map(move |k| {
                    if k < self.visible + i {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        Tensor::from_vec(values, (queries, keys), device)
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let scores = contiguous_f32(storage, layout, "causal-softmax")?;
        let shape = layout.shape();
        let (queries, keys) = match shape.dims() {
            [.., queries, keys] => (*queries, *keys),
            dims => candle_core::bail!("causal-softmax: scores of shape {dims:?}"),
        };
        let scale = self.scale as f32;
        let mut out = Vec::with_capacity(scores.len());
        out.spare_capacity_mut()
            .par_chunks_mut(keys.max(1))
            .zip(scores.par_chunks(keys.max(1)))
            .enumerate()
            .for_each(|(row, (out, scores))| {
                let seen = (self.visible + row % queries.max(1)).min(keys);
                let (visible, hidden) = out.split_at_mut(seen);
                let scores = &scores[..seen];
                let sum = exp_scaled_shifted(scores, scale, max_scaled(scores, scale), visible);
                for o in visible.iter_mut() {
                    // SAFETY: `exp_scaled_shifted` wrote every element of `visible`.
                    o.write(unsafe { o.assume_init_read() } / sum);
                }
                for o in hidden {
                    o.write(0.0);
                }
            });
        // SAFETY: every row wrote each of its elements above.
        unsafe { out.set_len(scores.len()) };
        Ok((CpuStorage::F32(out), shape.clone()))
    }
}

struct SoftmaxBackward {
    scale: f64,
}

impl SoftmaxBackward {
    /// The gradient as candle's ops, on any device.
    fn with_candle_ops(&self, probabilities: &Tensor, probability_grad: &Tensor) -> Result<Tensor> {
        let row_dot = (probability_grad * probabilities)?.sum_keepdim(D::Minus1)?;
        (probabilities * probability_grad.broadcast_sub(&row_dot)?)? * self.scale
    }
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "causal-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        p_storage: &CpuStorage,
        p_layout: &Layout,
        g_storage: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (probabilities, grads) = (
            contiguous_f32(p_storage, p_layout, "causal-softmax-backward")?,
            contiguous_f32(g_storage, g_layout, "causal-softmax-backward")?,
        );
        let keys = *p_layout.shape().dims().last().unwrap_or(&1);
        let scale = self.scale as f32;
        let mut out = vec![0f32; probabilities.len()];
        out.par_chunks_mut(keys.max(1))
            .zip(probabilities.par_chunks(keys.max(1)))
            .zip(grads.par_chunks(keys.max(1)))
            .for_each(|((out, p), g)| {
                let dot: f32 = p.iter().zip(g).map(|(p, g)| p * g).sum();
                for ((o, &p), &g) in out.iter_mut().zip(p).zip(g) {
                    *o = scale * p * (g - dot);
                }
            });
        Ok((CpuStorage::F32(out), p_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores with large and small values, `(2, 3, 5, 9)`: two heads of a group of three,
    /// five queries, nine keys.
    fn scores() -> Tensor {
        let values: Vec<f32> = (0..2 * 3 * 5 * 9)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37)
            .collect();
        Tensor::from_vec(values, (2, 3, 5, 9), &Device::Cpu).unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn the_cpu_kernel_is_candles_masked_softmax() {
        for visible in [1, 4, 9] {
            let op = CausalSoftmax {
                scale: 0.125,
                visible,
            };
            let kernel = causal_softmax(&scores(), 0.125, visible).unwrap();
            let reference = op.with_candle_ops(&scores()).unwrap();
            assert!(
                max_difference(&kernel, &reference) < 1e-6,
                "visible {visible}"
            );
            // Query i sees exactly `visible + i` keys (all of them from 9 on), rows sum to 1.
            let rows: Vec<Vec<f32>> = kernel.flatten_to(2).unwrap().to_vec2().unwrap();
            for (row, values) in rows.iter().enumerate() {
                let seen = (visible + row % 5).min(9);
                assert!(
                    values[..seen].iter().all(|&p| p > 0.0),
                    "row {row}: {values:?}"
                );
                assert!(
                    values[seen..].iter().all(|&p| p == 0.0),
                    "row {row}: {values:?}"
                );
                let sum: f32 = values.iter().sum();
                assert!((sum - 1.0).abs() < 1e-6, "row {row} sums to {sum}");
            }
        }
    }

    #[test]
    fn the_cpu_gradient_is_candles() {
        let probabilities = causal_softmax(&scores(), 0.125, 2).unwrap();
        let grads = (scores().sin().unwrap() * 3.0).unwrap();
        let op = SoftmaxBackward { scale: 0.125 };
        let kernel = causal_softmax_backward(&probabilities, &grads, 0.125).unwrap();
        let reference = op.with_candle_ops(&probabilities, &grads).unwrap();
        assert!(max_difference(&kernel, &reference) < 1e-6);
        // Masked keys (probability 0) get no gradient.
        let rows: Vec<Vec<f32>> = kernel.flatten_to(2).unwrap().to_vec2().unwrap();
        assert!(rows[0][2..].iter().all(|&g| g == 0.0), "{:?}", rows[0]);
    }
}
