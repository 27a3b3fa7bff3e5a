// Q4_1: 32 weights in 20 bytes.
//   bytes 0..2   d      f16 scale
//   bytes 2..4   m      f16 minimum
//   bytes 4..20  qs[16] low nibble = weight j, high nibble = weight j+16
// w = d * q + m
const BLOCK_ELEMENTS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    let d = f16_at(offset);
    let m = f16_at(offset + 2u);
    var sum = 0.0;
    var x_sum = 0.0;
    for (var j = 0u; j < 16u; j++) {
        let q = byte_at(offset + 4u + j);
        let x0 = x[x_start + j];
        let x1 = x[x_start + j + 16u];
        sum += f32(q & 0xFu) * x0 + f32(q >> 4u) * x1;
        x_sum += x0 + x1;
    }
    return d * sum + m * x_sum;
}
