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

fn block_dot(offset: u32, x4: u32) {
    let d = f16_at(offset);
    let dmin = f16_at(offset + 2u);
    for (var group = 0u; group < 4u; group++) {
        let low = scale_min(offset + 4u, 2u * group);
        let high = scale_min(offset + 4u, 2u * group + 1u);
        for (var j = 0u; j < 8u; j++) {
            let q = bytes4(word_at(offset + 48u + 32u * group + 4u * j));
            let h = bytes4(word_at(offset + 16u + 4u * j));
            let q0 = (q & vec4<u32>(0xFu)) | (((h >> vec4<u32>(2u * group)) & vec4<u32>(1u)) << vec4<u32>(4u));
            let q1 = (q >> vec4<u32>(4u)) | (((h >> vec4<u32>(2u * group + 1u)) & vec4<u32>(1u)) << vec4<u32>(4u));
            let xs = x4 + 16u * group + j;
            accumulate(d * low.x * vec4<f32>(q0) - dmin * low.y, xs);
            accumulate(d * high.x * vec4<f32>(q1) - dmin * high.y, xs + 8u);
        }
    }
}
