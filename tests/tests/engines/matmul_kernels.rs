//! The quantized matrix kernels, on a real Vulkan driver (Mesa lavapipe in CI), against the
//! CPU reference (`flywheel_tests::matmul_reference`: candle's dequantized weights, products
//! in f64), which every block type must give — for one token (the decode kernel) and for
//! batches that fill one token tile, part of one, and several (the prefill kernels, the GPU's tiled one in f32 and, where the
//! adapter has shader-f16, f16), with and without a bias.

use flywheel_tests::logit_comparison::noise;
use flywheel_tests::matmul_reference::{
    Added, assert_close, assert_within, case, inputs, rms_normed, seeded_case,
};
use shared::gguf::BlockType;
use shared::wgpu_engine::readback::read_f32;
use shared::wgpu_engine::{
    GpuBlockLayout, GpuContext, MatmulLayout, MatmulOperands, MatmulPlan, OutputColumns,
    QuantizedMatmulKernels, QuantizedMatrix, TokenCount, run_single_product,
};
use wgpu::util::DeviceExt as _;

fn gpu() -> GpuContext {
    let ctx = pollster::block_on(GpuContext::new())
        .expect("a GPU adapter is required (CI installs Mesa lavapipe: mesa-vulkan-drivers)");
    eprintln!(
        "adapter: {} ({:?}, {:?}), max storage binding {} bytes, shader-f16 {}, smallest subgroup {:?}",
        ctx.adapter_info.name,
        ctx.adapter_info.backend,
        ctx.adapter_info.device_type,
        ctx.max_binding_bytes,
        ctx.has_shader_f16,
        ctx.subgroup_min_size
    );
    ctx
}

/// Runs the product for every token of `xs`; returns y[t][output].
fn run_matmul(
    ctx: &GpuContext,
    kernels: &QuantizedMatmulKernels,
    matrix: &QuantizedMatrix,
    xs: &[Vec<f32>],
    added: Added<'_>,
) -> Vec<Vec<f32>> {
    let flat = xs.concat();
    let y = pollster::block_on(run_single_product(
        ctx,
        kernels,
        matrix,
        added.to_inputs(&flat, xs.len()),
    ))
    .unwrap();
    y.chunks(matrix.outputs()).map(<[f32]>::to_vec).collect()
}

/// The layouts CPU drivers and GPUs get.
const CPU_AND_GPU_PLANS: [MatmulPlan; 2] = [MatmulPlan::CPU_DRIVER, MatmulPlan::GPU];

/// Lane layouts whose lanes add their sums by subgroup shuffles: 2 lanes per row up to the
/// adapter's smallest subgroup (lavapipe's is 8), for one-token and batched steps, with the
/// norm folded in where a test passes one. The test adapter must offer subgroups: lavapipe
/// and every native GPU driver do.
fn subgroup_plans(ctx: &GpuContext) -> Vec<MatmulPlan> {
    let smallest =
        ctx.subgroup_min_size
            .expect("the test adapter offers subgroups (Mesa lavapipe does)") as usize;
    let plans: Vec<MatmulPlan> = (1..=6)
        .map(|power| 1 << power)
        .filter(|&lanes| lanes <= smallest)
        .map(|lanes| MatmulPlan {
            normalize_inputs: true,
            subgroup_sums: true,
            ..MatmulPlan::same(MatmulLayout::LanesPerRow(lanes))
        })
        .collect();
    assert!(!plans.is_empty(), "subgroups of {smallest} hold 2 lanes");
    plans
}

