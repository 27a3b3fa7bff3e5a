//! Qwen2 GGUF files with a real model's shapes and random weights, written straight as GGUF
//! blocks (random quants, small fixed f16 scales): what a loader and kernels see from a real
//! file of that size — e.g. an output head bigger than one storage binding — without
//! downloading it. The mix of block types follows llama.cpp's Q4_K_M.

use std::io::Cursor;

use candle_core::Device;
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor, ggml_file::qtensor_from_ggml};

/// The dimensions that matter to the engine.
#[derive(Debug, Clone, Copy)]
pub struct Qwen2Shape {
    pub width: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
}

/// Qwen/Qwen2.5-1.5B-Instruct.
pub const QWEN2_5_1_5B: Qwen2Shape = Qwen2Shape {
    width: 1536,
    ffn: 8960,
    heads: 12,
    kv_heads: 2,
    vocab: 151_936,
};

struct Noise(u64);

impl Noise {
    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Random blocks of `dtype` for a rows × cols matrix, with every f16 scale set to `scale`
/// (and Q4_K's minimum scale too), so values stay finite and small.
fn random_blocks(
    noise: &mut Noise,
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    scale: f32,
) -> QTensor {
    let block = dtype.block_size();
    let block_bytes = dtype.type_size();
    let blocks = rows * cols / block;
    let mut bytes = vec![0u8; blocks * block_bytes];
    noise.fill(&mut bytes);
    let scale = half_bits(scale);
    let scale_offsets: &[usize] = match dtype {
        GgmlDType::Q4K => &[0, 2],
        GgmlDType::Q6K => &[208],
        GgmlDType::Q8_0 | GgmlDType::Q5_0 | GgmlDType::Q4_0 => &[0],
        other => panic!("no random-block recipe for {other:?}"),
    };
    for b in bytes.chunks_mut(block_bytes) {
        for &offset in scale_offsets {
            b[offset..offset + 2].copy_from_slice(&scale.to_le_bytes());
        }
    }
    qtensor_from_ggml(dtype, &bytes, vec![rows, cols], &Device::Cpu).unwrap()
}

fn f32_tensor(values: Vec<f32>) -> QTensor {
    let n = values.len();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    qtensor_from_ggml(GgmlDType::F32, &bytes, vec![n], &Device::Cpu).unwrap()
}

/// IEEE half-precision bits of a normal `value`.
fn half_bits(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xFF) as i32 - 127 + 15;
    assert!((1..31).contains(&exponent), "{value} is not a normal f16");
    let mantissa = ((bits >> 13) & 0x3FF) as u16;
    sign | ((exponent as u16) << 10) | mantissa
}

/// A `blocks`-block Qwen2 GGUF of `shape` with Q4_K_M's types: Q4_K matrices, Q6_K for the
/// output head and for `attn_v` and `ffn_down` in the layers llama.cpp gives more bits
/// (`more_bits_layer`; the others Q4_K), Q4_K token embedding. Untied output head.
pub fn qwen2_with_shape(shape: Qwen2Shape, blocks: usize) -> Vec<u8> {
    qwen2_with_shape_and_metadata(shape, blocks, Vec::new())
}

/// As `qwen2_with_shape`, with `extra` metadata besides the model's (a vocabulary's
/// `tokenizer.*` keys make a file llama.cpp loads).
pub fn qwen2_with_shape_and_metadata(
    shape: Qwen2Shape,
    blocks: usize,
    extra: Vec<(String, Value)>,
) -> Vec<u8> {
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let (d, ff) = (shape.width, shape.ffn);
    let kv = shape.kv_heads * (d / shape.heads);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("qwen2".into())),
        ("general.name", Value::String("random-qwen2".into())),
        ("qwen2.block_count", Value::U32(blocks as u32)),
        ("qwen2.context_length", Value::U32(32_768)),
        ("qwen2.embedding_length", Value::U32(d as u32)),
        ("qwen2.feed_forward_length", Value::U32(ff as u32)),
        ("qwen2.attention.head_count", Value::U32(shape.heads as u32)),
        (
            "qwen2.attention.head_count_kv",
            Value::U32(shape.kv_heads as u32),
        ),
        ("qwen2.rope.freq_base", Value::F32(1_000_000.0)),
        ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
    ];
    // Small scales (the smallest normal f16s) keep weights, activations and logits moderate.
    let (q4k_scale, q6k_scale) = (1e-4, 1e-4);
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            random_blocks(&mut noise, GgmlDType::Q4K, shape.vocab, d, q4k_scale),
        ),
        (
            "output.weight".into(),
            random_blocks(&mut noise, GgmlDType::Q6K, shape.vocab, d, q6k_scale),
        ),
        ("output_norm.weight".into(), f32_tensor(vec![1.0; d])),
    ];
    let mut small = |n: usize| {
        let mut bytes = vec![0u8; n];
        noise.fill(&mut bytes);
        f32_tensor(
            bytes
                .iter()
                .map(|&b| (f32::from(b) - 127.5) / 1270.0)
                .collect(),
        )
    };
    let biases: Vec<[QTensor; 3]> = (0..blocks)
        .map(|_| [small(d), small(kv), small(kv)])
        .collect();
    for (i, [q_bias, k_bias, v_bias]) in biases.into_iter().enumerate() {
        let name = |suffix: &str| format!("blk.{i}.{suffix}");
        let more_bits = if more_bits_layer(i, blocks) {
            GgmlDType::Q6K
        } else {
            GgmlDType::Q4K
        };
        let matrices = [
            ("attn_q.weight", GgmlDType::Q4K, d, d),
            ("attn_k.weight", GgmlDType::Q4K, kv, d),
            ("attn_v.weight", more_bits, kv, d),
            ("attn_output.weight", GgmlDType::Q4K, d, d),
            ("ffn_gate.weight", GgmlDType::Q4K, ff, d),
            ("ffn_up.weight", GgmlDType::Q4K, ff, d),
            ("ffn_down.weight", more_bits, d, ff),
        ];
        for (suffix, dtype, rows, cols) in matrices {
            let scale = if dtype == GgmlDType::Q6K {
                q6k_scale
            } else {
                q4k_scale
            };
            tensors.push((
                name(suffix),
                random_blocks(&mut noise, dtype, rows, cols, scale),
            ));
        }
        tensors.extend([
            (name("attn_norm.weight"), f32_tensor(vec![1.0; d])),
            (name("ffn_norm.weight"), f32_tensor(vec![1.0; d])),
            (name("attn_q.bias"), q_bias),
            (name("attn_k.bias"), k_bias),
            (name("attn_v.bias"), v_bias),
        ]);
    }
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let metadata_refs: Vec<(&str, &Value)> = metadata
        .iter()
        .map(|(k, v)| (*k, v))
        .chain(extra.iter().map(|(k, v)| (k.as_str(), v)))
        .collect();
    let mut out = Cursor::new(Vec::new());
    candle_core::quantized::gguf_file::write(&mut out, &metadata_refs, &tensor_refs)
        .expect("writing the GGUF");
    out.into_inner()
}

/// Whether Q4_K_M keeps layer `layer` of `layers`'s `attn_v` and `ffn_down` in Q6_K: the
/// first and last eighth of the layers and every third in between (llama.cpp's
/// `use_more_bits`). Of two layers, the second.
pub fn more_bits_layer(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}
