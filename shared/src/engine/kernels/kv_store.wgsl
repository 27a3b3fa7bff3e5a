// Appends this step's keys or values to a layer's cache: cache[position * n + i] = source[i].

struct Params {
    n: u32,
}

struct Step {
    position: u32,
    kv_len: u32,
}

@group(0) @binding(0) var<storage, read> source: array<f32>;
@group(0) @binding(1) var<storage, read_write> cache: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step_info: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.n) {
        cache[step_info.position * params.n + id.x] = source[id.x];
    }
}
