// F32, taken four at a time: 16 bytes of little-endian floats.
const BLOCK_ELEMENTS: u32 = 4u;
const BLOCK_BYTES: u32 = 16u;

fn block_dot(offset: u32, x4: u32) {
    let i = offset >> 2u;
    let w = vec4<u32>(weights[i], weights[i + 1u], weights[i + 2u], weights[i + 3u]);
    accumulate(bitcast<vec4<f32>>(w), x4);
}
