//! The export presets (`--quant`) and the GGML type each tensor gets under them, following
//! llama.cpp's `llama_tensor_get_type` for the same file types:
//!
//! - `f32`, `f16`: every matrix in that type. Vectors (norms, biases) are always F32.
//! - `q8_0`, `q4_0`: every matrix in that type, except the output head (`output.weight`, or
//!   `token_embd.weight` when the embeddings are tied and it doubles as the head), which `q4_0`
//!   raises to Q6_K (`q8_0` keeps Q8_0).
//! - `q4_k_m`: Q4_K, with Q6_K for the output head and for `attn_v` and `ffn_down` in the
//!   layers llama.cpp's `use_more_bits` picks: the first and last eighth of the layers and
//!   every third one in between (`i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2`). llama.cpp
//!   applies that rule to a running count of the tensors in its input file's order, so an
//!   input that lists layers alphabetically (0, 1, 10, 11, …, 2, 20, …) gets different layers
//!   raised; we apply it to the layer index, as the rule means — the same number of tensors
//!   is raised either way.
//!
//! A K-quant needs rows of whole 256-value super-blocks. A tensor whose rows do not fit falls
//! back as llama.cpp does — Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0 — and to F16 when even the
//! 32-value blocks do not fit; each fallback is reported. (Qwen2.5-0.5B's 896-wide rows take
//! this path; Qwen2.5-1.5B's 1536 and 8960 fit.)

use candle_core::quantized::GgmlDType;
use shared::gguf::Qwen2Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantPreset {
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_k_m")]
    Q4KM,
    #[value(name = "f16")]
    F16,
    #[value(name = "f32")]
    F32,
}

/// The type a tensor is written in, and why it differs from the preset's own choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorType {
    pub dtype: GgmlDType,
    /// Set when the row length forced a fallback: (wanted type, row length).
    pub fallback_from: Option<(GgmlDType, usize)>,
}

/// Where a tensor sits, as the mixture rules need it.
#[derive(Debug, Clone, Copy)]
pub struct TensorRole<'a> {
    /// llama.cpp's name (`blk.3.attn_v.weight`).
    pub gguf_name: &'a str,
    /// candle order: `(rows, row length)` for a matrix, `(length,)` for a vector.
    pub dims: &'a [usize],
    pub layer_count: usize,
    /// Whether the file has its own `output.weight` (false: tied embeddings).
    pub has_output: bool,
}

impl QuantPreset {
    pub fn name(self) -> &'static str {
        match self {
            QuantPreset::Q8_0 => "q8_0",
            QuantPreset::Q4_0 => "q4_0",
            QuantPreset::Q4KM => "q4_k_m",
            QuantPreset::F16 => "f16",
            QuantPreset::F32 => "f32",
        }
    }

    /// llama.cpp's `llama_ftype` number, written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            QuantPreset::F32 => 0,
            QuantPreset::F16 => 1,
            QuantPreset::Q4_0 => 2,
            QuantPreset::Q8_0 => 7,
            QuantPreset::Q4KM => 15,
        }
    }

    fn default_type(self) -> GgmlDType {
        match self {
            QuantPreset::F32 => GgmlDType::F32,
            QuantPreset::F16 => GgmlDType::F16,
            QuantPreset::Q4_0 => GgmlDType::Q4_0,
            QuantPreset::Q8_0 => GgmlDType::Q8_0,
            QuantPreset::Q4KM => GgmlDType::Q4K,
        }
    }

    fn is_quantized(self) -> bool {
        !matches!(self, QuantPreset::F32 | QuantPreset::F16)
    }

    /// The type of one tensor under this preset.
    pub fn tensor_type(self, role: TensorRole) -> TensorType {
        let keep = |dtype| TensorType {
            dtype,
            fallback_from: None,
        };
        if role.dims.len() < 2 || !role.gguf_name.ends_with(".weight") {
            return keep(GgmlDType::F32);
        }
        let wanted = if self.is_quantized() {
            self.mixture_type(role)
        } else {
            self.default_type()
        };
        let row_length = role.dims[role.dims.len() - 1];
        if row_length.is_multiple_of(wanted.block_size()) {
            return keep(wanted);
        }
        let fallback = match wanted {
            GgmlDType::Q4K => GgmlDType::Q5_0,
            GgmlDType::Q5K => GgmlDType::Q5_1,
            GgmlDType::Q6K => GgmlDType::Q8_0,
            _ => GgmlDType::F16,
        };
        let dtype = if row_length.is_multiple_of(fallback.block_size()) {
            fallback
        } else {
            GgmlDType::F16
        };
        TensorType {
            dtype,
            fallback_from: Some((wanted, row_length)),
        }
    }

    /// llama.cpp's choice for a matrix of a quantized preset, before any fallback.
    fn mixture_type(self, role: TensorRole) -> GgmlDType {
        let default = self.default_type();
        let tensor = Qwen2Tensor::from_gguf(role.gguf_name);
        let is_head = match tensor {
            Some((Qwen2Tensor::Output, _)) => true,
            Some((Qwen2Tensor::TokenEmbedding, _)) => !role.has_output,
            _ => false,
        };
        if is_head {
            return if default == GgmlDType::Q8_0 {
                GgmlDType::Q8_0
            } else {
                GgmlDType::Q6K
            };
        }
        if self == QuantPreset::Q4KM
            && let Some((Qwen2Tensor::AttnV | Qwen2Tensor::FfnDown, layer)) = tensor
            && use_more_bits(layer, role.layer_count)
        {
            return GgmlDType::Q6K;
        }
        default
    }
}

