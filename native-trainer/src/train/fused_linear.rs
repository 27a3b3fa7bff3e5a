//! A frozen linear layer with its bias and optional LoRA adapter as one op:
//! `y = x Wᵀ + b + s · (x Aᵀ) Bᵀ`. As separate ops autograd keeps the base product, the
//! adapter's up-projection, its scaled copy and two sums, five outputs' worth per layer; this
//! op keeps `x` and `y`, and its backward pass recomputes the adapter's small `x Aᵀ`
//! (`rows × r`). `W` and `b` get no gradient (they are frozen); `A` and `B` do.
//!
//! Backward, with `g` the output's gradient and `h = x Aᵀ`:
//! `∂x = g W + (s g B) A`, `∂A = (s g B)ᵀ x`, `∂B = (s g)ᵀ h`.

use candle_core::{Result, Tensor};

use super::custom_backward::{Backward, attach};
use super::linear_product::linear_product;

/// A LoRA adapter's matrices as the fused op reads them: `A` `(r, in)`, `B` `(out, r)` and
/// the scale `α / r`.
pub struct AdapterWeights<'a> {
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub scale: f64,
}

/// `x Wᵀ + b + s (x Aᵀ) Bᵀ` for a frozen `weight` `(out, in)` and `bias`, as one op; the
/// same values as the separate products and sums.
pub fn fused_linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    adapter: Option<AdapterWeights>,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let backward = FrozenLinearBackward {
        weight: weight.to_dtype(dtype)?,
        scale: adapter.as_ref().map_or(0.0, |a| a.scale),
    };
    let detached = x.detach();
    let mut value = linear_product(&detached, &backward.weight)?;
    let adapter = match adapter {
        Some(adapter) => {
            let (a, b) = (adapter.a.to_dtype(dtype)?, adapter.b.to_dtype(dtype)?);
            let down = linear_product(&detached, &a.detach())?;
            value = (value + (linear_product(&down, &b.detach())? * adapter.scale)?)?;
            Some((a, b))
        }
        None => None,
    };
    if let Some(bias) = bias {
        value = value.broadcast_add(&bias.to_dtype(dtype)?)?;
    }
    match &adapter {
        Some((a, b)) => attach(value, &[x, a, b], backward),
        None => attach(value, &[x], backward),
    }
}

struct FrozenLinearBackward {
    /// `(out, in)` in the activations' dtype.
    weight: Tensor,
    scale: f64,
}

impl Backward for FrozenLinearBackward {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn backward(
        &self,
        args: &[&Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = args[0].detach();
        let (inputs, outputs) = (
            x.dim(candle_core::D::Minus1)?,
            grad.dim(candle_core::D::Minus1)?,
        );
        let flat_x = x.reshape(((), inputs))?;
        let flat_grad = grad.reshape(((), outputs))?;
        let mut x_grad = flat_grad.matmul(&self.weight)?;
        let mut grads = vec![];
        if let [_, a, b] = args {
            let (a, b) = (a.detach(), b.detach());
            let down = flat_x.matmul(&a.t()?)?;
            let scaled_grad = (&flat_grad * self.scale)?;
            let down_grad = scaled_grad.matmul(&b)?;
            x_grad = (x_grad + down_grad.matmul(&a)?)?;
            grads.push(Some(down_grad.t()?.matmul(&flat_x)?));
            grads.push(Some(scaled_grad.t()?.matmul(&down)?));
        }
        grads.insert(0, Some(x_grad.reshape(x.shape())?));
        Ok(grads)
    }
}
