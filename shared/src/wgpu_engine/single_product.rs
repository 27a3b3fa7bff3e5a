//! One matrix product run on its own and read back: y = W · x (+ bias, + y before) for every
//! token of a batch, with x normalized first where the plan folds RMSNorm into its products.
//! How the kernel checks reach a kernel, natively and in the browser alike.

use wgpu::util::DeviceExt as _;

use super::gpu_context::GpuContext;
use super::quantized_matmul::{InputNorm, MatmulOperands, QuantizedMatmulKernels, TokenCount};
use super::quantized_matrix::QuantizedMatrix;
use super::readback::read_f32;
use crate::generation::EngineError;

/// What one product reads: `xs` holds `tokens` inputs of the matrix's columns, one after
/// the other.
#[derive(Debug, Clone, Copy)]
pub struct ProductInputs<'a> {
    pub xs: &'a [f32],
    pub tokens: usize,
    /// Added to each token's outputs, one value per row.
    pub bias: Option<&'a [f32]>,
    /// y's values before the product (`tokens × rows`), which the product adds to.
    pub y_before: Option<&'a [f32]>,
    /// RMSNorm weight the product normalizes each x with (the plan must fold norms in).
    pub norm_weight: Option<&'a [f32]>,
    pub norm_eps: f32,
}

impl<'a> ProductInputs<'a> {
    /// W · x for each of `tokens` inputs in `xs`, nothing added.
    pub fn plain(xs: &'a [f32], tokens: usize) -> Self {
        Self {
            xs,
            tokens,
            bias: None,
            y_before: None,
            norm_weight: None,
            norm_eps: 1e-6,
        }
    }
}

/// Runs the product of `matrix` by every token of `inputs` in one step with `kernels`;
/// returns y, `tokens × rows` values (token-major).
pub async fn run_single_product(
    ctx: &GpuContext,
    kernels: &QuantizedMatmulKernels,
    matrix: &QuantizedMatrix,
    inputs: ProductInputs<'_>,
) -> Result<Vec<f32>, EngineError> {
    let (rows, cols, tokens) = (matrix.outputs(), matrix.cols, inputs.tokens);
    let check = |name: &str, len: usize, want: usize| {
        if len == want {
            Ok(())
        } else {
            Err(EngineError::Unsupported(format!(
                "{name} holds {len} values; {tokens} token(s) of a {rows} × {cols} product need {want}"
            )))
        }
    };
    check("x", inputs.xs.len(), tokens * cols)?;
    if let Some(bias) = inputs.bias {
        check("the bias", bias.len(), rows)?;
    }
    if let Some(y_before) = inputs.y_before {
        check("y before the product", y_before.len(), tokens * rows)?;
    }
    if let Some(weight) = inputs.norm_weight {
        check("the norm weight", weight.len(), cols)?;
    }
    let init = |label: &str, contents: &[u8], usage| {
        ctx.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
    };
    let storage = wgpu::BufferUsages::STORAGE;
    let x = init("x", bytemuck::cast_slice(inputs.xs), storage);
    let bias = inputs
        .bias
        .map(|b| init("bias", bytemuck::cast_slice(b), storage));
    let norm_weight = inputs
        .norm_weight
        .map(|w| init("norm weight", bytemuck::cast_slice(w), storage));
    let step = init(
        "step",
        bytemuck::cast_slice(&[0u32, tokens as u32]),
        wgpu::BufferUsages::UNIFORM,
    );
    let y_start = inputs
        .y_before
        .map_or_else(|| vec![0.0; tokens * rows], <[f32]>::to_vec);
    let y = init(
        "y",
        bytemuck::cast_slice(&y_start),
        storage | wgpu::BufferUsages::COPY_SRC,
    );
    let operands = MatmulOperands {
        x: &x,
        x_offset: 0,
        x_stride: cols,
        y: &y,
        bias: bias.as_ref(),
        add_to_y: inputs.y_before.is_some(),
        tokens: TokenCount::FromStep,
        y_columns: None,
        input_norm: norm_weight.as_ref().map(|weight| InputNorm {
            weight,
            eps: inputs.norm_eps,
        }),
    };
    let prepared = kernels.prepare(ctx, matrix, &operands, &step)?;
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        kernels.record(&mut pass, &prepared, tokens as u32);
    }
    ctx.queue.submit([encoder.finish()]);
    read_f32(ctx, &y, tokens * rows).await
}
