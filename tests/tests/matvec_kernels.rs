//! The quantized matrix-vector kernels, on a real Vulkan driver (Mesa lavapipe in CI), against
//! a CPU reference: candle quantizes random weights (with all-zero, large and tiny rows as edge
//! cases), dequantizes them, and the f64 product with x is what every block type must give.

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use shared::engine::readback::read_f32;
use shared::engine::{BlockType, GpuContext, MatVecKernels, QuantizedMatrix};
use wgpu::util::DeviceExt;

fn gpu() -> GpuContext {
    let ctx = pollster::block_on(GpuContext::new())
        .expect("a GPU adapter is required (CI installs Mesa lavapipe: mesa-vulkan-drivers)");
    eprintln!(
        "adapter: {} ({:?}, {:?}), max storage binding {} bytes, shader-f16 {}",
        ctx.adapter_info.name,
        ctx.adapter_info.backend,
        ctx.adapter_info.device_type,
        ctx.max_binding_bytes,
        ctx.has_shader_f16
    );
    ctx
}

/// Deterministic values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
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

/// Weights with edge-case rows: all zero, large magnitudes, tiny magnitudes, one spike.
fn weights(rows: usize, cols: usize) -> Vec<f32> {
    let mut w = noise(rows * cols, 42);
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

struct Case {
    quantized: QTensor,
    reference: Vec<f64>,
    magnitude: Vec<f64>,
}

fn case(block_type: BlockType, rows: usize, cols: usize, x: &[f32]) -> Case {
    let w = Tensor::from_vec(weights(rows, cols), (rows, cols), &Device::Cpu).unwrap();
    let quantized = QTensor::quantize(&w, block_type.ggml()).unwrap();
    let dequantized: Vec<Vec<f32>> = quantized
        .dequantize(&Device::Cpu)
        .unwrap()
        .to_vec2()
        .unwrap();
    let reference = dequantized
        .iter()
        .map(|row| {
            row.iter()
                .zip(x)
                .map(|(&w, &x)| f64::from(w) * f64::from(x))
                .sum()
        })
        .collect();
    let magnitude = dequantized
        .iter()
        .map(|row| {
            row.iter()
                .zip(x)
                .map(|(&w, &x)| f64::from((w * x).abs()))
                .sum()
        })
        .collect();
    Case {
        quantized,
        reference,
        magnitude,
    }
}

fn run_matvec(
    ctx: &GpuContext,
    kernels: &MatVecKernels,
    matrix: &QuantizedMatrix,
    x: &[f32],
) -> Vec<f32> {
    let x_buffer = ctx
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("x"),
            contents: bytemuck::cast_slice(x),
            usage: wgpu::BufferUsages::STORAGE,
        });
    let y_buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("y"),
        size: (matrix.rows * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    kernels.encode(ctx, &mut encoder, matrix, &x_buffer, 0, &y_buffer);
    ctx.queue.submit([encoder.finish()]);
    pollster::block_on(read_f32(ctx, &y_buffer, matrix.rows)).unwrap()
}

fn assert_close(block_type: BlockType, gpu: &[f32], case: &Case) {
    for (row, ((&got, &want), &magnitude)) in gpu
        .iter()
        .zip(&case.reference)
        .zip(&case.magnitude)
        .enumerate()
    {
        let tolerance = 1e-5 * magnitude + 1e-6;
        assert!(
            (f64::from(got) - want).abs() <= tolerance,
            "{block_type:?} row {row}: gpu {got}, reference {want} (tolerance {tolerance})"
        );
    }
}

#[test]
fn every_block_type_matches_the_cpu_reference() {
    let ctx = gpu();
    let kernels = MatVecKernels::new(&ctx);
    let (rows, cols) = (37, 512);
    let x = noise(cols, 7);
    for block_type in BlockType::ALL {
        let case = case(block_type, rows, cols, &x);
        let bytes = case.quantized.data().unwrap();
        let matrix = QuantizedMatrix::upload(&ctx, "w", block_type, rows, cols, &bytes).unwrap();
        assert_eq!(matrix.chunks.len(), 1);
        let y = run_matvec(&ctx, &kernels, &matrix, &x);
        assert_close(block_type, &y, &case);
        assert_eq!(
            y[0], 0.0,
            "{block_type:?}: an all-zero row must give exactly 0"
        );
    }
}

#[test]
fn matrices_split_across_buffers_give_the_same_result() {
    let ctx = gpu();
    let kernels = MatVecKernels::new(&ctx);
    let (rows, cols) = (29, 768);
    let x = noise(cols, 9);
    for block_type in [
        BlockType::Q8_0,
        BlockType::Q4K,
        BlockType::Q6K,
        BlockType::Q5_0,
    ] {
        let case = case(block_type, rows, cols, &x);
        let bytes = case.quantized.data().unwrap();
        let row_bytes = (bytes.len() / rows) as u64;
        // At most 4 rows per buffer: 8 buffers, the last one partly filled.
        let matrix = QuantizedMatrix::upload_in_chunks_of(
            &ctx,
            "w",
            block_type,
            rows,
            cols,
            &bytes,
            4 * row_bytes + 3,
        )
        .unwrap();
        assert_eq!(matrix.chunks.len(), 8);
        let y = run_matvec(&ctx, &kernels, &matrix, &x);
        assert_close(block_type, &y, &case);
    }
}

#[test]
fn more_rows_than_one_dispatch_dimension_holds() {
    let ctx = gpu();
    let kernels = MatVecKernels::new(&ctx);
    // 70,000 rows > 65,535 workgroups: the grid's second axis carries the rest.
    let (rows, cols) = (70_000, 32);
    let x = noise(cols, 11);
    let case = case(BlockType::Q8_0, rows, cols, &x);
    let bytes = case.quantized.data().unwrap();
    let matrix = QuantizedMatrix::upload(&ctx, "w", BlockType::Q8_0, rows, cols, &bytes).unwrap();
    let y = run_matvec(&ctx, &kernels, &matrix, &x);
    assert_close(BlockType::Q8_0, &y, &case);
}

#[test]
fn shapes_that_do_not_fit_the_block_type_are_clear_errors() {
    let ctx = gpu();
    let error = QuantizedMatrix::upload(
        &ctx,
        "blk.0.attn_q.weight",
        BlockType::Q4K,
        2,
        100,
        &[0; 10],
    )
    .err()
    .unwrap();
    let message = error.to_string();
    assert!(
        message.contains("blk.0.attn_q.weight") && message.contains("Q4K"),
        "{message}"
    );
    let error = QuantizedMatrix::upload(&ctx, "w", BlockType::Q8_0, 2, 32, &[0; 10])
        .err()
        .unwrap();
    assert!(error.to_string().contains("expected 68"), "{error}");
}
