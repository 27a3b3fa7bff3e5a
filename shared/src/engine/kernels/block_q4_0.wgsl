// Q4_0: 32 weights in 18 bytes.
//   bytes 0..2   d      f16 scale
//   bytes 2..18  qs[16] two 4-bit quants per byte: low nibble = weight j, high = weight j+16
// w = d * (q - 8)
const BLOCK_ELEMENTS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn block_dot(offset: u32, x4: u32) {
    let d = f16_at(offset);
    for (var i = 0u; i < 4u; i++) {
        let q = bytes4(word_at(offset + 2u + 4u * i));
        accumulate(d * (vec4<f32>(q & vec4<u32>(0xFu)) - 8.0), x4 + i);
        accumulate(d * (vec4<f32>(q >> vec4<u32>(4u)) - 8.0), x4 + 4u + i);
    }
}
