// Top-K candidates, pass 2 of 2: one invocation merges the SLICES sorted lists of pass 1
// into the overall K best (logit, token) pairs, best first, ties to the lower token id.
// Output: top[rank] = (token, bitcast<u32>(logit)); the host reads back only these K pairs.
// The host prepends `const K: u32 = …;`.

const SLICES: u32 = 256u;

@group(0) @binding(0) var<storage, read> candidates: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read_write> top: array<vec2<u32>>;

var<private> best_logit: array<f32, K>;
var<private> best_token: array<u32, K>;

fn beats(logit: f32, token: u32, rank: u32) -> bool {
    return logit > best_logit[rank] || (logit == best_logit[rank] && token < best_token[rank]);
}

@compute @workgroup_size(1)
fn main() {
    for (var rank = 0u; rank < K; rank++) {
        best_logit[rank] = -3.4e38;
        best_token[rank] = 0xFFFFFFFFu;
    }
    for (var slice = 0u; slice < SLICES; slice++) {
        for (var i = 0u; i < K; i++) {
            let entry = candidates[slice * K + i];
            let logit = bitcast<f32>(entry.y);
            // Each slice's list is sorted: once one entry loses, the rest lose too.
            if (entry.x == 0xFFFFFFFFu || !beats(logit, entry.x, K - 1u)) {
                break;
            }
            var rank = K - 1u;
            while (rank > 0u && beats(logit, entry.x, rank - 1u)) {
                best_logit[rank] = best_logit[rank - 1u];
                best_token[rank] = best_token[rank - 1u];
                rank--;
            }
            best_logit[rank] = logit;
            best_token[rank] = entry.x;
        }
    }
    for (var rank = 0u; rank < K; rank++) {
        top[rank] = vec2<u32>(best_token[rank], bitcast<u32>(best_logit[rank]));
    }
}
