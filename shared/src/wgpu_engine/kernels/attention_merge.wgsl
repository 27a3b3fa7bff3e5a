// Merges attention_split.wgsl's slices of a decode step into each head's output: with M the
// largest slice maximum and w_i = exp(max_i − M), output = Σ w_i · values_i / Σ w_i · sum_i.
// One workgroup of 64 per head. Layouts: partials as attention_split.wgsl writes them;
// output [head][d]. The host prepends HEAD_DIM4 and SPLIT_POSITIONS.

struct Params {
    heads: u32,
    kv_heads: u32,
    max_positions: u32,
    scale: f32,
}

struct Step {
    position: u32,
    tokens: u32,
}

@group(0) @binding(0) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step_info: Step;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let head = group.x;
    let slots = (params.max_positions + SPLIT_POSITIONS - 1u) / SPLIT_POSITIONS;
    let slices = (step_info.position + SPLIT_POSITIONS) / SPLIT_POSITIONS;
    let stride = 1u + HEAD_DIM4;
    let base = head * slots * stride;
    var largest = -3.4e38;
    for (var i = 0u; i < slices; i++) {
        largest = max(largest, partials[base + i * stride].x);
    }
    var total = 0.0;
    for (var i = 0u; i < slices; i++) {
        let summary = partials[base + i * stride];
        total += exp(summary.x - largest) * summary.y;
    }
    for (var d = lane; d < HEAD_DIM4; d += 64u) {
        var acc = vec4<f32>(0.0);
        for (var i = 0u; i < slices; i++) {
            acc += exp(partials[base + i * stride].x - largest) * partials[base + i * stride + 1u + d];
        }
        output[head * HEAD_DIM4 + d] = acc / total;
    }
}
