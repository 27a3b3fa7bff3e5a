// SwiGLU activation for every token of the step: gate[i] = silu(gate[i]) * up[i],
// silu(g) = g / (1 + exp(-g)).

struct Params {
    n: u32,  // floats per token
}

struct Step {
    position: u32,
    tokens: u32,
}

@group(0) @binding(0) var<storage, read_write> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step_info: Step;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.n * step_info.tokens) {
        let g = gate[id.x];
        gate[id.x] = g / (1.0 + exp(-g)) * up[id.x];
    }
}
