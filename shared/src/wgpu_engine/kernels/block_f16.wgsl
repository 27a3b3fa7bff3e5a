// F16, eight weights per block.
//   GGUF: 8 little-endian halves (16 bytes)
//   GPU:  no head; bulk = 1 vec4, two halves per word
const BLOCK_ELEMENTS: u32 = 8u;
const SUB_BLOCKS: u32 = 1u;
const HEAD_WORDS: u32 = 0u;
const BULK_VEC4S: u32 = 1u;

struct Block {
    q: vec4<u32>,
}

fn load_sub(i: u32, sub: u32) -> Block {
    return Block(bulk[i]);
}

fn group_weights(b: Block, g: u32) -> vec4<f32> {
    if (g == 0u) {
        return vec4<f32>(unpack2x16float(b.q.x), unpack2x16float(b.q.y));
    }
    return vec4<f32>(unpack2x16float(b.q.z), unpack2x16float(b.q.w));
}
