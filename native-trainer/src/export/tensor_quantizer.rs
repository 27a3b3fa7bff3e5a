//! One tensor's bytes in a GGML type, as a GGUF stores them: F32 and F16 as little-endian
//! values, block types through candle's quantizers (ggml's reference algorithms). Blocks never
//! cross a row, so the rows are split across threads and the chunks' bytes concatenate to
//! exactly what a single pass writes.

use anyhow::{Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

/// Rows per thread below which splitting costs more than it saves.
const MIN_ROWS_PER_THREAD: usize = 16;

/// `tensor` (any float dtype, any device) in `dtype`'s GGUF byte layout.
pub fn tensor_bytes(tensor: &Tensor, dtype: GgmlDType) -> Result<Vec<u8>> {
    let dims = tensor.dims().to_vec();
    let values = tensor
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let (rows, row_length) = match dims.as_slice() {
        [] => (1, 1),
        [length] => (1, *length),
        [rows, rest @ ..] => (*rows, rest.iter().product()),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks = threads.min(rows / MIN_ROWS_PER_THREAD).max(1);
    if chunks == 1 {
        return quantize(&values, &dims, dtype);
    }
    let rows_per_chunk = rows.div_ceil(chunks);
    // Each chunk is its own tensor: candle's quantizer reads whole storages, not views.
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = values
            .chunks(rows_per_chunk * row_length)
            .map(|chunk| {
                let mut chunk_dims = dims.clone();
                chunk_dims[0] = chunk.len() / row_length;
                scope.spawn(move || quantize(chunk, &chunk_dims, dtype))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a quantizer thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(parts.concat())
}

fn quantize(values: &[f32], dims: &[usize], dtype: GgmlDType) -> Result<Vec<u8>> {
    let tensor = Tensor::from_slice(values, dims, &Device::Cpu)?;
    let quantized = QTensor::quantize(&tensor, dtype)
        .with_context(|| format!("quantizing a {dims:?} tensor to {dtype:?}"))?;
    Ok(quantized.data()?.into_owned())
}
