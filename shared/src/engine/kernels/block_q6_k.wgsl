// Q6_K: 256 weights in 210 bytes, 16 sub-blocks of 16 with signed 8-bit scales.
//   bytes 0..128    ql[128]    low 4 bits
//   bytes 128..192  qh[64]     high 2 bits, four weights per byte
//   bytes 192..208  scales[16] i8 sub-block scales
//   bytes 208..210  d          f16 super-scale
// For each half h (128 weights; ql += 64h, qh += 32h, scales += 8h) and l in 0..32:
//   w[l]      = d * sc[l/16]     * ((ql[l]    & 15 | (qh[l]      & 3) << 4) - 32)
//   w[l + 32] = d * sc[l/16 + 2] * ((ql[l+32] & 15 | (qh[l] >> 2 & 3) << 4) - 32)
//   w[l + 64] = d * sc[l/16 + 4] * ((ql[l]    >> 4 | (qh[l] >> 4 & 3) << 4) - 32)
//   w[l + 96] = d * sc[l/16 + 6] * ((ql[l+32] >> 4 | (qh[l] >> 6 & 3) << 4) - 32)
// Four consecutive l share a sub-block, so each word of ql / qh gives four weights per row.
const BLOCK_ELEMENTS: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn block_dot(offset: u32, x4: u32) {
    let d = f16_at(offset + 208u);
    let low4 = vec4<u32>(0xFu);
    let two_bits = vec4<u32>(3u);
    for (var half = 0u; half < 2u; half++) {
        let ql = offset + 64u * half;
        let qh = offset + 128u + 32u * half;
        let sc = offset + 192u + 8u * half;
        let xs = x4 + 32u * half;
        for (var j = 0u; j < 8u; j++) {
            let sub = j / 4u;
            let low = bytes4(word_at(ql + 4u * j));
            let low32 = bytes4(word_at(ql + 32u + 4u * j));
            let high = bytes4(word_at(qh + 4u * j));
            let q1 = vec4<i32>((low & low4) | ((high & two_bits) << vec4<u32>(4u))) - 32;
            let q2 = vec4<i32>((low32 & low4) | (((high >> vec4<u32>(2u)) & two_bits) << vec4<u32>(4u))) - 32;
            let q3 = vec4<i32>((low >> vec4<u32>(4u)) | (((high >> vec4<u32>(4u)) & two_bits) << vec4<u32>(4u))) - 32;
            let q4 = vec4<i32>((low32 >> vec4<u32>(4u)) | ((high >> vec4<u32>(6u)) << vec4<u32>(4u))) - 32;
            accumulate(d * f32(i8_at(sc + sub)) * vec4<f32>(q1), xs + j);
            accumulate(d * f32(i8_at(sc + sub + 2u)) * vec4<f32>(q2), xs + 8u + j);
            accumulate(d * f32(i8_at(sc + sub + 4u)) * vec4<f32>(q3), xs + 16u + j);
            accumulate(d * f32(i8_at(sc + sub + 6u)) * vec4<f32>(q4), xs + 24u + j);
        }
    }
}
