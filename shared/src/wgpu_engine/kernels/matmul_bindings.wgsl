// Declarations every quantized matrix product kernel shares (matmul_rows.wgsl for CPU
// drivers, matmul_lanes.wgsl for GPUs): the bindings, the per-dispatch and per-step
// uniforms, and helpers that block files and the generated `block_dot` / `run_dot` call.
//
// Weights arrive split per GGUF block into heads (scales; `heads`, HEAD_WORDS words per
// block) and bulks (quants; `bulk`, BULK_VEC4S aligned vectors per block), see
// block_type.rs. The block type's file defines BLOCK_ELEMENTS, SUB_BLOCKS, HEAD_WORDS,
// BULK_VEC4S, a `Block`, `load_sub` and `group_weights` (four dequantized weights). f16
// scales are decoded with unpack2x16float: no shader-f16 needed. The host prepends ROWS
// (matrix rows per invocation or per lane group), TOKEN_TILE, ROW_GROUPS_PER_Z (grid x's
// size; workgroup (x, y, z) handles row group x + z * ROW_GROUPS_PER_Z and token tile y) and
// PAIRED: the matrix's rows 2r and 2r + 1 are row r of SwiGLU's gate and up, and output r is
// silu(gate · x) · (up · x) (ROWS is then even, so an invocation holds whole pairs), and
// NORMALIZED_INPUT: the product multiplies RMSNorm(x[t]) · norm_weight instead of x[t], each
// workgroup computing the norms of its tile's tokens first (`normalize_tile`; lane and tile
// layouts only, TOKEN_TILE dividing 64).

struct Params {
    rows: u32,            // rows in this weight chunk
    blocks_per_row: u32,  // GGUF blocks in one row
    row_offset: u32,      // y column (and bias index) of this chunk's first row
    y_stride: u32,        // floats of y per token (at least one per matrix row or gate/up pair)
    x_offset: u32,        // first vec4 of x for token 0
    x_stride: u32,        // vec4s of x per token
    flags: u32,           // ADD_BIAS: add bias[row]; ADD_TO_Y: add the product to y
    tokens: u32,          // tokens in the batch; 0: as many as the step uniform says
    norm_eps: f32,        // RMSNorm's epsilon, where NORMALIZED_INPUT
    _padding0: u32,
    _padding1: u32,
    _padding2: u32,
}

const ADD_BIAS: u32 = 1u;
const ADD_TO_Y: u32 = 2u;

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
@group(0) @binding(7) var<storage, read> norm_weight: array<vec4<f32>>;

// First block of each of the invocation's rows (rows past the end repeat the last row).
var<private> row_base: array<u32, ROWS>;
var<private> tile_tokens: u32;
var<private> x_tile: u32;
// 1 / RMS(x[t]) for the tile's tokens, where NORMALIZED_INPUT.
var<workgroup> inv_rms: array<f32, TOKEN_TILE>;
var<workgroup> norm_partials: array<f32, 64>;

fn head_word(block: u32, k: u32) -> u32 {
    return heads[block * HEAD_WORDS + k];
}

// Four 4-bit fields: bits shift .. shift+3 of each byte of `word`.
fn nibbles4(word: u32, shift: u32) -> vec4<u32> {
    return (vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(0xFu);
}

fn hsum(v: vec4<f32>) -> f32 {
    return v.x + v.y + v.z + v.w;
}

// Writes `product`, the dot product of row `row` of this chunk for token `token` of the
// batch: plus the row's bias, if any, and y's current value when the product adds to it
// (residual connections).
fn store(row: u32, token: u32, product: f32) {
    let out_row = params.row_offset + row;
    let index = token * params.y_stride + out_row;
    var base = 0.0;
    if ((params.flags & ADD_BIAS) != 0u) {
        base = bias[out_row];
    }
    if ((params.flags & ADD_TO_Y) != 0u) {
        base += y[index];
    }
    y[index] = base + product;
}

// Writes SwiGLU's output for the pair whose up row is `up_row` of this chunk:
// silu(gate) · up, silu(g) = g / (1 + exp(-g)).
fn store_pair(up_row: u32, token: u32, gate: f32, up: f32) {
    y[token * params.y_stride + (params.row_offset + up_row) / 2u] = gate / (1.0 + exp(-gate)) * up;
}

// x[t][4 * column4 .. +4] for token t of the tile (tokens past the tile repeat the last),
// normalized where NORMALIZED_INPUT.
fn token_x(t: u32, column4: u32) -> vec4<f32> {
    let token = min(t, tile_tokens - 1u);
    let v = x[x_tile + token * params.x_stride + column4];
    if (NORMALIZED_INPUT) {
        return v * norm_weight[column4] * inv_rms[token];
    }
    return v;
}

// Fills inv_rms for the `count` tokens of the tile from `first_token`: 64 / TOKEN_TILE
// invocations sum the squares of each token's x. Every invocation of the workgroup calls it
// (it has barriers).
fn normalize_tile(lane: u32, first_token: u32, count: u32) {
    let per_token = 64u / TOKEN_TILE;
    let t = lane / per_token;
    let part = lane % per_token;
    let columns4 = params.blocks_per_row * BLOCK_ELEMENTS / 4u;
    var sum = 0.0;
    if (t < count) {
        let base = params.x_offset + (first_token + t) * params.x_stride;
        for (var c = part; c < columns4; c += per_token) {
            let v = x[base + c];
            sum += dot(v, v);
        }
    }
    norm_partials[lane] = sum;
    workgroupBarrier();
    if (part == 0u) {
        var total = 0.0;
        for (var i = 0u; i < per_token; i++) {
            total += norm_partials[lane + i];
        }
        inv_rms[t] = inverseSqrt(total / f32(columns4 * 4u) + params.norm_eps);
    }
    workgroupBarrier();
}
