// Q4_K: 256 weights in 144 bytes, 8 sub-blocks of 32 with 6-bit scales and minimums.
//   bytes 0..2     d          f16 super-scale
//   bytes 2..4     dmin       f16 super-minimum
//   bytes 4..16    scales[12] 8 scales + 8 minimums, 6 bits each (packing: k_quant_scale_min.wgsl)
//   bytes 16..144  qs[128]    4-bit quants; 32-byte group g holds sub-block 2g (low nibbles)
//                             and 2g+1 (high nibbles)
// w = d * scale[s] * q - dmin * min[s]
const BLOCK_ELEMENTS: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

fn block_dot(offset: u32, x4: u32) {
    let d = f16_at(offset);
    let dmin = f16_at(offset + 2u);
    for (var group = 0u; group < 4u; group++) {
        let low = scale_min(offset + 4u, 2u * group);
        let high = scale_min(offset + 4u, 2u * group + 1u);
        for (var j = 0u; j < 8u; j++) {
            let q = bytes4(word_at(offset + 16u + 32u * group + 4u * j));
            let xs = x4 + 16u * group + j;
            accumulate(d * low.x * vec4<f32>(q & vec4<u32>(0xFu)) - dmin * low.y, xs);
            accumulate(d * high.x * vec4<f32>(q >> vec4<u32>(4u)) - dmin * high.y, xs + 8u);
        }
    }
}