#[test]
fn every_block_type_matches_the_cpu_reference_for_one_token_and_batches() {
    let ctx = gpu();
    // What CPU drivers, the browser's CPU fallback and GPUs get; 4 rows per invocation checks
    // the unrolling; 64 lanes per row are more than a K-quant row of 512 columns has runs,
    // so some lanes add nothing.
    // Then the lane layouts again with subgroup sums.
    let plans = [
        MatmulPlan::CPU_DRIVER,
        MatmulPlan::BROWSER_CPU_FALLBACK,
        MatmulPlan::GPU,
        MatmulPlan::same(MatmulLayout::RowsPerInvocation(4)),
        MatmulPlan::same(MatmulLayout::LanesPerRow(64)),
    ];
    for plan in plans.into_iter().chain(subgroup_plans(&ctx)) {
        let kernels = QuantizedMatmulKernels::with_plan(&ctx, &BlockType::ALL, &[], plan);
        // 37 rows: the last invocation has rows past the end.
        let (rows, cols) = (37, 512);
        // 1: the decode kernel; 5: part of a token tile; 19: several tiles and part of one.
        for tokens in [1, 5, 19] {
            let xs = inputs(tokens, cols);
            for block_type in BlockType::ALL {
                let case = case(block_type, rows, cols, &xs);
                let bytes = case.quantized.data().unwrap();
                let matrix =
                    QuantizedMatrix::upload(&ctx, "w", block_type, rows, cols, &bytes).unwrap();
                assert_eq!(matrix.chunks.len(), 1);
                let y = run_matmul(&ctx, &kernels, &matrix, &xs, Added::default());
                assert_close(block_type, &y, &case, Added::default());
                for (t, token_y) in y.iter().enumerate() {
                    assert_eq!(
                        token_y[0], 0.0,
                        "{block_type:?} token {t}: an all-zero row must give exactly 0"
                    );
                }
            }
        }
    }
}

#[test]
fn tiled_prompt_products_match_the_cpu_reference_at_tile_edges() {
    let ctx = gpu();
    // f16 tiles round weights and activations to 11 significant bits.
    let mut precisions = vec![(false, 1e-5)];
    if ctx.has_shader_f16 {
        precisions.push((true, 2e-3));
    } else {
        eprintln!("no shader-f16 on this adapter: f16 tiles not checked");
    }
    for (f16, relative) in precisions {
        for token_tile in [32, 8] {
            let plan = MatmulPlan {
                batched_tile: token_tile,
                ..MatmulPlan::gpu_with_f16(f16)
            };
            let kernels = QuantizedMatmulKernels::with_plan(&ctx, &BlockType::ALL, &[], plan);
            // 37 rows: part of one 64-row tile; 130: two tiles and two rows. 33 and 71 tokens:
            // whole token tiles and part of one.
            for (rows, tokens) in [(37, 33), (130, 71), (64, 2)] {
                for block_type in BlockType::ALL {
                    // F32 and F16 rows that end inside a 32-column chunk.
                    let cols = match block_type {
                        BlockType::F32 => 516,
                        BlockType::F16 => 520,
                        _ => 512,
                    };
                    let xs = inputs(tokens, cols);
                    let case = case(block_type, rows, cols, &xs);
                    let bytes = case.quantized.data().unwrap();
                    let matrix =
                        QuantizedMatrix::upload(&ctx, "w", block_type, rows, cols, &bytes).unwrap();
                    let y = run_matmul(&ctx, &kernels, &matrix, &xs, Added::default());
                    assert_eq!(y.len(), tokens);
                    assert_within(block_type, &y, &case, Added::default(), relative);
                    assert!(
                        y.iter().all(|token_y| token_y[0] == 0.0),
                        "f16 {f16} {block_type:?}: an all-zero row must give exactly 0"
                    );
                }
            }
        }
    }
}

#[test]
fn a_bias_and_y_before_the_product_are_added_to_every_token() {
    let ctx = gpu();
    for plan in CPU_AND_GPU_PLANS {
        let kernels = QuantizedMatmulKernels::with_plan(&ctx, &BlockType::ALL, &[], plan);
        let (rows, cols) = (40, 256);
        let bias: Vec<f32> = noise(rows, 3).iter().map(|b| b * 10.0).collect();
        for tokens in [1, 3] {
            let xs = inputs(tokens, cols);
            // A residual stream the product adds to (y += W · x + bias).
            let y_before: Vec<f32> = noise(rows * tokens, 5).iter().map(|v| v * 4.0).collect();
            for block_type in [BlockType::Q5_0, BlockType::Q8_0, BlockType::F32] {
                let case = case(block_type, rows, cols, &xs);
                let bytes = case.quantized.data().unwrap();
                let matrix =
                    QuantizedMatrix::upload(&ctx, "w", block_type, rows, cols, &bytes).unwrap();
                for added in [
                    Added {
                        bias: Some(&bias),
                        ..Added::default()
                    },
                    Added {
                        bias: Some(&bias),
                        y_before: Some(&y_before),
                        ..Added::default()
                    },
                    Added {
                        y_before: Some(&y_before),
                        ..Added::default()
                    },
                ] {
                    let y = run_matmul(&ctx, &kernels, &matrix, &xs, added);
                    assert_close(block_type, &y, &case, added);
                }
            }
        }
    }
}

