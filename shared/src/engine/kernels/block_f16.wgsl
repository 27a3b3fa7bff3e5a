// F16, taken four at a time: 8 bytes of little-endian halves.
const BLOCK_ELEMENTS: u32 = 4u;
const BLOCK_BYTES: u32 = 8u;

fn block_dot(offset: u32, x4: u32) {
    let i = offset >> 2u;
    accumulate(vec4<f32>(unpack2x16float(weights[i]), unpack2x16float(weights[i + 1u])), x4);
}
