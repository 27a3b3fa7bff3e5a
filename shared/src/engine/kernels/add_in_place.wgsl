// target[i] += addend[i] over `n` floats per token for every token of the step: the residual
// connections.

struct Params {
    n: u32,  // floats per token
}

struct Step {
    position: u32,
    tokens: u32,
}

@group(0) @binding(0) var<storage, read_write> target_vector: array<f32>;
@group(0) @binding(1) var<storage, read> addend: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step_info: Step;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.n * step_info.tokens) {
        target_vector[id.x] += addend[id.x];
    }
}
