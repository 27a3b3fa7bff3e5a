// The 6-bit scales and minimums of Q4_K and Q5_K: 12 bytes hold 8 scales and 8 minimums.
// Sub-blocks 0..4 use the low 6 bits of bytes j (scale) and j+4 (minimum); sub-blocks 4..8
// combine a nibble of byte j+4 with the top 2 bits of bytes j-4 (scale) and j (minimum).
// Scale (x) and minimum (y) of sub-block j, as ggml's get_scale_min_k4.
fn scale_min(scales: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(scales + j) & 63u), f32(byte_at(scales + j + 4u) & 63u));
    }
    let sc = (byte_at(scales + j + 4u) & 0xFu) | ((byte_at(scales + j - 4u) >> 6u) << 4u);
    let m = (byte_at(scales + j + 4u) >> 4u) | ((byte_at(scales + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

