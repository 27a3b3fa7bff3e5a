//! Comparing an engine's next-token logits with candle's `quantized_qwen2`, the native
//! reference every engine is tested against: candle's logits for a step, the top token, and
//! the relative RMS difference of two logit vectors; plus the seeded noise the kernel tests
//! draw weights and inputs from.

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;

/// candle's logits after `tokens`, the first at `position`.
pub fn candle_logits(model: &mut ModelWeights, tokens: &[u32], position: usize) -> Vec<f32> {
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&input, position)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The index of the largest value.
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

/// ‖ours − theirs‖ / ‖theirs‖.
pub fn relative_rms_error(ours: &[f32], theirs: &[f32]) -> f64 {
    let (mut difference, mut norm) = (0f64, 0f64);
    for (a, b) in ours.iter().zip(theirs) {
        difference += f64::from(a - b).powi(2);
        norm += f64::from(*b).powi(2);
    }
    (difference / norm).sqrt()
}

/// `n` deterministic values in [-1, 1) from `seed` (xorshift).
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
