// RMSNorm: output[t][i] = input[t][i] / sqrt(mean(input[t]²) + eps) * weight[i].
// One workgroup of 256 invocations per token of the step; with `last_only` a single workgroup
// normalizes the step's last token into output row 0 (the final norm before the output head,
// which only the last token needs). weight is f32.

struct Params {
    n: u32,          // floats per token
    eps: f32,
    last_only: u32,  // 1: only the last token, written to row 0
}

struct Step {
    position: u32,
    tokens: u32,
}

@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> step_info: Step;

var<workgroup> partial_sums: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    var token = group.x;
    var out_row = group.x;
    if (params.last_only != 0u) {
        token = step_info.tokens - 1u;
        out_row = 0u;
    }
    let in_base = token * params.n;
    let out_base = out_row * params.n;
    var sum = 0.0;
    for (var i = lane; i < params.n; i += 256u) {
        let v = input[in_base + i];
        sum += v * v;
    }
    partial_sums[lane] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            partial_sums[lane] += partial_sums[lane + stride];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial_sums[0] / f32(params.n) + params.eps);
    for (var i = lane; i < params.n; i += 256u) {
        output[out_base + i] = input[in_base + i] * scale * weight[i];
    }
}