#[test]
fn products_into_their_own_columns_fill_one_row_per_token() {
    // Q, K and V of different block types write side by side into one row per token, each
    // adding its part of one bias indexed by column; a column no product owns stays as it was.
    let ctx = gpu();
    let parts = [
        (BlockType::Q4K, 40),
        (BlockType::Q8_0, 8),
        (BlockType::Q6K, 8),
    ];
    let (cols, width) = (256, 60);
    let bias: Vec<f32> = noise(width, 3).iter().map(|b| b * 10.0).collect();
    let init = |contents: &[u8], usage| {
        ctx.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents,
                usage,
            })
    };
    let bias_buffer = init(bytemuck::cast_slice(&bias), wgpu::BufferUsages::STORAGE);
    for plan in CPU_AND_GPU_PLANS {
        let block_types = parts.map(|(block_type, _)| block_type);
        let kernels = QuantizedMatmulKernels::with_plan(&ctx, &block_types, &[], plan);
        for tokens in [1, 6] {
            let xs = inputs(tokens, cols);
            let flat: Vec<f32> = xs.concat();
            let x_buffer = init(bytemuck::cast_slice(&flat), wgpu::BufferUsages::STORAGE);
            let y_buffer = init(
                bytemuck::cast_slice(&vec![7.0f32; width * tokens]),
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            );
            let step = init(
                bytemuck::cast_slice(&[0u32, tokens as u32]),
                wgpu::BufferUsages::UNIFORM,
            );
            let mut first = 0;
            let mut expected = Vec::new();
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            let mut prepared = Vec::new();
            for (seed, (block_type, rows)) in parts.into_iter().enumerate() {
                let case = seeded_case(block_type, rows, cols, &xs, 40 + seed as u64);
                let bytes = case.quantized.data().unwrap();
                let matrix =
                    QuantizedMatrix::upload(&ctx, "w", block_type, rows, cols, &bytes).unwrap();
                let operands = MatmulOperands {
                    x: &x_buffer,
                    x_offset: 0,
                    x_stride: cols,
                    y: &y_buffer,
                    bias: Some(&bias_buffer),
                    add_to_y: false,
                    tokens: TokenCount::FromStep,
                    y_columns: Some(OutputColumns {
                        first,
                        per_token: width,
                    }),
                    input_norm: None,
                };
                prepared.push(kernels.prepare(&ctx, &matrix, &operands, &step).unwrap());
                expected.push((block_type, first, case));
                first += rows;
            }
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for product in &prepared {
                    kernels.record(&mut pass, product, tokens as u32);
                }
            }
            ctx.queue.submit([encoder.finish()]);
            let y = pollster::block_on(read_f32(&ctx, &y_buffer, width * tokens)).unwrap();
            let rows: Vec<Vec<f32>> = y.chunks(width).map(<[f32]>::to_vec).collect();
            for (block_type, first, case) in &expected {
                let outputs = case.reference[0].len();
                let mine: Vec<Vec<f32>> = rows
                    .iter()
                    .map(|row| row[*first..first + outputs].to_vec())
                    .collect();
                let added = Added {
                    bias: Some(&bias[*first..first + outputs]),
                    ..Added::default()
                };
                assert_close(*block_type, &mine, case, added);
            }
            for (t, row) in rows.iter().enumerate() {
                assert_eq!(
                    row[56..],
                    [7.0; 4],
                    "token {t}: columns no product owns changed"
                );
            }
        }
    }
}

