// Quantized matrix product for a batch of tokens: y[t][r] = W[r] · x[t] (+ bias[r]).
//
// One invocation computes one output row for a tile of up to TOKEN_TILE tokens, so each
// weight is dequantized once per tile (TOKEN_TILE = 1 for the decode step's matrix-vector
// product, larger for batched prefill). The grid is (row groups of 64, token tiles). Row per
// invocation (rather than a workgroup reduction per row) needs no barriers, which is what CPU
// Vulkan drivers (lavapipe, SwiftShader) run fastest, and keeps every GPU busy on wide matrices.
//
// Weights arrive as raw GGUF bytes in an array<u32> (little-endian); the block type's file,
// appended to this one, defines BLOCK_ELEMENTS, BLOCK_BYTES and `block_dot`, which dequantizes
// four weights at a time and hands them to `accumulate`. f16 scales are decoded with
// unpack2x16float, so no shader-f16 support is needed. The host prepends
// `const TOKEN_TILE: u32 = N;`.

struct Params {
    rows: u32,            // rows in this weight chunk
    blocks_per_row: u32,  // GGUF blocks in one row
    row_offset: u32,      // index of this chunk's first row among y's rows
    y_stride: u32,        // floats of y per token (all rows of the matrix)
    x_offset: u32,        // first vec4 of x for token 0
    x_stride: u32,        // vec4s of x per token
    has_bias: u32,        // 1: add bias[row]
    tokens: u32,          // tokens in the batch; 0: as many as the step uniform says
}

struct Step {
    position: u32,  // position of the batch's first token
    tokens: u32,    // tokens in this step's batch
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(5) var<uniform> step_info: Step;

var<private> acc: array<f32, TOKEN_TILE>;
var<private> tile_tokens: u32;
var<private> x_tile: u32;

// Adds w · x[t][4 * column4 .. 4 * column4 + 4] to every token of the tile.
fn accumulate(w: vec4<f32>, column4: u32) {
    for (var t = 0u; t < TOKEN_TILE; t++) {
        if (t < tile_tokens) {
            acc[t] += dot(w, x[x_tile + t * params.x_stride + column4]);
        }
    }
}

// The four bytes of a word as a vector, lowest first.
fn bytes4(word: u32) -> vec4<u32> {
    return (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFFu);
}

// Four bytes starting at any byte offset (blocks of 18, 22, 34 or 210 bytes are only
// 2-byte aligned).
fn word_at(offset: u32) -> u32 {
    let i = offset >> 2u;
    let shift = (offset & 3u) * 8u;
    if (shift == 0u) {
        return weights[i];
    }
    return (weights[i] >> shift) | (weights[i + 1u] << (32u - shift));
}

fn byte_at(offset: u32) -> u32 {
    return (weights[offset >> 2u] >> ((offset & 3u) * 8u)) & 0xFFu;
}

fn i8_at(offset: u32) -> i32 {
    return bitcast<i32>(byte_at(offset) << 24u) >> 24u;
}

fn f16_at(offset: u32) -> f32 {
    return unpack2x16float(byte_at(offset) | (byte_at(offset + 1u) << 8u)).x;
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = group.x * 64u + lane;
    let tokens = select(step_info.tokens, params.tokens, params.tokens != 0u);
    let first_token = group.y * TOKEN_TILE;
    if (row >= params.rows || first_token >= tokens) {
        return;
    }
    tile_tokens = min(TOKEN_TILE, tokens - first_token);
    x_tile = params.x_offset + first_token * params.x_stride;
    for (var t = 0u; t < TOKEN_TILE; t++) {
        acc[t] = 0.0;
    }
    let row_start = row * params.blocks_per_row * BLOCK_BYTES;
    for (var block = 0u; block < params.blocks_per_row; block++) {
        block_dot(row_start + block * BLOCK_BYTES, block * (BLOCK_ELEMENTS / 4u));
    }
    let out_row = params.row_offset + row;
    var row_bias = 0.0;
    if (params.has_bias != 0u) {
        row_bias = bias[out_row];
    }
    for (var t = 0u; t < TOKEN_TILE; t++) {
        if (t < tile_tokens) {
            y[(first_token + t) * params.y_stride + out_row] = acc[t] + row_bias;
        }
    }
}
