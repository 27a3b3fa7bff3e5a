// Q5_0: 32 weights in 22 bytes.
//   bytes 0..2   d      f16 scale
//   bytes 2..6   qh     u32: bit j is the 5th bit of weight j
//   bytes 6..22  qs[16] low nibble = weight j, high nibble = weight j+16 (4 low bits)
// w = d * (q - 16)
const BLOCK_ELEMENTS: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    let d = f16_at(offset);
    let qh = u32_at(offset + 2u);
    var sum = 0.0;
    for (var j = 0u; j < 16u; j++) {
        let q = byte_at(offset + 6u + j);
        let high0 = ((qh >> j) & 1u) << 4u;
        let high1 = ((qh >> (j + 16u)) & 1u) << 4u;
        sum += (f32((q & 0xFu) | high0) - 16.0) * x[x_start + j];
        sum += (f32((q >> 4u) | high1) - 16.0) * x[x_start + j + 16u];
    }
    return d * sum;
}