#[test]
fn products_that_normalize_their_input_match_the_cpu_reference() {
    // RMSNorm folded into the product: each workgroup computes its tokens' norms, for one
    // token (lanes), batches in lane tiles, and tiles of 8 and 32 tokens (f32, and f16 where
    // the adapter has it). The all-zero input of token 0 checks that eps keeps it finite.
    let ctx = gpu();
    let mut plans = vec![
        MatmulPlan::GPU,
        MatmulPlan {
            batched_tile: 8,
            ..MatmulPlan::GPU
        },
        MatmulPlan {
            normalize_inputs: true,
            ..MatmulPlan::same(MatmulLayout::LanesPerRow(16))
        },
    ];
    if ctx.has_shader_f16 {
        plans.push(MatmulPlan::gpu_with_f16(true));
    }
    plans.extend(subgroup_plans(&ctx));
    let (rows, cols) = (70, 512);
    let weight: Vec<f32> = noise(cols, 11).iter().map(|w| 1.0 + w * 0.5).collect();
    for plan in plans {
        let relative = if plan.batched == (MatmulLayout::Tiled { f16: true }) {
            2e-3
        } else {
            1e-5
        };
        let kernels = QuantizedMatmulKernels::with_plan(&ctx, &BlockType::ALL, &[], plan);
        for tokens in [1, 6, 37] {
            let mut xs = inputs(tokens, cols);
            xs[0].fill(0.0);
            let normed: Vec<Vec<f32>> = xs.iter().map(|x| rms_normed(x, &weight)).collect();
            for block_type in [
                BlockType::Q4K,
                BlockType::Q6K,
                BlockType::Q8_0,
                BlockType::F32,
            ] {
                let case = case(block_type, rows, cols, &normed);
                let bytes = case.quantized.data().unwrap();
                let matrix =
                    QuantizedMatrix::upload(&ctx, "w", block_type, rows, cols, &bytes).unwrap();
                let added = Added {
                    norm_weight: Some(&weight),
                    ..Added::default()
                };
                let y = run_matmul(&ctx, &kernels, &matrix, &xs, added);
                assert_within(block_type, &y, &case, Added::default(), relative);
                assert!(
                    y[0].iter().all(|&v| v == 0.0),
                    "{plan:?}: a zero input gives 0"
                );
            }
        }
    }
}

#[test]
fn a_product_that_does_not_fit_its_output_row_is_refused() {
    let ctx = gpu();
    let kernels = QuantizedMatmulKernels::with_plan(&ctx, &[BlockType::Q8_0], &[], MatmulPlan::GPU);
    let xs = inputs(1, 64);
    let case = case(BlockType::Q8_0, 8, 64, &xs);
    let bytes = case.quantized.data().unwrap();
    let matrix = QuantizedMatrix::upload(&ctx, "w", BlockType::Q8_0, 8, 64, &bytes).unwrap();
    let buffer = |size: u64, usage| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let x = buffer(256, wgpu::BufferUsages::STORAGE);
    let y = buffer(64, wgpu::BufferUsages::STORAGE);
    let step = buffer(8, wgpu::BufferUsages::UNIFORM);
    let operands = MatmulOperands {
        x: &x,
        x_offset: 0,
        x_stride: 64,
        y: &y,
        bias: None,
        add_to_y: false,
        tokens: TokenCount::FromStep,
        y_columns: Some(OutputColumns {
            first: 4,
            per_token: 10,
        }),
        input_norm: None,
    };
    let Err(error) = kernels.prepare(&ctx, &matrix, &operands, &step) else {
        panic!("8 outputs from column 4 cannot fit a row of 10");
    };
    assert!(
        error
            .to_string()
            .contains("8 outputs from column 4 do not fit a y row of 10"),
        "{error}"
    );
}

