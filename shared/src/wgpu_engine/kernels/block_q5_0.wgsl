// Q5_0: 32 weights in 22 bytes.
//   GGUF: bytes 0..2 d (f16 scale); 2..6 qh (u32, bit j = 5th bit of weight j);
//         6..22 qs[16], low nibble = weight j, high = j+16 (4 low bits)
//   GPU:  head word 0 = qh, word 1 = d (low half); bulk = 1 vec4 = qs
// w = d * (q - 16)
const BLOCK_ELEMENTS: u32 = 32u;
const SUB_BLOCKS: u32 = 1u;
const HEAD_WORDS: u32 = 2u;
const BULK_VEC4S: u32 = 1u;

struct Block {
    d: f32,
    qh: u32,
    qs: vec4<u32>,
}

fn load_sub(i: u32, sub: u32) -> Block {
    return Block(unpack2x16float(head_word(i, 1u)).x, head_word(i, 0u), bulk[i]);
}

// Weights 4g .. 4g+3: nibbles of qs word g % 4 (low for g < 4), fifth bits 4g .. 4g+3 of qh.
fn group_weights(b: Block, g: u32) -> vec4<f32> {
    let low = nibbles4(b.qs[g % 4u], 4u * (g / 4u));
    let high = (vec4<u32>(b.qh) >> (vec4<u32>(0u, 1u, 2u, 3u) + 4u * g)) & vec4<u32>(1u);
    return b.d * (vec4<f32>(low | (high << vec4<u32>(4u))) - 16.0);
}
