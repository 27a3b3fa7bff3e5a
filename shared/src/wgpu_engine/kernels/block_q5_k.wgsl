// Q5_K: 256 weights in 176 bytes, like Q4_K plus a fifth bit per weight.
//   GGUF: bytes 0..2 d, 2..4 dmin (f16); 4..16 scales[12] as in Q4_K;
//         16..48 qh[32]: bit s of byte l is the 5th bit of weight l of sub-block s;
//         48..176 qs[128], 4 low bits grouped as in Q4_K
//   GPU:  head words 0..4 = bytes 0..16; bulk = 10 vec4 = qh (2) then qs (8)
// w = d * scale[s] * q - dmin * min[s]
const BLOCK_ELEMENTS: u32 = 256u;
const SUB_BLOCKS: u32 = 8u;
const HEAD_WORDS: u32 = 4u;
const BULK_VEC4S: u32 = 10u;

struct Block {
    scale: vec2<f32>,
    qh0: vec4<u32>,
    qh1: vec4<u32>,
    q0: vec4<u32>,
    q1: vec4<u32>,
    sub: u32,
}

fn load_sub(i: u32, sub: u32) -> Block {
    let base = 10u * i;
    let q = base + 2u + 2u * (sub / 2u);
    return Block(k_quant_scale(i, sub), bulk[base], bulk[base + 1u], bulk[q], bulk[q + 1u], sub);
}

// Weights 4g .. 4g+3 of the sub-block: word g of its qs group, bit `sub` of qh bytes 4g .. 4g+3.
fn group_weights(b: Block, g: u32) -> vec4<f32> {
    let low = nibbles4(select(b.q1, b.q0, g < 4u)[g % 4u], 4u * (b.sub % 2u));
    let high_word = select(b.qh1, b.qh0, g < 4u)[g % 4u];
    let high = (vec4<u32>(high_word) >> (vec4<u32>(0u, 8u, 16u, 24u) + b.sub)) & vec4<u32>(1u);
    return b.scale.x * vec4<f32>(low | (high << vec4<u32>(4u))) - b.scale.y;
}