#[test]
fn gate_and_up_in_row_pairs_give_silu_of_gate_times_up() {
    let ctx = gpu();
    let silu = |g: f64| g / (1.0 + (-g).exp());
    let plans = [
        MatmulPlan::CPU_DRIVER,
        MatmulPlan::BROWSER_CPU_FALLBACK,
        MatmulPlan::GPU,
        MatmulPlan::same(MatmulLayout::LanesPerRow(64)),
    ];
    for plan in plans.into_iter().chain(subgroup_plans(&ctx)) {
        let kernels = QuantizedMatmulKernels::with_plan(&ctx, &[], &BlockType::ALL, plan);
        // 37 pairs: the last invocation has pairs past the end.
        let (rows, cols) = (37, 256);
        for tokens in [1, 5, 40] {
            let xs = inputs(tokens, cols);
            for block_type in BlockType::ALL {
                let gate = seeded_case(block_type, rows, cols, &xs, 42);
                let up = seeded_case(block_type, rows, cols, &xs, 43);
                let [gate_bytes, up_bytes] = [&gate, &up].map(|c| c.quantized.data().unwrap());
                // Whole buffers, and chunks of 4 pairs plus one row (a pair is never split).
                let row_bytes =
                    (cols / block_type.block_elements() * block_type.bulk_vec4s() * 16) as u64;
                for max_chunk_bytes in [ctx.max_binding_bytes, 9 * row_bytes] {
                    let matrix = QuantizedMatrix::upload_row_pairs(
                        &ctx,
                        ["gate", "up"],
                        block_type,
                        rows,
                        cols,
                        [&gate_bytes, &up_bytes],
                        max_chunk_bytes,
                    )
                    .unwrap();
                    assert!(matrix.chunks.iter().all(|c| c.rows % 2 == 0));
                    let y = run_matmul(&ctx, &kernels, &matrix, &xs, Added::default());
                    for (t, got) in y.iter().enumerate() {
                        assert_eq!(got.len(), rows);
                        for (row, &got) in got.iter().enumerate() {
                            let (g, u) = (gate.reference[t][row], up.reference[t][row]);
                            let want = silu(g) * u;
                            // The products' rounding, carried through silu(g) · u.
                            let tolerance = 1e-5
                                * (gate.magnitude[t][row] * u.abs()
                                    + up.magnitude[t][row] * silu(g).abs())
                                + 1e-5;
                            assert!(
                                (f64::from(got) - want).abs() <= tolerance,
                                "{plan:?} {block_type:?} token {t} pair {row}: gpu {got}, reference {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn matrices_split_across_buffers_give_the_same_result() {
    let ctx = gpu();
    for plan in CPU_AND_GPU_PLANS {
        let kernels = QuantizedMatmulKernels::with_plan(&ctx, &BlockType::ALL, &[], plan);
        let (rows, cols) = (29, 768);
        for tokens in [1, 9] {
            let xs = inputs(tokens, cols);
            for block_type in [
                BlockType::Q8_0,
                BlockType::Q4K,
                BlockType::Q6K,
                BlockType::Q5_0,
            ] {
                let case = case(block_type, rows, cols, &xs);
                let bytes = case.quantized.data().unwrap();
                // The bulk (quants) of one row on the GPU; at most 4 rows per buffer: 8 buffers,
                // the last one partly filled.
                let row_bytes =
                    (cols / block_type.block_elements() * block_type.bulk_vec4s() * 16) as u64;
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
                let y = run_matmul(&ctx, &kernels, &matrix, &xs, Added::default());
                assert_close(block_type, &y, &case, Added::default());
            }
        }
    }
}

#[test]
fn a_vocabulary_sized_output_head_runs_in_one_dispatch_per_chunk() {
    let ctx = gpu();
    // With 64 lanes per row a workgroup computes one row: 151,936 workgroups, more than the
    // 65,535 one grid dimension may have.
    let one_row_per_workgroup = MatmulPlan::same(MatmulLayout::LanesPerRow(64));
    for plan in [
        MatmulPlan::CPU_DRIVER,
        MatmulPlan::GPU,
        one_row_per_workgroup,
    ] {
        let kernels = QuantizedMatmulKernels::with_plan(&ctx, &BlockType::ALL, &[], plan);
        // 151,936 rows: Qwen2's vocabulary.
        let (rows, cols) = (151_936, 32);
        let xs = inputs(1, cols);
        let case = case(BlockType::Q8_0, rows, cols, &xs);
        let bytes = case.quantized.data().unwrap();
        let matrix =
            QuantizedMatrix::upload(&ctx, "w", BlockType::Q8_0, rows, cols, &bytes).unwrap();
        let y = run_matmul(&ctx, &kernels, &matrix, &xs, Added::default());
        assert_close(BlockType::Q8_0, &y, &case, Added::default());
    }
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
