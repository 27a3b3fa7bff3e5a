// Q5_0: 32 weights in 22 bytes.
//   bytes 0..2   d      f16 scale
//   bytes 2..6   qh     u32: bit j is the 5th bit of weight j
//   bytes 6..22  qs[16] low nibble = weight j, high nibble = weight j+16 (4 low bits)
// w = d * (q - 16)
const BLOCK_ELEMENTS: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn block_dot(offset: u32, x4: u32) {
    let d = f16_at(offset);
    let qh = vec4<u32>(word_at(offset + 2u));
    for (var i = 0u; i < 4u; i++) {
        let q = bytes4(word_at(offset + 6u + 4u * i));
        let j = vec4<u32>(0u, 1u, 2u, 3u) + 4u * i;
        let low = (q & vec4<u32>(0xFu)) | (((qh >> j) & vec4<u32>(1u)) << vec4<u32>(4u));
        let high = (q >> vec4<u32>(4u)) | (((qh >> (j + 16u)) & vec4<u32>(1u)) << vec4<u32>(4u));
        accumulate(d * (vec4<f32>(low) - 16.0), x4 + i);
        accumulate(d * (vec4<f32>(high) - 16.0), x4 + 4u + i);
    }
}
