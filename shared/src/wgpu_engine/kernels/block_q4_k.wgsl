// Q4_K: 256 weights in 144 bytes, 8 sub-blocks of 32 with 6-bit scales and minimums.
//   GGUF: bytes 0..2 d, 2..4 dmin (f16); 4..16 scales[12] (packing: k_quant_scale_min.wgsl);
//         16..144 qs[128], 4-bit quants: 32-byte group G holds sub-block 2G (low nibbles)
//         and 2G+1 (high nibbles)
//   GPU:  head words 0..4 = bytes 0..16; bulk = 8 vec4 = qs
// w = d * scale[s] * q - dmin * min[s]
const BLOCK_ELEMENTS: u32 = 256u;
const SUB_BLOCKS: u32 = 8u;
const HEAD_WORDS: u32 = 4u;
const BULK_VEC4S: u32 = 8u;

// One sub-block: its (d * scale, dmin * min), its 32-byte group and which nibble it uses.
struct Block {
    scale: vec2<f32>,
    q0: vec4<u32>,
    q1: vec4<u32>,
    shift: u32,
}

fn load_sub(i: u32, sub: u32) -> Block {
    let q = 8u * i + 2u * (sub / 2u);
    return Block(k_quant_scale(i, sub), bulk[q], bulk[q + 1u], 4u * (sub % 2u));
}

// Weights 4g .. 4g+3 of the sub-block: word g of its group.
fn group_weights(b: Block, g: u32) -> vec4<f32> {
    let q = nibbles4(select(b.q1, b.q0, g < 4u)[g % 4u], b.shift);
    return b.scale.x * vec4<f32>(q) - b.scale.y;
}
