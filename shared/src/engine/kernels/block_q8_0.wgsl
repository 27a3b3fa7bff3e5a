// Q8_0: 32 weights in 34 bytes.
//   bytes 0..2   d      f16 scale
//   bytes 2..34  qs[32] i8 quants
// w[i] = d * qs[i]
const BLOCK_ELEMENTS: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn block_dot(offset: u32, x4: u32) {
    let d = f16_at(offset);
    for (var i = 0u; i < 8u; i++) {
        accumulate(d * vec4<f32>(unpack4xI8(word_at(offset + 2u + 4u * i))), x4 + i);
    }
}
