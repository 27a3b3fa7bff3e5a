// Q8_0: 32 weights in 34 bytes.
//   bytes 0..2   d      f16 scale
//   bytes 2..34  qs[32] i8 quants
// w[i] = d * qs[i]
const BLOCK_ELEMENTS: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    let d = f16_at(offset);
    var sum = 0.0;
    for (var i = 0u; i < 32u; i++) {
        sum += f32(i8_at(offset + 2u + i)) * x[x_start + i];
    }
    return d * sum;
}
