//! Mixed precision as TRL users set it (`bf16 = true`, `fp16 = true`), with PyTorch
//! autocast's split: frozen weights and activations in the compute dtype; trainable
//! parameters, their gradients and AdamW's moments in f32; RMSNorm's statistics, the attention
//! softmax, the log-softmax over the vocabulary and the loss in f32 (see `qwen2.rs` and
//! `dpo_batch.rs`). On the CPU it works too (candle widens bf16 products to f32 there, so it
//! saves memory, not time); on CUDA the products run on bf16/f16 tensor cores.

use candle_core::DType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    /// The dtype of activations and frozen weights.
    pub fn compute_dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// For logs: `f32`, or `bf16 mixed precision`.
    pub fn describe(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16 mixed precision",
            Precision::F16 => "f16 mixed precision",
        }
    }
}

/// The dtype statistics and softmaxes run in: f32 for half-precision activations, else the
/// activations' own.
pub fn widened(dtype: DType) -> DType {
    match dtype {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}
