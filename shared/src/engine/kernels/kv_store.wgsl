// Appends the step's keys or values to a layer's cache. Tokens of a step have consecutive
// positions, so the step's `tokens * n` floats land contiguously at cache[position * n].

struct Params {
    n: u32,  // floats per token (kv_heads * head_dim)
}

struct Step {
    position: u32,
    tokens: u32,
}

@group(0) @binding(0) var<storage, read> source: array<f32>;
@group(0) @binding(1) var<storage, read_write> cache: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step_info: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.n * step_info.tokens) {
        cache[step_info.position * params.n + id.x] = source[id.x];
    }
}
