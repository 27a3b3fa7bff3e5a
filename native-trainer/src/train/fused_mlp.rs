//! SwiGLU and a frozen down projection as one op: `y = (silu(g) · u) Wᵀ` from the gate and up
//! projections `g` and `u`. As separate ops autograd keeps `silu(g)` and the product, two
//! more tensors of the MLP's width (4,864 on Qwen2.5-0.5B, 8,960 on 1.5B) per layer; this op
//! keeps `g`, `u` and `y`, and its backward pass recomputes `silu(g)`.
//!
//! Backward, with `G` the output's gradient, `H = G W` and `σ` the logistic function:
//! `∂u = H · silu(g)`, `∂g = H · u · (σ(g)(1 − silu(g)) + silu(g))`. On the CPU (f32) SwiGLU
//! and its gradient are one vectorized pass each (`vector_math.rs`), so the backward pass
//! holds `H` and the two gradients, where candle's ops would hold six more tensors of the
//! MLP's width at once.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu_tensor::{contiguous_f32, is_cpu_f32};
use super::custom_backward::{Backward, attach};
use super::linear_product::linear_product;
use super::vector_math::{swiglu, swiglu_backward};

/// `(silu(gate) · up) Wᵀ` for a frozen `down` weight `(hidden, intermediate)`, as one op; the
/// same values as the separate ops.
pub fn fused_gated_down(gate: &Tensor, up: &Tensor, down: &Tensor) -> Result<Tensor> {
    let weight = down.to_dtype(gate.dtype())?;
    let product = gated(&gate.detach(), &up.detach())?;
    let value = linear_product(&product, &weight)?;
    attach(value, &[gate, up], GatedDownBackward { weight })
}

struct GatedDownBackward {
    /// `(hidden, intermediate)` in the activations' dtype.
    weight: Tensor,
}

impl Backward for GatedDownBackward {
    fn name(&self) -> &'static str {
        "fused-gated-down"
    }

    fn backward(
        &self,
        args: &[&Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (gate, up) = (args[0].detach(), args[1].detach());
        let hidden = grad.dim(candle_core::D::Minus1)?;
        let product_grad = grad
            .reshape(((), hidden))?
            .matmul(&self.weight)?
            .reshape(gate.shape())?;
        let (gate_grad, up_grad) = gated_backward(&product_grad, &gate, &up)?;
        Ok(vec![Some(gate_grad), Some(up_grad)])
    }
}

/// `silu(gate) · up` as one op with its own backward pass, for a down projection this op
/// cannot take (trained, adapted or with a bias): the same SwiGLU values as
/// `fused_gated_down`, so a policy whose down projection carries an adapter and its reference
/// pass without one score with the same numbers, bit for bit.
pub fn fused_swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let value = gated(&gate.detach(), &up.detach())?;
    attach(value, &[gate, up], SwigluOpBackward)
}

struct SwigluOpBackward;

impl Backward for SwigluOpBackward {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn backward(
        &self,
        args: &[&Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (gate, up) = (args[0].detach(), args[1].detach());
        let (gate_grad, up_grad) = gated_backward(grad, &gate, &up)?;
        Ok(vec![Some(gate_grad), Some(up_grad)])
    }
}

/// `silu(gate) · up`: one pass on the CPU (`vector_math::swiglu`), candle's ops elsewhere.
fn gated(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(gate) {
        gate.contiguous()?
            .apply_op2_no_bwd(&up.contiguous()?, &Swiglu)
    } else {
        gate.silu()? * up
    }
}

/// The gradients of `gated`'s inputs from its output's `grad`: one pass on the CPU, which
/// holds the two results and nothing else; candle's ops elsewhere (the formula of candle's
/// own silu backward, intermediates dropped as soon as they are used).
fn gated_backward(grad: &Tensor, gate: &Tensor, up: &Tensor) -> Result<(Tensor, Tensor)> {
    if is_cpu_f32(gate) {
        let both = grad.contiguous()?.apply_op3_no_bwd(
            &gate.contiguous()?,
            &up.contiguous()?,
            &SwigluBackward,
        )?;
        return Ok((both.get(0)?, both.get(1)?));
    }
    let silu = gate.silu()?;
    let up_grad = (grad * &silu)?;
    let sigmoid = (gate.neg()?.exp()? + 1.0)?.recip()?;
    let slope = ((&sigmoid * (1.0 - &silu)?)? + &silu)?;
    drop((silu, sigmoid));
    let gate_grad = ((grad * up)? * slope)?;
    Ok((gate_grad, up_grad))
}

/// Rows of work for the threads.
const PIECE: usize = 1 << 14;

struct Swiglu;

impl CustomOp2 for Swiglu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        gate: &CpuStorage,
        gate_layout: &Layout,
        up: &CpuStorage,
        up_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (gate, up) = (
            contiguous_f32(gate, gate_layout, "swiglu")?,
            contiguous_f32(up, up_layout, "swiglu")?,
        );
        let mut out = Vec::with_capacity(gate.len());
        out.spare_capacity_mut()
            .par_chunks_mut(PIECE)
            .zip(gate.par_chunks(PIECE).zip(up.par_chunks(PIECE)))
            .for_each(|(out, (gate, up))| swiglu(gate, up, out));
        // SAFETY: `swiglu` wrote every element.
        unsafe { out.set_len(gate.len()) };
        Ok((CpuStorage::F32(out), gate_layout.shape().clone()))
    }
}

struct SwigluBackward;

impl CustomOp3 for SwigluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    /// `(2, …)`: the gate's gradient, then the up projection's.
    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        gate: &CpuStorage,
        gate_layout: &Layout,
        up: &CpuStorage,
        up_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let grad = contiguous_f32(grad, grad_layout, "swiglu")?;
        let (gate, up) = (
            contiguous_f32(gate, gate_layout, "swiglu")?,
            contiguous_f32(up, up_layout, "swiglu")?,
        );
        let n = grad.len();
        let mut out: Vec<f32> = Vec::with_capacity(2 * n);
        let (gate_grads, up_grads) = out.spare_capacity_mut().split_at_mut(n);
        gate_grads
            .par_chunks_mut(PIECE)
            .zip(up_grads.par_chunks_mut(PIECE))
            .zip(grad.par_chunks(PIECE))
            .zip(gate.par_chunks(PIECE).zip(up.par_chunks(PIECE)))
            .for_each(|(((gate_grad, up_grad), grad), (gate, up))| {
                swiglu_backward(grad, gate, up, gate_grad, up_grad)
            });
        // SAFETY: `swiglu_backward` wrote every element of both halves.
        unsafe { out.set_len(2 * n) };
        let mut dims = vec![2];
        dims.extend_from_slice(grad_layout.shape().dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}
