// Q4_1: 32 weights in 20 bytes.
//   GGUF: bytes 0..2 d (f16 scale); 2..4 m (f16 minimum); 4..20 qs[16] as in Q4_0
//   GPU:  head word 0 = d (low half) | m (high half); bulk = 1 vec4 = qs
// w = d * q + m
const BLOCK_ELEMENTS: u32 = 32u;
const SUB_BLOCKS: u32 = 1u;
const HEAD_WORDS: u32 = 1u;
const BULK_VEC4S: u32 = 1u;

struct Block {
    dm: vec2<f32>,
    qs: vec4<u32>,
}

fn load_sub(i: u32, sub: u32) -> Block {
    return Block(unpack2x16float(head_word(i, 0u)), bulk[i]);
}

fn group_weights(b: Block, g: u32) -> vec4<f32> {
    let q = nibbles4(b.qs[g % 4u], 4u * (g / 4u));
    return b.dm.x * vec4<f32>(q) + b.dm.y;
}
