// Positions the step's queries and keys and appends keys and values to the layer's cache, in
// one dispatch: rotary position embedding in NeoX layout (as Qwen2) — within each head of
// `head_dim`, element i pairs with element i + head_dim/2 and both rotate by
// position * base^(-2i/head_dim) — applied to the queries in place and to the keys on their
// way into the cache, while the values are copied beside them.
// One invocation per (token, head, i) over the query heads then the key/value heads; token t of
// the step is at position step.position + t. Layouts: q [t][heads][head_dim];
// k, v [t][kv_heads][head_dim]; caches [position][kv_heads][head_dim]. The step's tokens have
// consecutive positions, so they land contiguously at cache[position * kv_heads * head_dim].

struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    freq_base: f32,
}

struct Step {
    position: u32,
    tokens: u32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<uniform> step_info: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let half_dim = params.head_dim / 2u;
    let pairs_per_token = (params.heads + params.kv_heads) * half_dim;
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
    if (head < params.heads) {
        let first = (token * params.heads + head) * params.head_dim + i;
        let x0 = q[first];
        let x1 = q[first + half_dim];
        q[first] = x0 * c - x1 * s;
        q[first + half_dim] = x0 * s + x1 * c;
        return;
    }
    let kv_floats = params.kv_heads * params.head_dim;
    let first = token * kv_floats + (head - params.heads) * params.head_dim + i;
    let cached = step_info.position * kv_floats + first;
    let x0 = k[first];
    let x1 = k[first + half_dim];
    k_cache[cached] = x0 * c - x1 * s;
    k_cache[cached + half_dim] = x0 * s + x1 * c;
    v_cache[cached] = v[first];
    v_cache[cached + half_dim] = v[first + half_dim];
}
