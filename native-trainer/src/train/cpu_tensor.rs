//! What the training model's CPU kernels (`causal_softmax.rs`, `vocabulary_kernels.rs`,
//! `fused_mlp.rs`) read of a candle tensor: whether they take it (f32 on the CPU; any other
//! device or dtype goes through candle's ops) and its values as one contiguous slice.

use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor};

/// Whether the CPU kernels take `tensor`: f32 on the CPU.
pub fn is_cpu_f32(tensor: &Tensor) -> bool {
    matches!(tensor.device(), Device::Cpu) && tensor.dtype() == DType::F32
}

/// The contiguous f32 values of a CPU tensor; `op` names the kernel in the error.
pub fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let all = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => candle_core::bail!("{op}: a tensor is not contiguous"),
    }
}
