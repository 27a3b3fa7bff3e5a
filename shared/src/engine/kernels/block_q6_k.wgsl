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
const BLOCK_ELEMENTS: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    let d = f16_at(offset + 208u);
    var sum = 0.0;
    for (var part = 0u; part < 2u; part++) {
        let ql = offset + part * 64u;
        let qh = offset + 128u + part * 32u;
        let sc = offset + 192u + part * 8u;
        let xs = x_start + part * 128u;
        for (var l = 0u; l < 32u; l++) {
            let sub = l / 16u;
            let low = byte_at(ql + l);
            let low32 = byte_at(ql + l + 32u);
            let high = byte_at(qh + l);
            let q1 = f32(i32((low & 0xFu) | ((high & 3u) << 4u)) - 32);
            let q2 = f32(i32((low32 & 0xFu) | (((high >> 2u) & 3u) << 4u)) - 32);
            let q3 = f32(i32((low >> 4u) | (((high >> 4u) & 3u) << 4u)) - 32);
            let q4 = f32(i32((low32 >> 4u) | (((high >> 6u) & 3u) << 4u)) - 32);
            sum += f32(i8_at(sc + sub)) * q1 * x[xs + l];
            sum += f32(i8_at(sc + sub + 2u)) * q2 * x[xs + l + 32u];
            sum += f32(i8_at(sc + sub + 4u)) * q3 * x[xs + l + 64u];
            sum += f32(i8_at(sc + sub + 6u)) * q4 * x[xs + l + 96u];
        }
    }
    return d * sum;
}
