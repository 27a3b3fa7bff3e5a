// Quantized matrix product for a batch of tokens, GPU layout with subgroup sums:
// y[t][r] (+)= W[r] · x[t] (+ bias[r]) with LANES invocations sharing each group of ROWS rows
// (one row, or one gate/up pair), as in matmul_lanes.wgsl, but a group's lanes are LANES
// neighbouring invocations of one subgroup (LANES divides the adapter's smallest subgroup),
// so their partial sums meet by subgroupShuffleXor in registers: no workgroup memory for the
// sums and no barrier.
//
// Row groups follow subgroup positions (subgroup_id × subgroup_size + subgroup_invocation_id,
// 0 to 63 over the workgroup's full subgroups), not local_invocation_index, so the kernel does
// not rely on how a driver packs invocations into subgroups. Every invocation reaches the
// shuffles (none returns before them), as subgroup operations require.
// Follows matmul_bindings.wgsl; the host appends `run_dot`. Native adapters only: naga
// takes the subgroup built-ins once the device has wgpu's SUBGROUP feature.

const ROW_SLOTS: u32 = 64u / LANES;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) invocation: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(subgroup_size) subgroup_size: u32,
    @builtin(subgroup_invocation_id) subgroup_lane: u32,
) {
    let lane = subgroup_lane % LANES;
    let slot = (subgroup * subgroup_size + subgroup_lane) / LANES;
    let first_row = ((group.x + group.z * ROW_GROUPS_PER_Z) * ROW_SLOTS + slot) * ROWS;
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
    // Butterfly over the group's lanes: afterwards every lane holds the group's totals.
    var totals: array<f32, ROWS * TOKEN_TILE>;
    for (var i = 0u; i < ROWS * TOKEN_TILE; i++) {
        var total = hsum(acc[i]);
        for (var mask = 1u; mask < LANES; mask <<= 1u) {
            total += subgroupShuffleXor(total, mask);
        }
        totals[i] = total;
    }
    if (!in_range || lane != 0u) {
        return;
    }
    for (var r = 0u; r < ROWS; r++) {
        let row = first_row + r;
        if (row >= params.rows) {
            break;
        }
        for (var t = 0u; t < tile_tokens; t++) {
            let product = totals[r * TOKEN_TILE + t];
            if (!PAIRED) {
                store(row, first_token + t, product);
            } else if (r % 2u == 1u) {
                store_pair(row, first_token + t, totals[(r - 1u) * TOKEN_TILE + t], product);
            }
        }
    }
}
