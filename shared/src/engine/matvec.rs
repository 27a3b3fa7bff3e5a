//! Quantized matrix × vector (the decode-step workhorse): one compute pipeline per block type,
//! built from `kernels/matvec_main.wgsl` plus that type's `block_dot`.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::block_type::BlockType;
use super::gpu_context::GpuContext;
use super::quantized_matrix::QuantizedMatrix;

/// The most workgroups one dispatch dimension may have.
const MAX_GROUPS_PER_DIMENSION: usize = 65_535;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatVecParams {
    rows: u32,
    blocks_per_row: u32,
    row_offset: u32,
    x_offset: u32,
}

pub struct MatVecKernels {
    pipelines: HashMap<BlockType, wgpu::ComputePipeline>,
}

impl MatVecKernels {
    /// Compiles the kernel of every block type.
    pub fn new(ctx: &GpuContext) -> Self {
        let pipelines = BlockType::ALL
            .iter()
            .map(|&block_type| {
                let source = format!(
                    "{}\n{}",
                    include_str!("kernels/matvec_main.wgsl"),
                    block_type.block_kernel_source()
                );
                let label = format!("matvec {block_type:?}");
                let pipeline = ctx.compute_pipeline(&label, &source);
                (block_type, pipeline)
            })
            .collect();
        Self { pipelines }
    }

    /// Binds `y[..rows] = W · x[x_offset..x_offset + cols]` once, to be recorded every step.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        matrix: &QuantizedMatrix,
        x: &wgpu::Buffer,
        x_offset: usize,
        y: &wgpu::Buffer,
    ) -> PreparedMatVec {
        let pipeline = &self.pipelines[&matrix.block_type];
        let layout = pipeline.get_bind_group_layout(0);
        let dispatches = matrix
            .chunks
            .iter()
            .map(|chunk| {
                let params = MatVecParams {
                    rows: chunk.rows as u32,
                    blocks_per_row: matrix.blocks_per_row() as u32,
                    row_offset: chunk.first_row as u32,
                    x_offset: x_offset as u32,
                };
                let uniform = ctx
                    .device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("matvec params"),
                        contents: bytemuck::bytes_of(&params),
                        usage: wgpu::BufferUsages::UNIFORM,
                    });
                let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("matvec"),
                    layout: &layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: chunk.buffer.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: x.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: y.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 3,
                            resource: uniform.as_entire_binding(),
                        },
                    ],
                });
                let groups_x = chunk.rows.clamp(1, MAX_GROUPS_PER_DIMENSION);
                let groups_y = chunk.rows.div_ceil(groups_x).max(1);
                (bind_group, [groups_x as u32, groups_y as u32])
            })
            .collect();
        PreparedMatVec {
            block_type: matrix.block_type,
            dispatches,
        }
    }

    /// Records a prepared product into an open compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, prepared: &PreparedMatVec) {
        pass.set_pipeline(&self.pipelines[&prepared.block_type]);
        for (bind_group, [x, y]) in &prepared.dispatches {
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*x, *y, 1);
        }
    }

    /// Records `y[..rows] = W · x[x_offset..x_offset + cols]` into `encoder` in its own pass.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        matrix: &QuantizedMatrix,
        x: &wgpu::Buffer,
        x_offset: usize,
        y: &wgpu::Buffer,
    ) {
        let prepared = self.prepare(ctx, matrix, x, x_offset, y);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("matvec"),
            timestamp_writes: None,
        });
        self.record(&mut pass, &prepared);
    }
}

/// A matrix-vector product with its buffers bound: one dispatch per weight chunk.
pub struct PreparedMatVec {
    block_type: BlockType,
    dispatches: Vec<(wgpu::BindGroup, [u32; 2])>,
}
