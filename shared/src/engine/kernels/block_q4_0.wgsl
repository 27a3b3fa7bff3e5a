// Q4_0: 32 weights in 18 bytes.
//   bytes 0..2   d      f16 scale
//   bytes 2..18  qs[16] two 4-bit quants per byte: low nibble = weight j, high = weight j+16
// w = d * (q - 8)
const BLOCK_ELEMENTS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    let d = f16_at(offset);
    var sum = 0.0;
    for (var j = 0u; j < 16u; j++) {
        let q = byte_at(offset + 2u + j);
        sum += (f32(q & 0xFu) - 8.0) * x[x_start + j];
        sum += (f32(q >> 4u) - 8.0) * x[x_start + j + 16u];
    }
    return d * sum;
}
