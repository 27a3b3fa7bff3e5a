// target[i] += addend[i] for i < n: residual connections and biases.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> target_vector: array<f32>;
@group(0) @binding(1) var<storage, read> addend: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.n) {
        target_vector[id.x] += addend[id.x];
    }
}
