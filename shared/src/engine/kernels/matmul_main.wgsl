// Quantized matrix product for a batch of tokens: y[t][r] = W[r] · x[t] (+ bias[r]).
//
// One invocation computes ROWS consecutive output rows for a tile of up to TOKEN_TILE tokens:
// each weight is dequantized once per tile and each x vector loaded once for ROWS rows.
// Decode steps use TOKEN_TILE = 1 (a matrix-vector product), batched prefill a larger tile.
// Rows per invocation rather than a workgroup reduction per row needs no barriers, which is
// what CPU Vulkan/WebGPU drivers (lavapipe, SwiftShader) run fastest.
//
// Weights arrive split per GGUF block into heads (scales; `heads`, HEAD_WORDS words per
// block) and bulks (quants; `bulk`, BULK_VEC4S aligned vectors per block), see
// block_type.rs. The block type's file defines BLOCK_ELEMENTS, HEAD_WORDS, BULK_VEC4S, a
// `Block`, `load_block` and `group_weights` (four dequantized weights). The host prepends
// ROWS and TOKEN_TILE and appends `block_dot`, which unrolls every group of a block for every
// row and token of the tile (CPU drivers only keep values in registers when indices are
// constants). f16 scales are decoded with unpack2x16float: no shader-f16 needed.

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

@group(0) @binding(0) var<storage, read> bulk: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> heads: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<uniform> step_info: Step;

// First block of each of the invocation's rows (rows past the end repeat the last row).
var<private> row_base: array<u32, ROWS>;
var<private> tile_tokens: u32;
var<private> x_tile: u32;

fn head_word(block: u32, k: u32) -> u32 {
    return heads[block * HEAD_WORDS + k];
}

// Four 4-bit fields: bits shift .. shift+3 of each byte of `word`.
fn nibbles4(word: u32, shift: u32) -> vec4<u32> {
    return (vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(0xFu);
}

// x[t][4 * column4 .. +4] for token t of the tile (tokens past the tile repeat the last).
fn token_x(t: u32, column4: u32) -> vec4<f32> {
    return x[x_tile + min(t, tile_tokens - 1u) * params.x_stride + column4];
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let first_row = (group.x * 64u + lane) * ROWS;
    let tokens = select(step_info.tokens, params.tokens, params.tokens != 0u);
    let first_token = group.y * TOKEN_TILE;
    if (first_row >= params.rows || first_token >= tokens) {
        return;
    }
    tile_tokens = min(TOKEN_TILE, tokens - first_token);
    x_tile = params.x_offset + first_token * params.x_stride;
    for (var r = 0u; r < ROWS; r++) {
        row_base[r] = min(first_row + r, params.rows - 1u) * params.blocks_per_row;
    }
    var acc: array<vec4<f32>, ROWS * TOKEN_TILE>;
    for (var block = 0u; block < params.blocks_per_row; block++) {
        block_dot(block, block * (BLOCK_ELEMENTS / 4u), &acc);
    }
    for (var r = 0u; r < ROWS; r++) {
        let row = first_row + r;
        if (row >= params.rows) {
            break;
        }
        let out_row = params.row_offset + row;
        var row_bias = 0.0;
        if (params.has_bias != 0u) {
            row_bias = bias[out_row];
        }
        for (var t = 0u; t < tile_tokens; t++) {
            let sum = acc[r * TOKEN_TILE + t];
            y[(first_token + t) * params.y_stride + out_row] = sum.x + sum.y + sum.z + sum.w + row_bias;
        }
    }
}
