// Causal grouped-query attention of the step's query tokens over the KV cache (which already
// holds the step's own keys and values). One workgroup per (query head, token): token t, at
// position step.position + t, scores q·k_s / sqrt(head_dim) for s ≤ its position into a
// scratch row, then softmax, then the probability-weighted sum of the values.
// Layouts: query / output [t][head][d]; k_cache / v_cache [s][kv_head][d];
// scores [t][head][max_positions]. Vectors are read four floats at a time; the host prepends
// `const HEAD_DIM4: u32 = head_dim / 4;` (at most WORKGROUP) so each lane keeps its query in
// registers while it scores its positions, and `const WORKGROUP: u32` (a power of two, at
// least 64): 64 on CPU drivers, 256 on GPUs, where a decode step has only one workgroup per
// head and each needs many threads. The weighted sum of the values is split over the lanes
// by position too (SLICES lanes per value component, each summing every SLICES-th position)
// so no lane walks the whole context alone.

struct Params {
    heads: u32,
    kv_heads: u32,
    max_positions: u32,  // scratch row length
    scale: f32,
}

struct Step {
    position: u32,
    tokens: u32,
}

@group(0) @binding(0) var<storage, read> query: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<uniform> step_info: Step;

const SLICES: u32 = WORKGROUP / HEAD_DIM4;

var<workgroup> reduction: array<f32, WORKGROUP>;
var<workgroup> partial_values: array<vec4<f32>, WORKGROUP>;

fn reduce_max(lane: u32, value: f32) -> f32 {
    reduction[lane] = value;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            reduction[lane] = max(reduction[lane], reduction[lane + stride]);
        }
        workgroupBarrier();
    }
    let result = reduction[0];
    workgroupBarrier();
    return result;
}

fn reduce_sum(lane: u32, value: f32) -> f32 {
    reduction[lane] = value;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            reduction[lane] += reduction[lane + stride];
        }
        workgroupBarrier();
    }
    let result = reduction[0];
    workgroupBarrier();
    return result;
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let head = group.x;
    let token = group.y;
    let kv_len = step_info.position + token + 1u;
    let kv_head = head / (params.heads / params.kv_heads);
    let kv_stride = params.kv_heads * HEAD_DIM4;
    let q_base = (token * params.heads + head) * HEAD_DIM4;
    let score_base = (token * params.heads + head) * params.max_positions;

    var q: array<vec4<f32>, HEAD_DIM4>;
    for (var d = 0u; d < HEAD_DIM4; d++) {
        q[d] = query[q_base + d];
    }
    var local_max = -3.4e38;
    for (var s = lane; s < kv_len; s += WORKGROUP) {
        let k_base = s * kv_stride + kv_head * HEAD_DIM4;
        var dot = vec4<f32>(0.0);
        for (var d = 0u; d < HEAD_DIM4; d++) {
            dot += q[d] * k_cache[k_base + d];
        }
        let score = (dot.x + dot.y + dot.z + dot.w) * params.scale;
        scores[score_base + s] = score;
        local_max = max(local_max, score);
    }
    let row_max = reduce_max(lane, local_max);

    var local_sum = 0.0;
    for (var s = lane; s < kv_len; s += WORKGROUP) {
        let p = exp(scores[score_base + s] - row_max);
        scores[score_base + s] = p;
        local_sum += p;
    }
    let total = reduce_sum(lane, local_sum);
    storageBarrier();
    workgroupBarrier();

    let d = lane % HEAD_DIM4;
    let slice = lane / HEAD_DIM4;
    var acc = vec4<f32>(0.0);
    if (slice < SLICES) {
        for (var s = slice; s < kv_len; s += SLICES) {
            acc += scores[score_base + s] * v_cache[s * kv_stride + kv_head * HEAD_DIM4 + d];
        }
    }
    partial_values[lane] = acc;
    workgroupBarrier();
    if (lane < HEAD_DIM4) {
        var sum = vec4<f32>(0.0);
        for (var i = 0u; i < SLICES; i++) {
            sum += partial_values[i * HEAD_DIM4 + lane];
        }
        output[q_base + lane] = sum / total;
    }
}
