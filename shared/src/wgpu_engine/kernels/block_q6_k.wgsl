// Q6_K: 256 weights in 210 bytes, 16 sub-blocks of 16 with signed 8-bit scales.
//   GGUF: bytes 0..128 ql[128] (low 4 bits); 128..192 qh[64] (high 2 bits, four weights per
//         byte); 192..208 scales[16] (i8); 208..210 d (f16)
//   GPU:  head words 0..4 = scales, word 4 = d (low half); bulk = 12 vec4 = ql (8), qh (4)
// For each half h (128 weights; ql += 64h, qh += 32h, scales += 8h), quarter Q (0..4) and
// l in 0..32, weight 32Q + l is
//   d * sc[l/16 + 2Q] * (((ql[l + 32 (Q % 2)] >> 4 (Q / 2)) & 15 | ((qh[l] >> 2Q) & 3) << 4) - 32)
// The kernel walks it as 8 runs of 32 weights (h = run / 4, Q = run % 4).
const BLOCK_ELEMENTS: u32 = 256u;
const SUB_BLOCKS: u32 = 8u;
const HEAD_WORDS: u32 = 5u;
const BULK_VEC4S: u32 = 12u;

struct Block {
    // d * sc for l < 16 and l >= 16.
    scales: vec2<f32>,
    ql0: vec4<u32>,
    ql1: vec4<u32>,
    qh0: vec4<u32>,
    qh1: vec4<u32>,
    quarter: u32,
}

fn load_sub(i: u32, sub: u32) -> Block {
    let half = sub / 4u;
    let quarter = sub % 4u;
    let d = unpack2x16float(head_word(i, 4u)).x;
    // Scale bytes 8h + 2Q and 8h + 2Q + 1: one aligned pair within a word.
    let index = 8u * half + 2u * quarter;
    let pair = head_word(i, index / 4u) >> (8u * (index % 4u));
    let scales = vec2<i32>(bitcast<i32>(pair << 24u) >> 24u, bitcast<i32>(pair << 16u) >> 24u);
    let ql = 12u * i + 4u * half + 2u * (quarter % 2u);
    let qh = 12u * i + 8u + 2u * half;
    return Block(d * vec2<f32>(scales), bulk[ql], bulk[ql + 1u], bulk[qh], bulk[qh + 1u], quarter);
}

// Weights l = 4g .. 4g+3 of the run.
fn group_weights(b: Block, g: u32) -> vec4<f32> {
    let low = nibbles4(select(b.ql1, b.ql0, g < 4u)[g % 4u], 4u * (b.quarter / 2u));
    let high_word = select(b.qh1, b.qh0, g < 4u)[g % 4u];
    let high = (vec4<u32>(high_word) >> (vec4<u32>(0u, 8u, 16u, 24u) + 2u * b.quarter)) & vec4<u32>(3u);
    let scale = select(b.scales.y, b.scales.x, g < 4u);
    return scale * (vec4<f32>(low | (high << vec4<u32>(4u))) - 32.0);
}
