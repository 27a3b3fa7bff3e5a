// Q4_1: 32 weights in 20 bytes.
//   bytes 0..2   d      f16 scale
//   bytes 2..4   m      f16 minimum
//   bytes 4..20  qs[16] low nibble = weight j, high nibble = weight j+16
// w = d * q + m
const BLOCK_ELEMENTS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn block_dot(offset: u32, x4: u32) {
    let d = f16_at(offset);
    let m = f16_at(offset + 2u);
    for (var i = 0u; i < 4u; i++) {
        let q = bytes4(word_at(offset + 4u + 4u * i));
        accumulate(d * vec4<f32>(q & vec4<u32>(0xFu)) + m, x4 + i);
        accumulate(d * vec4<f32>(q >> vec4<u32>(4u)) + m, x4 + 4u + i);
    }
}
