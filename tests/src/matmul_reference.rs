//! The CPU reference the matrix kernels are checked against, natively and in the browser:
//! candle quantizes random weights (with all-zero, large and tiny rows as edge cases) into a
//! block type, dequantizes them, and the f64 product with each token's x is what every kernel
//! must give, within a tolerance scaled by the sum of |w·x| terms.

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use shared::gguf::BlockType;
use shared::wgpu_engine::ProductInputs;

use crate::logit_comparison::noise;

/// The eps of the RMSNorms folded into products in these checks.
pub const NORM_EPS: f32 = 1e-6;

/// Weights with edge-case rows: all zero, large magnitudes, tiny magnitudes, one spike.
pub fn weights(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut w = noise(rows * cols, seed);
    w[..cols].fill(0.0);
    for v in &mut w[cols..2 * cols] {
        *v *= 1000.0;
    }
    for v in &mut w[2 * cols..3 * cols] {
        *v *= 1e-4;
    }
    w[3 * cols + 5] = 50.0;
    w
}

/// Each token's input: `tokens` vectors of `cols` values.
pub fn inputs(tokens: usize, cols: usize) -> Vec<Vec<f32>> {
    (0..tokens).map(|t| noise(cols, 7 + t as u64)).collect()
}

/// A quantized matrix and what its product with each token's x must be.
pub struct Case {
    pub quantized: QTensor,
    /// reference[t][row] and the sum of |w·x| terms, the scale of rounding error.
    pub reference: Vec<Vec<f64>>,
    pub magnitude: Vec<Vec<f64>>,
}

impl Case {
    /// The matrix in its GGUF blocks, as a GGUF file stores it.
    pub fn blocks(&self) -> Vec<u8> {
        self.quantized.data().unwrap().into_owned()
    }
}

/// `xs`: each token's input, `cols` floats per token.
pub fn case(block_type: BlockType, rows: usize, cols: usize, xs: &[Vec<f32>]) -> Case {
    seeded_case(block_type, rows, cols, xs, 42)
}

pub fn seeded_case(
    block_type: BlockType,
    rows: usize,
    cols: usize,
    xs: &[Vec<f32>],
    seed: u64,
) -> Case {
    let w = Tensor::from_vec(weights(rows, cols, seed), (rows, cols), &Device::Cpu).unwrap();
    let quantized = QTensor::quantize(&w, block_type.ggml()).unwrap();
    let dequantized: Vec<Vec<f32>> = quantized
        .dequantize(&Device::Cpu)
        .unwrap()
        .to_vec2()
        .unwrap();
    let product = |x: &[f32], term: fn(f32, f32) -> f64| -> Vec<f64> {
        dequantized
            .iter()
            .map(|row| row.iter().zip(x).map(|(&w, &x)| term(w, x)).sum())
            .collect()
    };
    Case {
        reference: xs
            .iter()
            .map(|x| product(x, |w, x| f64::from(w) * f64::from(x)))
            .collect(),
        magnitude: xs
            .iter()
            .map(|x| product(x, |w, x| f64::from((w * x).abs())))
            .collect(),
        quantized,
    }
}

/// What a product adds to W · x[t]: a bias per row, and y's values before the product
/// (`y[t * rows + row]`) when it adds to y; and an RMSNorm weight when the product
/// normalizes x[t] itself (the case's reference is then computed from the normalized x).
#[derive(Default, Clone, Copy)]
pub struct Added<'a> {
    pub bias: Option<&'a [f32]>,
    pub y_before: Option<&'a [f32]>,
    pub norm_weight: Option<&'a [f32]>,
}

impl<'a> Added<'a> {
    /// The product's inputs: `xs` (one token after the other) and what is added.
    pub fn to_inputs(self, xs: &'a [f32], tokens: usize) -> ProductInputs<'a> {
        ProductInputs {
            bias: self.bias,
            y_before: self.y_before,
            norm_weight: self.norm_weight,
            norm_eps: NORM_EPS,
            ..ProductInputs::plain(xs, tokens)
        }
    }
}

/// RMSNorm(x) · weight, in f64 and back.
pub fn rms_normed(x: &[f32], weight: &[f32]) -> Vec<f32> {
    let mean_square = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (mean_square + f64::from(NORM_EPS)).sqrt();
    x.iter()
        .zip(weight)
        .map(|(&v, &w)| (f64::from(v) * scale * f64::from(w)) as f32)
        .collect()
}

/// `gpu[t][row]` matches the reference (plus what was added) within 1e-5 of the |w·x| sum.
pub fn assert_close(block_type: BlockType, gpu: &[Vec<f32>], case: &Case, added: Added<'_>) {
    assert_within(block_type, gpu, case, added, 1e-5);
}

/// As `assert_close`, with a tolerance of `relative` × the sum of |w·x| terms.
pub fn assert_within(
    block_type: BlockType,
    gpu: &[Vec<f32>],
    case: &Case,
    added: Added<'_>,
    relative: f64,
) {
    assert_product_within(&format!("{block_type:?}"), gpu, case, added, relative);
}

/// As `assert_within`, failures named by `what` (the product and how it ran).
pub fn assert_product_within(
    what: &str,
    gpu: &[Vec<f32>],
    case: &Case,
    added: Added<'_>,
    relative: f64,
) {
    assert_eq!(gpu.len(), case.reference.len(), "{what}: tokens");
    let rows = gpu.first().map_or(0, Vec::len);
    for (t, row_values) in gpu.iter().enumerate() {
        assert_eq!(row_values.len(), case.reference[t].len(), "{what}: rows");
        for (row, &got) in row_values.iter().enumerate() {
            let want = case.reference[t][row]
                + added.bias.map_or(0.0, |b| f64::from(b[row]))
                + added.y_before.map_or(0.0, |y| f64::from(y[t * rows + row]));
            let tolerance = relative * case.magnitude[t][row] + 1e-5;
            assert!(
                (f64::from(got) - want).abs() <= tolerance,
                "{what}: token {t} row {row}: gpu {got}, reference {want} (tolerance {tolerance})"
            );
        }
    }
}
