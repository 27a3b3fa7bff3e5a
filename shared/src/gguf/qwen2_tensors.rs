//! The Qwen2 tensor names, once: for every weight, llama.cpp's GGUF name
//! (`blk.3.attn_q.weight`), transformers' name (`model.layers.3.self_attn.q_proj.weight`) and
//! its shape. The GGUF header check, both inference engines, the trainer's GGUF import and HF
//! export, and the GGUF exporter all name tensors through this table.

use super::metadata::ModelHyperparameters;

/// One weight of a Qwen2 model: whole-model, or one per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qwen2Tensor {
    TokenEmbedding,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnQBias,
    AttnK,
    AttnKBias,
    AttnV,
    AttnVBias,
    AttnOutput,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
}

impl Qwen2Tensor {
    /// The tensors the model has once.
    pub const WHOLE_MODEL: [Self; 3] = [Self::TokenEmbedding, Self::OutputNorm, Self::Output];
    /// The tensors each layer has, in the order a layer uses them.
    pub const PER_LAYER: [Self; 12] = [
        Self::AttnNorm,
        Self::AttnQ,
        Self::AttnQBias,
        Self::AttnK,
        Self::AttnKBias,
        Self::AttnV,
        Self::AttnVBias,
        Self::AttnOutput,
        Self::FfnNorm,
        Self::FfnGate,
        Self::FfnUp,
        Self::FfnDown,
    ];

    /// (llama.cpp's name, transformers' name), after `blk.N.` / `model.layers.N.` for a
    /// per-layer tensor.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::TokenEmbedding => ("token_embd.weight", "model.embed_tokens.weight"),
            Self::OutputNorm => ("output_norm.weight", "model.norm.weight"),
            Self::Output => ("output.weight", "lm_head.weight"),
            Self::AttnNorm => ("attn_norm.weight", "input_layernorm.weight"),
            Self::AttnQ => ("attn_q.weight", "self_attn.q_proj.weight"),
            Self::AttnQBias => ("attn_q.bias", "self_attn.q_proj.bias"),
            Self::AttnK => ("attn_k.weight", "self_attn.k_proj.weight"),
            Self::AttnKBias => ("attn_k.bias", "self_attn.k_proj.bias"),
            Self::AttnV => ("attn_v.weight", "self_attn.v_proj.weight"),
            Self::AttnVBias => ("attn_v.bias", "self_attn.v_proj.bias"),
            Self::AttnOutput => ("attn_output.weight", "self_attn.o_proj.weight"),
            Self::FfnNorm => ("ffn_norm.weight", "post_attention_layernorm.weight"),
            Self::FfnGate => ("ffn_gate.weight", "mlp.gate_proj.weight"),
            Self::FfnUp => ("ffn_up.weight", "mlp.up_proj.weight"),
            Self::FfnDown => ("ffn_down.weight", "mlp.down_proj.weight"),
        }
    }

    pub fn is_per_layer(self) -> bool {
        !Self::WHOLE_MODEL.contains(&self)
    }

    /// Whether it is one of the attention projections' biases (Qwen2 has them, Llama not).
    pub fn is_bias(self) -> bool {
        matches!(self, Self::AttnQBias | Self::AttnKBias | Self::AttnVBias)
    }

    /// llama.cpp's name in `layer` (ignored for a whole-model tensor).
    pub fn gguf(self, layer: usize) -> String {
        let name = self.names().0;
        if self.is_per_layer() {
            format!("blk.{layer}.{name}")
        } else {
            name.to_string()
        }
    }

    /// llama.cpp's name of a whole-model tensor.
    pub fn gguf_model(self) -> &'static str {
        debug_assert!(!self.is_per_layer(), "{self:?} is per layer");
        self.names().0
    }

    /// transformers' name in `layer` (ignored for a whole-model tensor).
    pub fn transformers(self, layer: usize) -> String {
        let name = self.names().1;
        if self.is_per_layer() {
            format!("model.layers.{layer}.{name}")
        } else {
            name.to_string()
        }
    }

    /// Its dimensions as GGUF readers give them (rows, then columns, for a matrix). The
    /// queries span the model's width, as in every Qwen2.
    pub fn shape(self, hp: &ModelHyperparameters) -> Vec<usize> {
        let (d, ff) = (hp.embedding_length, hp.feed_forward_length);
        let kv = hp.head_count_kv * hp.head_dim;
        match self {
            Self::TokenEmbedding | Self::Output => vec![hp.vocab_size, d],
            Self::OutputNorm | Self::AttnNorm | Self::FfnNorm | Self::AttnQBias => vec![d],
            Self::AttnQ | Self::AttnOutput => vec![d, d],
            Self::AttnK | Self::AttnV => vec![kv, d],
            Self::AttnKBias | Self::AttnVBias => vec![kv],
            Self::FfnGate | Self::FfnUp => vec![ff, d],
            Self::FfnDown => vec![d, ff],
        }
    }

    /// The tensor and layer a GGUF name stands for, `None` for names outside Qwen2.
    pub fn from_gguf(name: &str) -> Option<(Self, usize)> {
        Self::parse(name, "blk.", |t| t.names().0)
    }

    /// The tensor and layer a transformers name stands for, `None` for names outside Qwen2.
    pub fn from_transformers(name: &str) -> Option<(Self, usize)> {
        Self::parse(name, "model.layers.", |t| t.names().1)
    }

    fn parse(
        name: &str,
        layer_prefix: &str,
        spelled: fn(Self) -> &'static str,
    ) -> Option<(Self, usize)> {
        if let Some(tensor) = Self::WHOLE_MODEL.into_iter().find(|t| spelled(*t) == name) {
            return Some((tensor, 0));
        }
        let (layer, rest) = name.strip_prefix(layer_prefix)?.split_once('.')?;
        let layer = layer.parse().ok()?;
        let tensor = Self::PER_LAYER.into_iter().find(|t| spelled(*t) == rest)?;
        Some((tensor, layer))
    }
}

