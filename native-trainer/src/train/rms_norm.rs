//! RMSNorm, `x / sqrt(mean(x²) + eps) · w`, with its statistics in f32 whatever the compute
//! dtype (as transformers' Qwen2 under autocast): as a chain of candle primitives, and as one
//! op whose backward pass recomputes the normalised rows from `x`, so that autograd keeps `x`
//! and the output instead of five intermediates of `x`'s size.
//!
//! The fused backward, with `n = x / r`, `r = sqrt(mean(x²) + eps)` over a row of width `d`
//! and `g` the gradient of `n` (the output's gradient times `w`):
//! `∂x = g / r − x · Σ(g · x) / (r³ d)`, and `∂w = Σ_rows (output gradient · n)`.

use candle_core::{D, Result, Tensor};

use super::custom_backward::{Backward, attach};
use super::precision::widened;

/// RMSNorm as candle primitives: autograd differentiates every step.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let weight = weight.to_dtype(x.dtype())?;
    normalized(x, eps)?.broadcast_mul(&weight)
}

/// RMSNorm as one op with its own backward pass; the same values as `rms_norm`.
pub fn fused_rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let weight = weight.to_dtype(x.dtype())?;
    let value = normalized(&x.detach(), eps)?.broadcast_mul(&weight.detach())?;
    attach(value, &[x, &weight], RmsNormBackward { eps })
}

/// `x / sqrt(mean(x²) + eps)` in f32 (or wider), returned in `x`'s dtype.
fn normalized(x: &Tensor, eps: f64) -> Result<Tensor> {
    let wide = x.to_dtype(widened(x.dtype()))?;
    wide.broadcast_div(&root_mean_square(&wide, eps)?)?
        .to_dtype(x.dtype())
}

/// `sqrt(mean(x²) + eps)` per row, `(…, 1)`.
fn root_mean_square(wide: &Tensor, eps: f64) -> Result<Tensor> {
    (wide.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()
}

struct RmsNormBackward {
    eps: f64,
}

impl Backward for RmsNormBackward {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn backward(
        &self,
        args: &[&Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (x, weight) = (args[0].detach(), args[1].detach());
        let weight_grad = if args[1].track_op() {
            let rows = grad.rank() - 1;
            let normed = normalized(&x, self.eps)?;
            let mut sum = (grad * &normed)?;
            for _ in 0..rows {
                sum = sum.sum(0)?;
            }
            Some(sum)
        } else {
            None
        };
        let wide = x.to_dtype(widened(x.dtype()))?;
        let normed_grad = grad.broadcast_mul(&weight)?.to_dtype(wide.dtype())?;
        let root = root_mean_square(&wide, self.eps)?;
        let width = wide.dim(D::Minus1)? as f64;
        let dot = (&normed_grad * &wide)?.sum_keepdim(D::Minus1)?;
        let cubed = (root.powf(3.0)? * width)?;
        let x_grad = (normed_grad.broadcast_div(&root)?
            - wide.broadcast_mul(&dot.broadcast_div(&cubed)?)?)?
        .to_dtype(x.dtype())?;
        Ok(vec![Some(x_grad), weight_grad])
    }
}
