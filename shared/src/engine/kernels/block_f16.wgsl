// F16 taken two at a time: one u32 holds two little-endian halves (rows must have even length).
const BLOCK_ELEMENTS: u32 = 2u;
const BLOCK_BYTES: u32 = 4u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    let pair = unpack2x16float(weights[offset >> 2u]);
    return pair.x * x[x_start] + pair.y * x[x_start + 1u];
}
