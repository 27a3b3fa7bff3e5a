// Top-K candidates, pass 1 of 2: the vocabulary is cut into SLICES slices, one invocation
// each; every invocation keeps its slice's K best (logit, token) pairs sorted, best first,
// in private memory (insertion; ties go to the lower token id) and writes them out.
// Unused entries are (token 0xFFFFFFFF, -inf). Output: candidates[slice * K + rank] =
// (token, bitcast<u32>(logit)). The host prepends `const K: u32 = …;`.

const SLICES: u32 = 256u;

struct Params {
    vocab: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> candidates: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

var<private> best_logit: array<f32, K>;
var<private> best_token: array<u32, K>;

fn beats(logit: f32, token: u32, rank: u32) -> bool {
    return logit > best_logit[rank] || (logit == best_logit[rank] && token < best_token[rank]);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let slice = id.x;
    if (slice >= SLICES) {
        return;
    }
    for (var rank = 0u; rank < K; rank++) {
        best_logit[rank] = -3.4e38;
        best_token[rank] = 0xFFFFFFFFu;
    }
    let slice_len = (params.vocab + SLICES - 1u) / SLICES;
    let start = slice * slice_len;
    let end = min(start + slice_len, params.vocab);
    for (var token = start; token < end; token++) {
        let logit = logits[token];
        if (!beats(logit, token, K - 1u)) {
            continue;
        }
        var rank = K - 1u;
        while (rank > 0u && beats(logit, token, rank - 1u)) {
            best_logit[rank] = best_logit[rank - 1u];
            best_token[rank] = best_token[rank - 1u];
            rank--;
        }
        best_logit[rank] = logit;
        best_token[rank] = token;
    }
    for (var rank = 0u; rank < K; rank++) {
        candidates[slice * K + rank] = vec2<u32>(best_token[rank], bitcast<u32>(best_logit[rank]));
    }
}
