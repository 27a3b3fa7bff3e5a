//! Copying results from the GPU back to the CPU, asynchronously (the browser cannot block);
//! native callers drive the device while they wait.

use super::gpu_context::GpuContext;
use crate::generation::EngineError;

/// Reads `len` f32 values from the start of `buffer` (which needs `COPY_SRC` usage).
pub async fn read_f32(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<f32>, EngineError> {
    let bytes = read_bytes(ctx, buffer, len * 4).await?;
    Ok(bytemuck::cast_slice::<u8, f32>(&bytes).to_vec())
}

/// Reads `len` u32 words from the start of `buffer` (which needs `COPY_SRC` usage).
pub async fn read_u32(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<u32>, EngineError> {
    let bytes = read_bytes(ctx, buffer, len * 4).await?;
    Ok(bytemuck::cast_slice::<u8, u32>(&bytes).to_vec())
}

async fn read_bytes(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<u8>, EngineError> {
    let bytes = len as u64;
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
    ctx.queue.submit([encoder.finish()]);

    let (sender, receiver) = futures_channel::oneshot::channel();
    let slice = staging.slice(..bytes);
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let _ = sender.send(result);
    });
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| EngineError::Readback(e.to_string()))?;
    receiver
        .await
        .map_err(|_| EngineError::Readback("the mapping request was dropped".into()))?
        .map_err(|e| EngineError::Readback(e.to_string()))?;
    let view = slice
        .get_mapped_range()
        .map_err(|e| EngineError::Readback(e.to_string()))?;
    let values = view.to_vec();
    drop(view);
    staging.unmap();
    Ok(values)
}
