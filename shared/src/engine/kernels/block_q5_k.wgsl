// Q5_K: 256 weights in 176 bytes, like Q4_K plus a fifth bit per weight.
//   bytes 0..2     d          f16 super-scale
//   bytes 2..4     dmin       f16 super-minimum
//   bytes 4..16    scales[12] 6-bit scales and minimums, packed as in Q4_K
//   bytes 16..48   qh[32]     bit 2g (low nibbles) / 2g+1 (high nibbles) of byte l is the
//                             5th bit of weight l of sub-block 2g / 2g+1
//   bytes 48..176  qs[128]    4 low bits, grouped as in Q4_K
// w = d * scale[s] * q - dmin * min[s]
const BLOCK_ELEMENTS: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    let d = f16_at(offset);
    let dmin = f16_at(offset + 2u);
    let scales = offset + 4u;
    let qh = offset + 16u;
    var sum = 0.0;
    for (var group = 0u; group < 4u; group++) {
        let low = scale_min(scales, 2u * group);
        let high = scale_min(scales, 2u * group + 1u);
        let qs = offset + 48u + group * 32u;
        let xs = x_start + group * 64u;
        var low_dot = 0.0;
        var low_x = 0.0;
        var high_dot = 0.0;
        var high_x = 0.0;
        for (var l = 0u; l < 32u; l++) {
            let q = byte_at(qs + l);
            let h = byte_at(qh + l);
            let q0 = (q & 0xFu) | (((h >> (2u * group)) & 1u) << 4u);
            let q1 = (q >> 4u) | (((h >> (2u * group + 1u)) & 1u) << 4u);
            let x0 = x[xs + l];
            let x1 = x[xs + l + 32u];
            low_dot += f32(q0) * x0;
            low_x += x0;
            high_dot += f32(q1) * x1;
            high_x += x1;
        }
        sum += d * (low.x * low_dot + high.x * high_dot) - dmin * (low.y * low_x + high.y * high_x);
    }
    return sum;
}
