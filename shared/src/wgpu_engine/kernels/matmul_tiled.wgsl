// Quantized matrix product for a batch of tokens, tiled GPU layout (prompt steps):
// y[t][r] (+)= W[r] · x[t] (+ bias[r]).
//
// A workgroup of 64 computes a tile of 64 rows × TILE_TOKENS tokens, walking the columns in
// chunks of 32. For each chunk it stages, in workgroup memory,
//   weights      64 rows × 8 vec4: invocation i dequantizes row i's 32 weights (one K-quant
//                sub-block, one 32-weight block, or several F32/F16 blocks);
//   activations  TILE_TOKENS tokens × 8 vec4, loaded by all 64 together;
// then each invocation multiplies 4 rows by TILE_TOKENS / 4 tokens out of workgroup memory.
// Every weight is dequantized once per TILE_TOKENS tokens (the row layouts: once per 4) and
// every x vector loaded once per 64 rows. Both tiles are padded to 9 vec4 per row so that
// neighbouring invocations read different banks.
//
// Invocation i = 16 · token_slot + row_slot computes tokens token_slot · TILE_TOKENS / 4 + t
// and the tile's rows 2 · row_slot + {0, 1} and 32 + 2 · row_slot + {0, 1}: neighbours read
// neighbouring rows, and gate/up pairs (PAIRED) stay within one invocation.
//
// `tile_t` is vec4<f32>, or vec4<f16> where the adapter has shader-f16 (half the workgroup
// memory and f16 products, each 4-term dot accumulated in f32). Follows
// matmul_bindings.wgsl; the host prepends TILE_TOKENS (a multiple of 4, at most 32) and the
// `tile_t` alias, and appends the block type's file.

const TILE_ROWS: u32 = 64u;
const CHUNK_VEC4S: u32 = 8u;
const TILE_STRIDE: u32 = 9u;
const TOKENS_PER_INVOCATION: u32 = TILE_TOKENS / 4u;
// vec4 groups of one run (what one load_sub covers), and of one block.
const RUN_GROUPS: u32 = BLOCK_ELEMENTS / 4u / SUB_BLOCKS;
const BLOCK_GROUPS: u32 = BLOCK_ELEMENTS / 4u;

var<workgroup> w_tile: array<tile_t, TILE_ROWS * TILE_STRIDE>;
var<workgroup> x_tile_memory: array<tile_t, TILE_TOKENS * TILE_STRIDE>;

// The tile row of slot `r` (0..4) of the invocation with row slot `row_slot`.
fn tile_row_of(row_slot: u32, r: u32) -> u32 {
    return (r / 2u) * 32u + 2u * row_slot + r % 2u;
}

// Row `stage_base`'s (its first block's index) 32 weights of chunk `chunk` into w_tile row
// `lane`; zeros past the row's end (F32/F16 rows need not be whole chunks).
fn stage_weights(lane: u32, stage_base: u32, chunk: u32, row_groups: u32) {
    for (var j = 0u; j < CHUNK_VEC4S; j += RUN_GROUPS) {
        let first = chunk * CHUNK_VEC4S + j;
        if (first < row_groups) {
            let block = first / BLOCK_GROUPS;
            let b = load_sub(stage_base + block, (first % BLOCK_GROUPS) / RUN_GROUPS);
            for (var g = 0u; g < RUN_GROUPS; g++) {
                w_tile[lane * TILE_STRIDE + j + g] = tile_t(group_weights(b, g));
            }
        } else {
            for (var g = 0u; g < RUN_GROUPS; g++) {
                w_tile[lane * TILE_STRIDE + j + g] = tile_t(0.0);
            }
        }
    }
}

// The tile's tokens' x for chunk `chunk` (zeros past the batch or the row), normalized where
// NORMALIZED_INPUT.
fn stage_activations(lane: u32, chunk: u32, row_groups: u32, first_token: u32, tile_tokens_n: u32) {
    for (var i = lane; i < TILE_TOKENS * CHUNK_VEC4S; i += 64u) {
        let t = i / CHUNK_VEC4S;
        let column4 = chunk * CHUNK_VEC4S + i % CHUNK_VEC4S;
        var v = vec4<f32>(0.0);
        if (t < tile_tokens_n && column4 < row_groups) {
            v = x[params.x_offset + (first_token + t) * params.x_stride + column4];
            if (NORMALIZED_INPUT) {
                v *= norm_weight[column4] * inv_rms[t];
            }
        }
        x_tile_memory[t * TILE_STRIDE + i % CHUNK_VEC4S] = tile_t(v);
    }
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let tile_row = (group.x + group.z * ROW_GROUPS_PER_Z) * TILE_ROWS;
    let tokens = select(step_info.tokens, params.tokens, params.tokens != 0u);
    let first_token = group.y * TILE_TOKENS;
    // Workgroup-uniform: the whole workgroup returns or none of it.
    if (tile_row >= params.rows || first_token >= tokens) {
        return;
    }
    let tile_tokens_n = min(TILE_TOKENS, tokens - first_token);
    if (NORMALIZED_INPUT) {
        normalize_tile(lane, first_token, tile_tokens_n);
    }
    let row_groups = params.blocks_per_row * BLOCK_GROUPS;
    let chunks = (row_groups + CHUNK_VEC4S - 1u) / CHUNK_VEC4S;
    // Rows past the end stage the last row (never stored).
    let stage_base = min(tile_row + lane, params.rows - 1u) * params.blocks_per_row;
    let row_slot = lane % 16u;
    let token_slot = lane / 16u;
    var acc: array<f32, 4u * TOKENS_PER_INVOCATION>;
    for (var chunk = 0u; chunk < chunks; chunk++) {
        stage_weights(lane, stage_base, chunk, row_groups);
        stage_activations(lane, chunk, row_groups, first_token, tile_tokens_n);
        workgroupBarrier();
        for (var c = 0u; c < CHUNK_VEC4S; c++) {
            var w: array<tile_t, 4>;
            for (var r = 0u; r < 4u; r++) {
                w[r] = w_tile[tile_row_of(row_slot, r) * TILE_STRIDE + c];
            }
            for (var t = 0u; t < TOKENS_PER_INVOCATION; t++) {
                let xv = x_tile_memory[(token_slot * TOKENS_PER_INVOCATION + t) * TILE_STRIDE + c];
                for (var r = 0u; r < 4u; r++) {
                    acc[r * TOKENS_PER_INVOCATION + t] += f32(dot(w[r], xv));
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let row = tile_row + tile_row_of(row_slot, r);
        if (row >= params.rows) {
            continue;
        }
        for (var t = 0u; t < TOKENS_PER_INVOCATION; t++) {
            let token = token_slot * TOKENS_PER_INVOCATION + t;
            if (token >= tile_tokens_n) {
                break;
            }
            let product = acc[r * TOKENS_PER_INVOCATION + t];
            if (!PAIRED) {
                store(row, first_token + token, product);
            } else if (r % 2u == 1u) {
                store_pair(row, first_token + token, acc[(r - 1u) * TOKENS_PER_INVOCATION + t], product);
            }
        }
    }
}
