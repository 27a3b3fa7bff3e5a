// Matrix-vector product y = W x over GGUF-quantized rows, dequantizing inside the loop.
//
// One workgroup computes one output row: its 64 invocations stride over the row's blocks,
// each calling `block_dot` (defined by the block type's file, appended to this one) and the
// partial sums are reduced in workgroup memory. Rows beyond 65535 use the grid's y axis.
//
// Weights arrive as raw GGUF bytes in an array<u32> (little-endian), so every block type is
// read with the byte helpers below; f16 scales are decoded with unpack2x16float, which needs
// no shader-f16 support.

struct Params {
    rows: u32,            // rows in this weight chunk
    blocks_per_row: u32,  // GGUF blocks in one row
    row_offset: u32,      // index of this chunk's first row in y
    x_offset: u32,        // first element of x
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP_SIZE: u32 = 64u;
var<workgroup> partial_sums: array<f32, 64>;

fn byte_at(offset: u32) -> u32 {
    return (weights[offset >> 2u] >> ((offset & 3u) * 8u)) & 0xFFu;
}

fn i8_at(offset: u32) -> i32 {
    return bitcast<i32>(byte_at(offset) << 24u) >> 24u;
}

fn u16_at(offset: u32) -> u32 {
    return byte_at(offset) | (byte_at(offset + 1u) << 8u);
}

fn u32_at(offset: u32) -> u32 {
    return u16_at(offset) | (u16_at(offset + 2u) << 16u);
}

fn f16_at(offset: u32) -> f32 {
    return unpack2x16float(u16_at(offset)).x;
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = group.x + group.y * groups.x;
    if (row >= params.rows) {
        return;
    }
    var sum = 0.0;
    for (var block = lane; block < params.blocks_per_row; block += WORKGROUP_SIZE) {
        let block_index = row * params.blocks_per_row + block;
        sum += block_dot(block_index * BLOCK_BYTES, params.x_offset + block * BLOCK_ELEMENTS);
    }
    partial_sums[lane] = sum;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            partial_sums[lane] += partial_sums[lane + stride];
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        y[params.row_offset + row] = partial_sums[0];
    }
}
