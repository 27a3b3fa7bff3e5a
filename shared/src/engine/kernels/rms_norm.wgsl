// RMSNorm of one vector: output[i] = input[i] / sqrt(mean(input²) + eps) * weight[i].
// One workgroup of 256 invocations; weight is f32.

struct Params {
    n: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partial_sums: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lane: u32) {
    var sum = 0.0;
    for (var i = lane; i < params.n; i += 256u) {
        sum += input[i] * input[i];
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
        output[i] = input[i] * scale * weight[i];
    }
}
