//! `x Wᵀ`, the product of every linear layer, done so it is cheap to train through. For a
//! weight that is not trained (LoRA's base weights, the tied output head under LoRA) candle's
//! matmul backward always computes both operands' gradients, so every frozen layer would cost
//! a weight-sized product and buffer per step that is thrown away (the 151,936-row output head
//! alone: 0.5 GB on Qwen2.5-0.5B). This op's backward gives `x` its gradient, `grad · W`, and
//! nothing to `W`; its forward is the device's own matrix product (candle's CPU gemm, cuBLAS
//! on CUDA) run on the weight's storage where it lies, so no device pays a trip through host
//! memory. Trainable weights take candle's matmul.
//!
//! The weight is used in the activations' dtype: a trainable f32 weight under bf16 mixed
//! precision is cast for the product (its gradient flows back through the cast in f32), a
//! frozen one is stored in the compute dtype already.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

struct FrozenMatmul {
    /// `(out, in)`, as PyTorch stores linear weights.
    weight: Tensor,
}

/// `x Wᵀ` with `x` `(…, in)` and `weight` `(out, in)`, as one 2-D product over all leading
/// positions (a batched product would pack `W` once per sequence).
pub fn linear_product(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let inputs = dims.pop().unwrap_or(1);
    let rows = x.elem_count() / inputs.max(1);
    let flat = x.reshape((rows, inputs))?;
    let weight = weight.to_dtype(x.dtype())?;
    let y = if x.track_op() && !weight.track_op() {
        flat.contiguous()?.apply_op1(FrozenMatmul { weight })?
    } else {
        flat.matmul(&weight.t()?)?
    };
    dims.push(y.dim(1)?);
    y.reshape(dims)
}

/// `x Wᵀ` on one device's storage: `x` `(rows, in)` contiguous, `w` `(out, in)`.
fn product<S: BackendStorage>(
    x: &S,
    x_layout: &Layout,
    w: &S,
    w_layout: &Layout,
) -> Result<(S, Shape)> {
    let (rows, inputs) = x_layout.shape().dims2()?;
    let (outputs, weight_inputs) = w_layout.shape().dims2()?;
    if inputs != weight_inputs {
        candle_core::bail!(
            "frozen-matmul: input width {inputs} does not match the weight's {weight_inputs}"
        );
    }
    let transposed = w_layout.transpose(0, 1)?;
    let y = x.matmul(w, (1, rows, outputs, inputs), x_layout, &transposed)?;
    Ok((y, Shape::from((rows, outputs))))
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (weight, weight_layout) = self.weight.storage_and_layout();
        match &*weight {
            Storage::Cpu(w) => product(storage, layout, w, weight_layout),
            _ => candle_core::bail!("frozen-matmul: the weight is not on the CPU"),
        }
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let (weight, weight_layout) = self.weight.storage_and_layout();
        match &*weight {
            Storage::Cuda(w) => product(storage, layout, w, weight_layout),
            _ => candle_core::bail!("frozen-matmul: the weight is not on the GPU"),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_y.matmul(&self.weight)?))
    }
}
