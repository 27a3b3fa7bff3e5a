// Q8_0: 32 weights in 34 bytes.
//   GGUF: bytes 0..2 d (f16 scale); bytes 2..34 qs[32] (i8)
//   GPU:  head word 0 = d (low half); bulk = 2 vec4 = qs
// w[i] = d * qs[i]
const BLOCK_ELEMENTS: u32 = 32u;
const SUB_BLOCKS: u32 = 1u;
const HEAD_WORDS: u32 = 1u;
const BULK_VEC4S: u32 = 2u;

struct Block {
    d: f32,
    q0: vec4<u32>,
    q1: vec4<u32>,
}

fn load_sub(i: u32, sub: u32) -> Block {
    return Block(unpack2x16float(head_word(i, 0u)).x, bulk[2u * i], bulk[2u * i + 1u]);
}

fn group_weights(b: Block, g: u32) -> vec4<f32> {
    let q = select(b.q1, b.q0, g < 4u);
    return b.d * vec4<f32>(unpack4xI8(q[g % 4u]));
}
