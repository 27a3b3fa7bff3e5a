// Quantized matrix product for a batch of tokens, GPU layout:
// y[t][r] (+)= W[r] · x[t] (+ bias[r]) with LANES invocations sharing each output row.
//
// A workgroup of 64 holds 64 / LANES rows. Lane l of a row sums the row's runs (K-quant
// sub-blocks, or whole blocks for the 32-weight types) l, l + LANES, l + 2 LANES, ... for a
// tile of up to TOKEN_TILE tokens; the partial sums meet in workgroup memory and the row's
// first lane adds them up and writes. Neighbouring lanes read neighbouring runs (coalesced
// loads), and a row of only a few blocks (Q4_K, 1,536 columns: 6 blocks, 48 runs) still keeps
// LANES threads busy: what GPUs, with thousands of threads and no SIMD over rows, want.
// Follows matmul_bindings.wgsl with ROWS = 1; the host appends `run_dot`, one run of one row
// for every token of the tile.

const ROW_SLOTS: u32 = 64u / LANES;

// Partial sums, token-major: partial[t * 64 + invocation].
var<workgroup> partial: array<f32, 64u * TOKEN_TILE>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) invocation: u32,
) {
    let lane = invocation % LANES;
    let row = (group.x + group.z * ROW_GROUPS_PER_Z) * ROW_SLOTS + invocation / LANES;
    let tokens = select(step_info.tokens, params.tokens, params.tokens != 0u);
    let first_token = group.y * TOKEN_TILE;
    let in_range = row < params.rows && first_token < tokens;
    var acc: array<vec4<f32>, TOKEN_TILE>;
    if (in_range) {
        tile_tokens = min(TOKEN_TILE, tokens - first_token);
        x_tile = params.x_offset + first_token * params.x_stride;
        row_base[0] = row * params.blocks_per_row;
        let runs = params.blocks_per_row * SUB_BLOCKS;
        for (var run = lane; run < runs; run += LANES) {
            let block = run / SUB_BLOCKS;
            run_dot(block, run % SUB_BLOCKS, block * (BLOCK_ELEMENTS / 4u), &acc);
        }
    }
    for (var t = 0u; t < TOKEN_TILE; t++) {
        let sum = acc[t];
        partial[t * 64u + invocation] = sum.x + sum.y + sum.z + sum.w;
    }
    workgroupBarrier();
    if (!in_range || lane != 0u) {
        return;
    }
    let out_row = params.row_offset + row;
    for (var t = 0u; t < tile_tokens; t++) {
        let y_index = (first_token + t) * params.y_stride + out_row;
        var total = output_base(out_row, y_index);
        for (var l = 0u; l < LANES; l++) {
            total += partial[t * 64u + invocation + l];
        }
        y[y_index] = total;
    }
}
