//! A weight matrix on the GPU in its GGUF block format, each block split into head and bulk
//! (see `block_type.rs`). Rows are split into chunks that each fit one storage binding
//! (WebGPU's default is 128 MiB; a 151,936-row output head can exceed it). Two matrices of one
//! type and shape can share one upload with their rows interleaved (SwiGLU's gate and up, which
//! one product then turns into silu(gate · x) · (up · x)).

use super::gpu_block_layout::GpuBlockLayout;
use super::gpu_context::GpuContext;
use crate::generation::EngineError;
use crate::gguf::block_type::BlockType;

/// GGUF bytes of the rows an upload splits into heads and bulks at a time (whole rows, at
/// least one).
const UPLOAD_PIECE_BYTES: usize = 8 << 20;

/// Fills its `Vec` with the bytes of `rows` rows from `first_row` (arguments in that order)
/// of GGUF tensor data, as the file stores them.
pub type ReadRows<'a> = dyn FnMut(usize, usize, &mut Vec<u8>) -> Result<(), EngineError> + 'a;

/// One buffer's worth of whole rows: their blocks' bulks and heads.
pub struct MatrixChunk {
    pub bulk: wgpu::Buffer,
    pub heads: wgpu::Buffer,
    pub first_row: usize,
    pub rows: usize,
}

pub struct QuantizedMatrix {
    pub block_type: BlockType,
    /// Rows on the GPU (both matrices' rows when `row_pairs`).
    pub rows: usize,
    pub cols: usize,
    pub chunks: Vec<MatrixChunk>,
    /// Rows 2r and 2r + 1 are row r of two matrices (see `upload_row_pairs`); chunks hold
    /// whole pairs.
    pub row_pairs: bool,
}

