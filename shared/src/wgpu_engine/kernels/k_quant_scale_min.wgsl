// The 6-bit scales and minimums of Q4_K and Q5_K: 12 bytes hold 8 scales and 8 minimums.
// Sub-blocks 0..4 use the low 6 bits of bytes j (scale) and j+4 (minimum); sub-blocks 4..8
// combine a nibble of byte j+4 with the top 2 bits of bytes j-4 (scale) and j (minimum).
// `packed` is the 12 bytes as three little-endian words.

fn packed_byte(packed: vec3<u32>, i: u32) -> u32 {
    return (packed[i >> 2u] >> ((i & 3u) * 8u)) & 0xFFu;
}

// Scale (x) and minimum (y) of sub-block j, as ggml's get_scale_min_k4.
fn scale_min(packed: vec3<u32>, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(packed_byte(packed, j) & 63u), f32(packed_byte(packed, j + 4u) & 63u));
    }
    let sc = (packed_byte(packed, j + 4u) & 0xFu) | ((packed_byte(packed, j - 4u) >> 6u) << 4u);
    let m = (packed_byte(packed, j + 4u) >> 4u) | ((packed_byte(packed, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// (d * scale, dmin * minimum) of sub-block j from a K-quant head: word 0 = d | dmin (f16
// halves), words 1..4 = the 12 scale bytes.
fn k_quant_scale(i: u32, j: u32) -> vec2<f32> {
    let dm = unpack2x16float(head_word(i, 0u));
    let packed = vec3<u32>(head_word(i, 1u), head_word(i, 2u), head_word(i, 3u));
    return dm * scale_min(packed, j);
}
