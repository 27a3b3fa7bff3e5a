// Causal grouped-query attention of the step's query tokens over the KV cache (which already
// holds the step's own keys and values). One workgroup per (query head, token): token t, at
// position step.position + t, attends to every position up to its own (`attend`), and the
// exp-weighted sum of the values over their exp sum is its output. Follows
// attention_common.wgsl. Layout: output [t][head][d].

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let head = group.x;
    let token = group.y;
    let kv_len = step_info.position + token + 1u;
    let attended = attend(lane, head, token, 0u, kv_len);
    if (lane < HEAD_DIM4) {
        output[(token * params.heads + head) * HEAD_DIM4 + lane] = attended.values / attended.total;
    }
}
