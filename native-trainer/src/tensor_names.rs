//! llama.cpp's tensor names and transformers' for the same Qwen2 weights, both ways
//! (`blk.3.attn_q.weight` ↔ `model.layers.3.self_attn.q_proj.weight`): GGUF import reads with
//! one direction, GGUF export writes with the other, from this one table.

/// Whole-model tensors: (llama.cpp name, transformers name).
const MODEL_TENSORS: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// Per-layer tensors: (llama.cpp name after `blk.N.`, transformers name after `model.layers.N.`).
const LAYER_TENSORS: [(&str, &str); 12] = [
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// transformers' name for a GGUF tensor name, `None` for tensors we do not use.
pub fn transformers_name(gguf_name: &str) -> Option<String> {
    if let Some((_, name)) = MODEL_TENSORS.iter().find(|(gguf, _)| *gguf == gguf_name) {
        return Some(name.to_string());
    }
    let (layer, tensor) = gguf_name.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, name) = LAYER_TENSORS.iter().find(|(gguf, _)| *gguf == tensor)?;
    Some(format!("model.layers.{layer}.{name}"))
}

/// llama.cpp's name for a transformers tensor name, `None` for names outside Qwen2.
pub fn gguf_name(transformers_name: &str) -> Option<String> {
    if let Some((name, _)) = MODEL_TENSORS
        .iter()
        .find(|(_, hf)| *hf == transformers_name)
    {
        return Some(name.to_string());
    }
    let (layer, tensor) = transformers_name
        .strip_prefix("model.layers.")?
        .split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (name, _) = LAYER_TENSORS.iter().find(|(_, hf)| *hf == tensor)?;
    Some(format!("blk.{layer}.{name}"))
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
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
    }
}
