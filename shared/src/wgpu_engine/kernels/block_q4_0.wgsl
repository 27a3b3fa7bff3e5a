// Q4_0: 32 weights in 18 bytes.
//   GGUF: bytes 0..2 d (f16 scale); bytes 2..18 qs[16], low nibble = weight j, high = j+16
//   GPU:  head word 0 = d (low half); bulk = 1 vec4 = qs
// w = d * (q - 8)
const BLOCK_ELEMENTS: u32 = 32u;
const SUB_BLOCKS: u32 = 1u;
const HEAD_WORDS: u32 = 1u;
const BULK_VEC4S: u32 = 1u;

struct Block {
    d: f32,
    qs: vec4<u32>,
}

fn load_sub(i: u32, sub: u32) -> Block {
    return Block(unpack2x16float(head_word(i, 0u)).x, bulk[i]);
}

// Weights 4g .. 4g+3: nibbles of qs word g % 4, low for g < 4, high after.
fn group_weights(b: Block, g: u32) -> vec4<f32> {
    let q = nibbles4(b.qs[g % 4u], 4u * (g / 4u));
    return b.d * (vec4<f32>(q) - 8.0);
}
