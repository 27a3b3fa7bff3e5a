// llama.cpp-style repetition penalty, in place on the logits: each listed token's logit is
// divided by `penalty` when positive and multiplied by it otherwise. The host lists each
// token once (the recent window, deduplicated).

struct Params {
    count: u32,
    penalty: f32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> token_ids: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.count) {
        return;
    }
    let token = token_ids[id.x];
    let logit = logits[token];
    logits[token] = select(logit * params.penalty, logit / params.penalty, logit >= 0.0);
}
