// Q4_K: 256 weights in 144 bytes, 8 sub-blocks of 32 with 6-bit scales and minimums.
//   bytes 0..2     d          f16 super-scale
//   bytes 2..4     dmin       f16 super-minimum
//   bytes 4..16    scales[12] 8 scales + 8 minimums, 6 bits each (packing: k_quant_scale_min.wgsl)
//   bytes 16..144  qs[128]    4-bit quants; 32-byte group g holds sub-block 2g (low nibbles)
//                             and 2g+1 (high nibbles)
// w = d * scale[s] * q - dmin * min[s]
const BLOCK_ELEMENTS: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    let d = f16_at(offset);
    let dmin = f16_at(offset + 2u);
    let scales = offset + 4u;
    var sum = 0.0;
    for (var group = 0u; group < 4u; group++) {
        let low = scale_min(scales, 2u * group);
        let high = scale_min(scales, 2u * group + 1u);
        let qs = offset + 16u + group * 32u;
        let xs = x_start + group * 64u;
        var low_dot = 0.0;
        var low_x = 0.0;
        var high_dot = 0.0;
        var high_x = 0.0;
        for (var l = 0u; l < 32u; l++) {
            let q = byte_at(qs + l);
            let x0 = x[xs + l];
            let x1 = x[xs + l + 32u];
            low_dot += f32(q & 0xFu) * x0;
            low_x += x0;
            high_dot += f32(q >> 4u) * x1;
            high_x += x1;
        }
        sum += d * (low.x * low_dot + high.x * high_dot) - dmin * (low.y * low_x + high.y * high_x);
    }
    return sum;
}