/// transformers' name for a GGUF tensor name, `None` for tensors outside Qwen2.
pub fn transformers_name(gguf_name: &str) -> Option<String> {
    Qwen2Tensor::from_gguf(gguf_name).map(|(tensor, layer)| tensor.transformers(layer))
}

/// llama.cpp's name for a transformers tensor name, `None` for names outside Qwen2.
pub fn gguf_name(transformers_name: &str) -> Option<String> {
    Qwen2Tensor::from_transformers(transformers_name).map(|(tensor, layer)| tensor.gguf(layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for gguf in [
            "token_embd.weight",
            "output.weight",
            "blk.17.attn_v.bias",
            "blk.0.ffn_down.weight",
        ] {
            let hf = transformers_name(gguf).unwrap();
            assert_eq!(gguf_name(&hf).as_deref(), Some(gguf));
        }
        assert_eq!(
            transformers_name("blk.3.attn_q.weight").as_deref(),
            Some("model.layers.3.self_attn.q_proj.weight")
        );
        assert_eq!(transformers_name("rope_freqs.weight"), None);
        assert_eq!(transformers_name("blk.x.attn_q.weight"), None);
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(gguf_name("model.layers.2.mlp.up_proj.bias"), None);
    }

    #[test]
    fn every_tensor_has_two_distinct_names() {
        let all: Vec<Qwen2Tensor> = Qwen2Tensor::WHOLE_MODEL
            .into_iter()
            .chain(Qwen2Tensor::PER_LAYER)
            .collect();
        let gguf: std::collections::HashSet<String> = all.iter().map(|t| t.gguf(1)).collect();
        let hf: std::collections::HashSet<String> = all.iter().map(|t| t.transformers(1)).collect();
        assert_eq!((gguf.len(), hf.len()), (15, 15));
        for tensor in all {
            assert_eq!(Qwen2Tensor::from_gguf(&tensor.gguf(4)).unwrap().0, tensor);
        }
    }
}
