//! `x Wᵀ`, the product of every linear layer, done so it is cheap to train through. For a
//! weight that is not trained (LoRA's base weights, the tied output head under
//! LoRA). candle's matmul backward always computes both operands' gradients, so every frozen
//! layer would cost a weight-sized product and buffer per step that is thrown away (the
//! 151,936-row output head alone: 0.5 GB on Qwen2.5-0.5B). This op's backward gives `x` its
//! gradient, `grad · W`, and nothing to `W`. Trainable weights take the same 2-D product
//! through candle's matmul.
//!
//! CPU only: elsewhere, and whenever nothing needs a gradient, it is candle's matmul.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

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
    let plain = !x.track_op() || weight.is_variable() || !x.device().is_cpu();
    let y = if plain || x.dtype() != candle_core::DType::F32 {
        flat.matmul(&weight.t()?)?
    } else {
        flat.apply_op1(FrozenMatmul {
            weight: weight.clone(),
        })?
    };
    dims.push(weight.dim(0)?);
    y.reshape(dims)
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("frozen-matmul: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-matmul: the input must be contiguous");
        };
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &candle_core::Device::Cpu)?;
        let y = x.matmul(&self.weight.t()?)?;
        let shape = y.shape().clone();
        let values = y.flatten_all()?.to_vec1::<f32>()?;
        Ok((CpuStorage::F32(values), shape))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_y.matmul(&self.weight)?))
    }
}
