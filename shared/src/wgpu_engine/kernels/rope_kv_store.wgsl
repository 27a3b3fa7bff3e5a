// Positions the step's queries and keys and appends keys and values to the layer's cache, in
// one dispatch: rotary position embedding in NeoX layout (as Qwen2) — within each head of
// `head_dim`, element i pairs with element i + head_dim/2 and both rotate by
// position * base^(-2i/head_dim) — applied to the queries on their way to the attention's
// query buffer and to the keys on their way into the cache, while the values are copied beside
// them.
// One invocation per (token, head, i) over the query heads then the key/value heads; token t of
// the step is at position step.position + t. Layouts: qkv [t][q | k | v], the Q, K and V
// projections side by side (q: heads × head_dim, k and v: kv_heads × head_dim);
// q [t][heads][head_dim]; caches [position][kv_heads][head_dim]. The step's tokens have
// consecutive positions, so they land contiguously at cache[position * kv_heads * head_dim].
// The host prepends `kv_t`, the caches' element type: f32, or f16 where the adapter has
// shader-f16 (with `enable f16;`).

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

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<kv_t>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<kv_t>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(5) var<uniform> step_info: Step;

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
    let q_floats = params.heads * params.head_dim;
    let kv_floats = params.kv_heads * params.head_dim;
    let row = token * (q_floats + 2u * kv_floats);
    if (head < params.heads) {
        let within = head * params.head_dim + i;
        let x0 = qkv[row + within];
        let x1 = qkv[row + within + half_dim];
        let first = token * q_floats + within;
        q[first] = x0 * c - x1 * s;
        q[first + half_dim] = x0 * s + x1 * c;
        return;
    }
    let within = (head - params.heads) * params.head_dim + i;
    let k_first = row + q_floats + within;
    let v_first = k_first + kv_floats;
    let cached = (step_info.position + token) * kv_floats + within;
    let x0 = qkv[k_first];
    let x1 = qkv[k_first + half_dim];
    k_cache[cached] = kv_t(x0 * c - x1 * s);
    k_cache[cached + half_dim] = kv_t(x0 * s + x1 * c);
    v_cache[cached] = kv_t(qkv[v_first]);
    v_cache[cached + half_dim] = kv_t(qkv[v_first + half_dim]);
}