/// llama.cpp's layers that get more bits: the first and last eighth, and every third between.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    let eighth = layers / 8;
    layer < eighth || layer >= 7 * layers / 8 || (layer - eighth) % 3 == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role<'a>(name: &'a str, dims: &'a [usize], has_output: bool) -> TensorRole<'a> {
        TensorRole {
            gguf_name: name,
            dims,
            layer_count: 24,
            has_output,
        }
    }

    #[test]
    fn q4_k_m_raises_the_head_and_a_third_of_attn_v_and_ffn_down() {
        let q = QuantPreset::Q4KM;
        let t = |name, dims: &[usize], out| q.tensor_type(role(name, dims, out)).dtype;
        assert_eq!(t("output.weight", &[1024, 1536], true), GgmlDType::Q6K);
        assert_eq!(t("token_embd.weight", &[1024, 1536], true), GgmlDType::Q4K);
        assert_eq!(t("token_embd.weight", &[1024, 1536], false), GgmlDType::Q6K);
        assert_eq!(t("blk.0.attn_v.weight", &[256, 1536], true), GgmlDType::Q6K);
        assert_eq!(t("blk.3.attn_v.weight", &[256, 1536], true), GgmlDType::Q4K);
        assert_eq!(
            t("blk.5.ffn_down.weight", &[1536, 8960], true),
            GgmlDType::Q6K
        );
        assert_eq!(
            t("blk.5.ffn_up.weight", &[8960, 1536], true),
            GgmlDType::Q4K
        );
        assert_eq!(t("blk.5.attn_norm.weight", &[1536], true), GgmlDType::F32);
        assert_eq!(t("blk.5.attn_q.bias", &[1536], true), GgmlDType::F32);
        let raised: Vec<usize> = (0..24).filter(|&i| use_more_bits(i, 24)).collect();
        assert_eq!(raised, [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
    }

    #[test]
    fn rows_that_do_not_fit_a_k_quant_fall_back_as_llama_cpp() {
        let q = QuantPreset::Q4KM;
        let fell = q.tensor_type(role("blk.1.attn_q.weight", &[896, 896], true));
        assert_eq!(fell.dtype, GgmlDType::Q5_0);
        assert_eq!(fell.fallback_from, Some((GgmlDType::Q4K, 896)));
        let head = q.tensor_type(role("output.weight", &[1000, 896], true));
        assert_eq!(head.dtype, GgmlDType::Q8_0);
        let odd = QuantPreset::Q8_0.tensor_type(role("blk.1.attn_q.weight", &[40, 40], true));
        assert_eq!(odd.dtype, GgmlDType::F16);
        let f32 = QuantPreset::F32.tensor_type(role("output.weight", &[40, 40], true));
        assert_eq!(f32.dtype, GgmlDType::F32);
    }
}