impl QuantizedMatrix {
    /// Uploads `bytes` (GGUF tensor data, row-major, `rows` × `cols` weights).
    pub fn upload(
        ctx: &GpuContext,
        name: &str,
        block_type: BlockType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self, EngineError> {
        Self::upload_in_chunks_of(
            ctx,
            name,
            block_type,
            rows,
            cols,
            bytes,
            ctx.max_binding_bytes,
        )
    }

    /// As `upload`, with chunks of at most `max_chunk_bytes` (tests force small chunks).
    pub fn upload_in_chunks_of(
        ctx: &GpuContext,
        name: &str,
        block_type: BlockType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
        max_chunk_bytes: u64,
    ) -> Result<Self, EngineError> {
        let row_bytes = checked_row_bytes(name, block_type, rows, cols, bytes)?;
        let shape = (block_type, rows, cols);
        let mut read_rows = slice_rows(bytes, row_bytes);
        Self::upload_rows(ctx, name, shape, &mut read_rows, max_chunk_bytes, false)
    }

    /// As `upload`, reading the GGUF tensor data a piece of rows at a time:
    /// `read_rows(first_row, rows, out)` fills `out` with those rows' bytes. An upload then
    /// never holds the whole tensor, only a piece (the browser's worker keeps its wasm memory
    /// for good at its largest).
    pub fn upload_streamed(
        ctx: &GpuContext,
        name: &str,
        shape: (BlockType, usize, usize),
        read_rows: &mut ReadRows<'_>,
    ) -> Result<Self, EngineError> {
        let (block_type, _, cols) = shape;
        whole_blocks(name, block_type, cols)?;
        Self::upload_rows(ctx, name, shape, read_rows, ctx.max_binding_bytes, false)
    }

    /// Uploads two `rows` × `cols` matrices of one block type (GGUF tensor data `pair`, named
    /// `names`) with their rows interleaved: row r of the first becomes row 2r, row r of the
    /// second row 2r + 1; chunks of at most `max_chunk_bytes` hold whole pairs.
    pub fn upload_row_pairs(
        ctx: &GpuContext,
        names: [&str; 2],
        block_type: BlockType,
        rows: usize,
        cols: usize,
        pair: [&[u8]; 2],
        max_chunk_bytes: u64,
    ) -> Result<Self, EngineError> {
        let [first, second] = pair;
        let row_bytes = checked_row_bytes(names[0], block_type, rows, cols, first)?;
        checked_row_bytes(names[1], block_type, rows, cols, second)?;
        let mut interleaved = Vec::with_capacity(2 * first.len());
        for (a, b) in first.chunks(row_bytes).zip(second.chunks(row_bytes)) {
            interleaved.extend_from_slice(a);
            interleaved.extend_from_slice(b);
        }
        let name = format!("{} + {}", names[0], names[1]);
        let shape = (block_type, 2 * rows, cols);
        let mut read_rows = slice_rows(&interleaved, row_bytes);
        Self::upload_rows(ctx, &name, shape, &mut read_rows, max_chunk_bytes, true)
    }

    /// Uploads tensor data of `shape` (block type, rows, columns; whole blocks per row),
    /// read by `read_rows` a piece at a time, in chunks of whole rows (whole row pairs with
    /// `row_pairs`).
    fn upload_rows(
        ctx: &GpuContext,
        name: &str,
        shape: (BlockType, usize, usize),
        read_rows: &mut ReadRows<'_>,
        max_chunk_bytes: u64,
        row_pairs: bool,
    ) -> Result<Self, EngineError> {
        let (block_type, rows, cols) = shape;
        let blocks_per_row = cols / block_type.block_elements();
        let row_bytes = blocks_per_row * block_type.block_bytes();
        let bulk_row_bytes = blocks_per_row * block_type.bulk_vec4s() * 16;
        let mut rows_per_chunk =
            (max_chunk_bytes as usize / bulk_row_bytes.max(1)).min(rows.max(1));
        if row_pairs {
            rows_per_chunk -= rows_per_chunk % 2;
        }
        if rows_per_chunk == 0 {
            return Err(EngineError::Unsupported(format!(
                "tensor `{name}`: one row of {bulk_row_bytes} bytes exceeds the GPU's storage binding limit of {max_chunk_bytes} bytes"
            )));
        }
        let head_row_bytes = blocks_per_row * block_type.head_words() * 4;
        // Rows split into heads and bulks at a time: what the upload holds besides the tensor.
        let rows_per_piece = (UPLOAD_PIECE_BYTES / row_bytes.max(1)).max(1);
        let mut piece = Vec::new();
        let mut chunks = Vec::new();
        let mut first_row = 0;
        while first_row < rows {
            let chunk_rows = rows_per_chunk.min(rows - first_row);
            let buffer = |size: usize| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(name),
                    // Types without heads still bind a (tiny) heads buffer.
                    size: size.max(4) as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            let chunk = MatrixChunk {
                bulk: buffer(chunk_rows * bulk_row_bytes),
                heads: buffer(chunk_rows * head_row_bytes),
                first_row,
                rows: chunk_rows,
            };
            let mut row = 0;
            while row < chunk_rows {
                let piece_rows = rows_per_piece.min(chunk_rows - row);
                read_rows(first_row + row, piece_rows, &mut piece)?;
                if piece.len() != piece_rows * row_bytes {
                    return Err(EngineError::Unsupported(format!(
                        "tensor `{name}`: {} bytes for {piece_rows} rows of {row_bytes} from row {}",
                        piece.len(),
                        first_row + row
                    )));
                }
                let (heads, bulk) = block_type.split_blocks(&piece);
                let queue = &ctx.queue;
                queue.write_buffer(&chunk.bulk, (row * bulk_row_bytes) as u64, &bulk);
                if !heads.is_empty() {
                    queue.write_buffer(&chunk.heads, (row * head_row_bytes) as u64, &heads);
                }
                row += piece_rows;
            }
            chunks.push(chunk);
            first_row += chunk_rows;
        }
        // Hands the writes to the GPU now, so their staging copies do not pile up.
        ctx.queue.submit([]);
        Ok(Self {
            block_type,
            rows,
            cols,
            chunks,
            row_pairs,
        })
    }

    /// Outputs a product writes per token: one per row, or one per row pair.
    pub fn outputs(&self) -> usize {
        if self.row_pairs {
            self.rows / 2
        } else {
            self.rows
        }
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / self.block_type.block_elements()
    }
}

/// The bytes of one row of `cols` weights, which must fill whole blocks.
fn whole_blocks(name: &str, block_type: BlockType, cols: usize) -> Result<usize, EngineError> {
    let elements = block_type.block_elements();
    if !cols.is_multiple_of(elements) {
        return Err(EngineError::Unsupported(format!(
            "tensor `{name}`: rows of {cols} weights do not fill whole {block_type:?} blocks of {elements}"
        )));
    }
    Ok(cols / elements * block_type.block_bytes())
}

/// Reads pieces of rows out of tensor data already in memory.
fn slice_rows(
    bytes: &[u8],
    row_bytes: usize,
) -> impl FnMut(usize, usize, &mut Vec<u8>) -> Result<(), EngineError> + '_ {
    move |first_row, rows, out| {
        out.clear();
        out.extend_from_slice(&bytes[first_row * row_bytes..(first_row + rows) * row_bytes]);
        Ok(())
    }
}

/// The bytes of one row, after checking that `bytes` holds `rows` × `cols` weights of
/// `block_type` in whole blocks.
fn checked_row_bytes(
    name: &str,
    block_type: BlockType,
    rows: usize,
    cols: usize,
    bytes: &[u8],
) -> Result<usize, EngineError> {
    let row_bytes = whole_blocks(name, block_type, cols)?;
    if bytes.len() != rows * row_bytes {
        return Err(EngineError::Unsupported(format!(
            "tensor `{name}`: {} bytes for {rows}×{cols} {block_type:?} weights, expected {}",
            bytes.len(),
            rows * row_bytes
        )));
    }
    Ok(row_bytes)
}
