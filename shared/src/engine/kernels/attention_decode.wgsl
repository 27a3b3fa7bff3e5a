// Attention of one new query token over the KV cache (decode step), grouped-query.
// One workgroup per query head: scores q·k_t / sqrt(head_dim) for t < kv_len go to a scratch
// buffer, then softmax, then the probability-weighted sum of the values.
// Cache layout: k_cache[t * kv_heads * head_dim + kv_head * head_dim + d], same for values.

struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    max_positions: u32,  // scratch row length per head
    scale: f32,
}

struct Step {
    position: u32,
    kv_len: u32,
}

@group(0) @binding(0) var<storage, read> query: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<uniform> step_info: Step;

var<workgroup> reduction: array<f32, 64>;

fn reduce_max(lane: u32, value: f32) -> f32 {
    reduction[lane] = value;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride = stride / 2u) {
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
    for (var stride = 32u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            reduction[lane] += reduction[lane + stride];
        }
        workgroupBarrier();
    }
    let result = reduction[0];
    workgroupBarrier();
    return result;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let head = group.x;
    let kv_head = head / (params.heads / params.kv_heads);
    let kv_stride = params.kv_heads * params.head_dim;
    let q_base = head * params.head_dim;
    let score_base = head * params.max_positions;

    var local_max = -3.4e38;
    for (var t = lane; t < step_info.kv_len; t += 64u) {
        let k_base = t * kv_stride + kv_head * params.head_dim;
        var dot = 0.0;
        for (var d = 0u; d < params.head_dim; d++) {
            dot += query[q_base + d] * k_cache[k_base + d];
        }
        let score = dot * params.scale;
        scores[score_base + t] = score;
        local_max = max(local_max, score);
    }
    let row_max = reduce_max(lane, local_max);

    var local_sum = 0.0;
    for (var t = lane; t < step_info.kv_len; t += 64u) {
        let p = exp(scores[score_base + t] - row_max);
        scores[score_base + t] = p;
        local_sum += p;
    }
    let total = reduce_sum(lane, local_sum);
    storageBarrier();
    workgroupBarrier();

    for (var d = lane; d < params.head_dim; d += 64u) {
        var acc = 0.0;
        for (var t = 0u; t < step_info.kv_len; t++) {
            acc += scores[score_base + t] * v_cache[t * kv_stride + kv_head * params.head_dim + d];
        }
        output[q_base + d] = acc / total;
    }
}
