// Quantized matrix product for a batch of tokens, GPU layout:
// y[t][r] (+)= W[r] · x[t] (+ bias[r]) with LANES invocations sharing each group of ROWS rows
// (one row, or one gate/up pair).
//
// A workgroup of 64 holds 64 / LANES row groups. Lane l of a group sums its rows' runs
// (K-quant sub-blocks, or whole blocks for the 32-weight types) l, l + LANES, l + 2 LANES, ...
// for a tile of up to TOKEN_TILE tokens; the partial sums meet in workgroup memory and the
// group's first lane adds them up and writes. Neighbouring lanes read neighbouring runs (coalesced
// loads), and a row of only a few blocks (Q4_K, 1,536 columns: 6 blocks, 48 runs) still keeps
// LANES threads busy: what GPUs, with thousands of threads and no SIMD over rows, want.
// Follows matmul_bindings.wgsl; the host appends `run_dot`, one run of the group's rows for
// every token of the tile.

const ROW_SLOTS: u32 = 64u / LANES;

// Partial sums: partial[(r * TOKEN_TILE + t) * 64 + invocation] for row r of the group.
var<workgroup> partial: array<f32, 64u * ROWS * TOKEN_TILE>;

// Row r's total for token t of the tile, over the group's lanes (`first`: its lane 0).
fn group_total(r: u32, t: u32, first: u32) -> f32 {
    var total = 0.0;
    for (var l = 0u; l < LANES; l++) {
        total += partial[(r * TOKEN_TILE + t) * 64u + first + l];
    }
    return total;
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) invocation: u32,
) {
    let lane = invocation % LANES;
    let first_row = ((group.x + group.z * ROW_GROUPS_PER_Z) * ROW_SLOTS + invocation / LANES) * ROWS;
    let tokens = select(step_info.tokens, params.tokens, params.tokens != 0u);
    let first_token = group.y * TOKEN_TILE;
    let in_range = first_row < params.rows && first_token < tokens;
    if (NORMALIZED_INPUT) {
        // Workgroup-uniform: every row group of the workgroup shares its token tile.
        normalize_tile(invocation, first_token, select(0u, min(TOKEN_TILE, tokens - first_token), first_token < tokens));
    }
    var acc: array<vec4<f32>, ROWS * TOKEN_TILE>;
    if (in_range) {
        tile_tokens = min(TOKEN_TILE, tokens - first_token);
        x_tile = params.x_offset + first_token * params.x_stride;
        for (var r = 0u; r < ROWS; r++) {
            row_base[r] = min(first_row + r, params.rows - 1u) * params.blocks_per_row;
        }
        let runs = params.blocks_per_row * SUB_BLOCKS;
        for (var run = lane; run < runs; run += LANES) {
            let block = run / SUB_BLOCKS;
            run_dot(block, run % SUB_BLOCKS, block * (BLOCK_ELEMENTS / 4u), &acc);
        }
    }
    for (var i = 0u; i < ROWS * TOKEN_TILE; i++) {
        partial[i * 64u + invocation] = hsum(acc[i]);
    }
    workgroupBarrier();
    if (!in_range || lane != 0u) {
        return;
    }
    for (var r = 0u; r < ROWS; r++) {
        let row = first_row + r;
        if (row >= params.rows) {
            break;
        }
        for (var t = 0u; t < tile_tokens; t++) {
            let product = group_total(r, t, invocation);
            if (!PAIRED) {
                store(row, first_token + t, product);
            } else if (r % 2u == 1u) {
                store_pair(row, first_token + t, group_total(r - 1u, t, invocation), product);
            }
        }
    }
}
