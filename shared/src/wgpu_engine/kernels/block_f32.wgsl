// F32, four weights per block.
//   GGUF: 4 little-endian floats (16 bytes)
//   GPU:  no head; bulk = 1 vec4 (the floats' bits)
const BLOCK_ELEMENTS: u32 = 4u;
const SUB_BLOCKS: u32 = 1u;
const HEAD_WORDS: u32 = 0u;
const BULK_VEC4S: u32 = 1u;

struct Block {
    w: vec4<f32>,
}

fn load_sub(i: u32, sub: u32) -> Block {
    return Block(bitcast<vec4<f32>>(bulk[i]));
}

fn group_weights(b: Block, g: u32) -> vec4<f32> {
    return b.w;
}
