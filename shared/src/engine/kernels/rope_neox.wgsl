// Rotary position embedding, NeoX layout (as Qwen2): within each head of `head_dim`, element i
// pairs with element i + head_dim/2 and both rotate by position * base^(-2i/head_dim).
// In place, one invocation per (token, head, i); token t of the step is at position
// step.position + t.

struct Params {
    heads: u32,
    head_dim: u32,
    freq_base: f32,
}

struct Step {
    position: u32,
    tokens: u32,
}

@group(0) @binding(0) var<storage, read_write> vectors: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<uniform> step_info: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let half_dim = params.head_dim / 2u;
    let pairs_per_token = params.heads * half_dim;
    if (id.x >= pairs_per_token * step_info.tokens) {
        return;
    }
    let token = id.x / pairs_per_token;
    let head = (id.x % pairs_per_token) / half_dim;
    let i = id.x % half_dim;
    let inv_freq = 1.0 / pow(params.freq_base, f32(2u * i) / f32(params.head_dim));
    let angle = f32(step_info.position + token) * inv_freq;
    let c = cos(angle);
    let s = sin(angle);
    let first = token * params.heads * params.head_dim + head * params.head_dim + i;
    let x0 = vectors[first];
    let x1 = vectors[first + half_dim];
    vectors[first] = x0 * c - x1 * s;
    vectors[first + half_dim] = x0 * s + x1 * c;
}
