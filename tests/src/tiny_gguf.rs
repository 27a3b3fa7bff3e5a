//! Tiny Qwen2 GGUF files generated in code (fixed-seed random weights, 2 blocks, width 32,
//! a byte-level vocabulary plus ChatML special tokens), with knobs to break them on purpose
//! and to store the weight matrices in a quantized block type.

use std::io::Cursor;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

pub const WIDTH: usize = 32;
pub const FFN: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const BLOCKS: usize = 2;

/// Builder for a tiny Qwen2 GGUF.
#[derive(Default)]
pub struct TinyQwen2 {
    overrides: Vec<(String, Option<Value>)>,
    skip_tensors: Vec<String>,
    llama: bool,
    matrix_type: Option<GgmlDType>,
    /// (name suffix, type) of matrices stored in another type than the rest.
    tensor_types: Vec<(String, GgmlDType)>,
}

impl TinyQwen2 {
    pub fn with_key(mut self, key: &str, value: Value) -> Self {
        self.overrides.push((key.to_string(), Some(value)));
        self
    }
    pub fn without_key(mut self, key: &str) -> Self {
        self.overrides.push((key.to_string(), None));
        self
    }
    /// The same shapes as a Llama-architecture file: `llama.*` keys, no attention biases.
    pub fn as_llama(mut self) -> Self {
        self.llama = true;
        self
    }
    /// Stores the 2-D weight matrices (not norms or biases) as `dtype` instead of F32.
    pub fn with_matrix_type(mut self, dtype: GgmlDType) -> Self {
        self.matrix_type = Some(dtype);
        self
    }
    /// Stores the matrices whose names end in `suffix` (e.g. `ffn_up.weight`) as `dtype`.
    pub fn with_tensor_type(mut self, suffix: &str, dtype: GgmlDType) -> Self {
        self.tensor_types.push((suffix.to_string(), dtype));
        self
    }
    pub fn without_tensor(mut self, name: &str) -> Self {
        self.skip_tensors.push(name.to_string());
        self
    }

    /// The GGUF file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let tokens = vocabulary();
        let vocab = tokens.len();
        let mut token_types = vec![Value::I32(1); vocab];
        for t in token_types.iter_mut().skip(258) {
            *t = Value::I32(3);
        }
        let mut metadata: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String("qwen2".into())),
            ("general.name".into(), Value::String("tiny-qwen2".into())),
            ("qwen2.block_count".into(), Value::U32(BLOCKS as u32)),
            ("qwen2.context_length".into(), Value::U32(256)),
            ("qwen2.embedding_length".into(), Value::U32(WIDTH as u32)),
            ("qwen2.feed_forward_length".into(), Value::U32(FFN as u32)),
            (
                "qwen2.attention.head_count".into(),
                Value::U32(HEADS as u32),
            ),
            (
                "qwen2.attention.head_count_kv".into(),
                Value::U32(KV_HEADS as u32),
            ),
            ("qwen2.rope.freq_base".into(), Value::F32(1_000_000.0)),
            (
                "qwen2.attention.layer_norm_rms_epsilon".into(),
                Value::F32(1e-6),
            ),
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(token_types),
            ),
            (
                "tokenizer.ggml.merges".into(),
                Value::Array(vec![
                    Value::String("h e".into()),
                    Value::String("l l".into()),
                ]),
            ),
            (
                "tokenizer.ggml.eos_token_id".into(),
                Value::U32(vocab as u32 - 1),
            ),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(258)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        ];
        if self.llama {
            for (key, value) in metadata.iter_mut() {
                if let Some(rest) = key.strip_prefix("qwen2.") {
                    *key = format!("llama.{rest}");
                } else if key == "general.architecture" {
                    *value = Value::String("llama".into());
                }
            }
        }
        for (key, value) in &self.overrides {
            metadata.retain(|(k, _)| k != key);
            if let Some(value) = value {
                metadata.push((key.clone(), value.clone()));
            }
        }

        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut tensor = |name: &str, dims: &[usize]| {
            let n: usize = dims.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
                })
                .collect();
            let t = Tensor::from_vec(values, dims, &Device::Cpu).unwrap();
            let own_type = self
                .tensor_types
                .iter()
                .find(|(suffix, _)| name.ends_with(suffix.as_str()));
            let dtype = match (own_type, self.matrix_type) {
                (Some(&(_, dtype)), _) => dtype,
                (None, Some(dtype)) if dims.len() == 2 => dtype,
                _ => GgmlDType::F32,
            };
            QTensor::quantize(&t, dtype).unwrap()
        };
        let kv = KV_HEADS * (WIDTH / HEADS);
        let mut tensors: Vec<(String, QTensor)> = vec![
            (
                "token_embd.weight".into(),
                tensor("token_embd.weight", &[vocab, WIDTH]),
            ),
            (
                "output_norm.weight".into(),
                tensor("output_norm.weight", &[WIDTH]),
            ),
        ];
        for i in 0..BLOCKS {
            for (name, dims) in [
                ("attn_norm.weight", vec![WIDTH]),
                ("attn_q.weight", vec![WIDTH, WIDTH]),
                ("attn_q.bias", vec![WIDTH]),
                ("attn_k.weight", vec![kv, WIDTH]),
                ("attn_k.bias", vec![kv]),
                ("attn_v.weight", vec![kv, WIDTH]),
                ("attn_v.bias", vec![kv]),
                ("attn_output.weight", vec![WIDTH, WIDTH]),
                ("ffn_norm.weight", vec![WIDTH]),
                ("ffn_gate.weight", vec![FFN, WIDTH]),
                ("ffn_up.weight", vec![FFN, WIDTH]),
                ("ffn_down.weight", vec![WIDTH, FFN]),
            ] {
                let name = format!("blk.{i}.{name}");
                let values = tensor(&name, &dims);
                tensors.push((name, values));
            }
        }
        tensors.retain(|(name, _)| {
            let llama_bias = self.llama && name.ends_with(".bias");
            !(llama_bias || self.skip_tensors.contains(name))
        });

        let metadata_refs: Vec<(&str, &Value)> =
            metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensor_refs: Vec<(&str, &QTensor)> =
            tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut out = Cursor::new(Vec::new());
        candle_core::quantized::gguf_file::write(&mut out, &metadata_refs, &tensor_refs)
            .expect("writing tiny GGUF");
        out.into_inner()
    }
}

/// GPT-2's byte-to-unicode table (256 entries) then `<|endoftext|>`, `<|im_start|>`,
/// `<|im_end|>`.
pub fn vocabulary() -> Vec<String> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for byte in 0..256u32 {
        if !printable.contains(&byte) {
            printable.push(byte);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = printable.into_iter().zip(chars).collect();
    pairs.sort();
    let mut tokens: Vec<String> = pairs
        .into_iter()
        .map(|(_, c)| char::from_u32(c).unwrap().to_string())
        .collect();
    tokens.extend(["he", "ll"].map(String::from));
    tokens.extend(["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from));
    tokens
}
