// F32 "block": one little-endian float, 4 bytes.
const BLOCK_ELEMENTS: u32 = 1u;
const BLOCK_BYTES: u32 = 4u;

fn block_dot(offset: u32, x_start: u32) -> f32 {
    return bitcast<f32>(weights[offset >> 2u]) * x[x_start];
}
