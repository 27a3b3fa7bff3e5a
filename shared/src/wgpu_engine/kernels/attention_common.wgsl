// What the attention kernels (attention.wgsl, attention_split.wgsl) share: the bindings and
// `attend`, one workgroup's grouped-query attention of one query over a range of cached
// positions — scores q·k_s / sqrt(head_dim) into a scratch row, their maximum, exp(score −
// maximum), its sum, and the exp-weighted sum of the values (unnormalized, so ranges can be
// merged).
// Layouts: query [t][head][d]; k_cache / v_cache [s][kv_head][d]; scores
// [t][head][max_positions]; `output` is each kernel's own. Vectors are read four floats at a
// time; the host prepends `const HEAD_DIM4: u32 = head_dim / 4;` (at most WORKGROUP) so each
// lane keeps its query in registers while it scores its positions, `const WORKGROUP: u32` (a
// power of two, at least 64: 64 on CPU drivers, 256 on GPUs, which want many threads),
// `const SPLIT_POSITIONS: u32` (positions per slice of attention_split.wgsl) and `kv_t`, the
// caches' element type (f32, or f16 where the adapter has shader-f16); scores and sums are
// f32. The weighted sum of the values is split over the lanes by position too (SLICES lanes
// per value component, each summing every SLICES-th position) so no lane walks the range
// alone.

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
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<kv_t>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<kv_t>>;
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

// One query against positions start .. end: the scores' maximum, the sum of exp(score −
// maximum), and for lanes below HEAD_DIM4 their four components of the exp-weighted sum of the
// values. An empty range gives a maximum of -3.4e38 and zero sums. Every lane calls it.
struct Attended {
    max_score: f32,
    total: f32,
    values: vec4<f32>,
}

fn attend(lane: u32, head: u32, token: u32, start: u32, end: u32) -> Attended {
    let kv_head = head / (params.heads / params.kv_heads);
    let kv_stride = params.kv_heads * HEAD_DIM4;
    let q_base = (token * params.heads + head) * HEAD_DIM4;
    let score_base = (token * params.heads + head) * params.max_positions;

    var q: array<vec4<f32>, HEAD_DIM4>;
    for (var d = 0u; d < HEAD_DIM4; d++) {
        q[d] = query[q_base + d];
    }
    var local_max = -3.4e38;
    for (var s = start + lane; s < end; s += WORKGROUP) {
        let k_base = s * kv_stride + kv_head * HEAD_DIM4;
        var dot = vec4<f32>(0.0);
        for (var d = 0u; d < HEAD_DIM4; d++) {
            dot += q[d] * vec4<f32>(k_cache[k_base + d]);
        }
        let score = (dot.x + dot.y + dot.z + dot.w) * params.scale;
        scores[score_base + s] = score;
        local_max = max(local_max, score);
    }
    let row_max = reduce_max(lane, local_max);

    var local_sum = 0.0;
    for (var s = start + lane; s < end; s += WORKGROUP) {
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
        for (var s = start + slice; s < end; s += SLICES) {
            acc += scores[score_base + s] * vec4<f32>(v_cache[s * kv_stride + kv_head * HEAD_DIM4 + d]);
        }
    }
    partial_values[lane] = acc;
    workgroupBarrier();
    var sum = vec4<f32>(0.0);
    if (lane < HEAD_DIM4) {
        for (var i = 0u; i < SLICES; i++) {
            sum += partial_values[i * HEAD_DIM4 + lane];
        }
    }
    return Attended(row_max, total, sum);
}
