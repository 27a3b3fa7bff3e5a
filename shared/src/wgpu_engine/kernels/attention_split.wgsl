// A decode step's attention over a long context, split by position (attention_merge.wgsl
// merges): one workgroup per (query head, slice of SPLIT_POSITIONS positions), so a context of
// n positions keeps heads × n / SPLIT_POSITIONS workgroups busy instead of one per head. Each
// attends to its slice (`attend`) and writes the slice's maximum score, exp sum and
// unnormalized value sum. The step has one token, at position step.position. Follows
// attention_common.wgsl. Layout: output (the partials) [head][slot][1 + HEAD_DIM4] vec4s: the
// first (maximum, exp sum, 0, 0), then the value sum; slots = max_positions / SPLIT_POSITIONS,
// rounded up. Slices past the context write an empty range.

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let head = group.x;
    let slice = group.y;
    let kv_len = step_info.position + 1u;
    let start = slice * SPLIT_POSITIONS;
    let end = min(start + SPLIT_POSITIONS, kv_len);
    let attended = attend(lane, head, 0u, start, end);
    let slots = (params.max_positions + SPLIT_POSITIONS - 1u) / SPLIT_POSITIONS;
    let base = (head * slots + slice) * (1u + HEAD_DIM4);
    if (lane == 0u) {
        output[base] = vec4<f32>(attended.max_score, attended.total, 0.0, 0.0);
    }
    if (lane < HEAD_DIM4) {
        output[base + 1u + lane] = attended.values;
    }
}
