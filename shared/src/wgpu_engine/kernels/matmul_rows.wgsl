// Quantized matrix product for a batch of tokens, CPU-driver layout:
// y[t][r] (+)= W[r] · x[t] (+ bias[r]).
//
// One invocation computes ROWS consecutive output rows for a tile of up to TOKEN_TILE tokens:
// each weight is dequantized once per tile and each x vector loaded once for ROWS rows.
// Decode steps use TOKEN_TILE = 1 (a matrix-vector product), batched prefill a larger tile.
// Rows per invocation rather than a workgroup reduction per row needs no barriers, which is
// what CPU Vulkan/WebGPU drivers (lavapipe, SwiftShader) run fastest. Follows
// matmul_bindings.wgsl; the host appends `block_dot`, which unrolls every group of a block
// for every row and token of the tile (CPU drivers only keep values in registers when
// indices are constants).

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let first_row = ((group.x + group.z * ROW_GROUPS_PER_Z) * 64u + lane) * ROWS;
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
        for (var t = 0u; t < tile_tokens; t++) {
            let product = hsum(acc[r * TOKEN_TILE + t]);
            if (!PAIRED) {
                store(row, first_token + t, product);
            } else if (r % 2u == 1u) {
                store_pair(row, first_token + t, hsum(acc[(r - 1u) * TOKEN_TILE + t]), product);
            }
        }
    }
}
