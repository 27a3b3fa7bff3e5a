//! Rotary position embeddings as Qwen2 applies them (NeoX halves): the first and second half
//! of each head's vector are rotated together, `[x1 cos − x2 sin, x1 sin + x2 cos]`, by
//! angles `position × θ^(−2i/d)`. A rotation's gradient is the inverse rotation of the
//! output's gradient, `[g1 cos + g2 sin, g2 cos − g1 sin]`.

use candle_core::{D, DType, Device, Result, Tensor};

use super::qwen2_config::Qwen2Config;

/// cos and sin of position × frequency, `(max_positions, head_dim / 2)`.
#[derive(Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    pub fn new(config: &Qwen2Config, dtype: DType, device: &Device) -> Result<Self> {
        let dim = config.head_dim();
        let inverse_frequencies: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f64 / dim as f64))
            .collect();
        let positions = config.max_position_embeddings.min(32_768);
        let angles: Vec<f64> = (0..positions)
            .flat_map(|p| inverse_frequencies.iter().map(move |f| p as f64 * f))
            .collect();
        let angles = Tensor::from_vec(angles, (positions, dim / 2), device)?;
        Ok(Self {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }

    /// cos and sin at each token's position, `(tokens, 1, head_dim / 2)` each, in `dtype`.
    pub fn at(&self, positions: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos
                .index_select(positions, 0)?
                .unsqueeze(1)?
                .to_dtype(dtype)?,
            self.sin
                .index_select(positions, 0)?
                .unsqueeze(1)?
                .to_dtype(dtype)?,
        ))
    }
}

/// Rotates `x` `(tokens, heads, head_dim)` by each token's `(cos, sin)` from `Rotary::at`.
pub fn rotate(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor> {
    let dim = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, dim / 2)?;
    let x2 = x.narrow(D::Minus1, dim / 2, dim / 2)?;
    let rotated_1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let rotated_2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
    Tensor::cat(&[rotated_1, rotated_2], D::Minus1)
}

/// The gradient of `rotate`'s input from its output's gradient `grad`: the inverse rotation.
pub fn rotate_back(grad: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor> {
    let dim = grad.dim(D::Minus1)?;
    let g1 = grad.narrow(D::Minus1, 0, dim / 2)?;
    let g2 = grad.narrow(D::Minus1, dim / 2, dim / 2)?;
    let x1 = (g1.broadcast_mul(cos)? + g2.broadcast_mul(sin)?)?;
    let x2 = (g2.broadcast_mul(cos)? - g1.broadcast_mul(sin)?)?;
    Tensor::cat(&[x1, x2], D::Minus1)
}
