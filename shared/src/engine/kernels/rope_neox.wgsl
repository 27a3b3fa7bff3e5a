// Rotary position embedding, NeoX layout (as Qwen2): within each head of `head_dim`, element i
// pairs with element i + head_dim/2 and both rotate by position * base^(-2i/head_dim).
// In place, one invocation per (head, i) pair. The position comes from the step uniform.

struct Params {
    heads: u32,
    head_dim: u32,
    freq_base: f32,
}

struct Step {
    position: u32,
    kv_len: u32,
}

@group(0) @binding(0) var<storage, read_write> vectors: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<uniform> step_info: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let half_dim = params.head_dim / 2u;
    if (id.x >= params.heads * half_dim) {
        return;
    }
    let head = id.x / half_dim;
    let i = id.x % half_dim;
    let inv_freq = 1.0 / pow(params.freq_base, f32(2u * i) / f32(params.head_dim));
    let angle = f32(step_info.position) * inv_freq;
    let c = cos(angle);
    let s = sin(angle);
    let first = head * params.head_dim + i;
    let x0 = vectors[first];
    let x1 = vectors[first + half_dim];
    vectors[first] = x0 * c - x1 * s;
    vectors[first + half_dim] = x0 * s + x1 * c;
}
