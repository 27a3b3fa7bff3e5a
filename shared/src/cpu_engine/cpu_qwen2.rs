//! A Qwen2 model on the CPU, read straight from its GGUF: matrices stay in their block types
//! and are multiplied block by block against 8-bit activations (`block_dot`), norms and biases
//! are f32, and each sequence keeps its keys and values in f32. The whole forward pass in one
//! file: embedding rows, then per layer RMSNorm, Q/K/V with biases, NeoX RoPE, causal
//! grouped-query attention, the output projection and SwiGLU, each added to the residual
//! stream; then the final norm and the output head on the last token. A batch of tokens
//! multiplies each weight row by every token before moving on, so the weights are read once
//! per batch.

use std::io::{Read, Seek};
use std::ops::Range;
use std::sync::Arc;

use super::block_dot::RowFormat;
use super::q8_activations::{Q8_BLOCK, Q8Block, quantize_q8};
use super::row_threads::RowThreads;
use super::simd_level::SimdLevel;
use crate::generation::EngineError;
use crate::generation::GeneratingSequence;
use crate::gguf::BlockType;
use crate::gguf::Qwen2Tensor;
use crate::gguf::embedding_rows::EmbeddingRows;
use crate::gguf::metadata::{GgufModel, ModelHyperparameters};
use crate::gguf::tensor_reader::GgufTensors;
use crate::token_sampler::{TokenScore, apply_repetition_penalty, top_scores};

/// A weight matrix in its GGUF blocks, row after row.
pub struct CpuMatrix {
    pub block_type: BlockType,
    pub rows: usize,
    pub cols: usize,
    /// Shared with the embedding where the model ties its output head to it.
    bytes: Arc<Vec<u8>>,
    format: RowFormat,
}

impl CpuMatrix {
    /// A matrix of `shape` (block type, rows, columns) over `bytes`, its GGUF blocks,
    /// multiplied at `level`.
    fn new(shape: (BlockType, usize, usize), bytes: Arc<Vec<u8>>, level: SimdLevel) -> Self {
        let (block_type, rows, cols) = shape;
        Self {
            block_type,
            rows,
            cols,
            bytes,
            format: RowFormat::at_level(block_type, level),
        }
    }

    fn row_bytes(&self) -> usize {
        self.bytes.len() / self.rows
    }

    /// `out[t][r] = row r · x[t]` for every token t of `inputs` (`+=` with `accumulate`),
    /// the rows split over `threads`.
    fn multiply(&self, inputs: &Inputs, out: &mut [f32], accumulate: bool, threads: &RowThreads) {
        let tokens = inputs.tokens;
        for (rows, values) in threads.map_rows(self.rows, |rows| self.multiply_rows(rows, inputs)) {
            for (r, row_values) in rows.zip(values.chunks_exact(tokens)) {
                for (t, &value) in row_values.iter().enumerate() {
                    let slot = &mut out[t * self.rows + r];
                    *slot = if accumulate { *slot + value } else { value };
                }
            }
        }
    }

    /// Rows `rows` times every token: `[row][token]`. A batch unpacks each quantized row once
    /// for all its tokens.
    fn multiply_rows(&self, rows: Range<usize>, inputs: &Inputs) -> Vec<f32> {
        let row_bytes = self.row_bytes();
        let mut unpacked = Vec::new();
        let mut values = Vec::with_capacity(rows.len() * inputs.tokens);
        for r in rows {
            // Four rows ahead: the prefetchers stop at page boundaries, and a decode step
            // streams every matrix once.
            prefetch(self.bytes.get((r + 4) * row_bytes..(r + 5) * row_bytes));
            let row = &self.bytes[r * row_bytes..(r + 1) * row_bytes];
            let batch = inputs.tokens > 1 && self.format.unpack_row(row, &mut unpacked);
            for t in 0..inputs.tokens {
                values.push(if batch {
                    self.format.unpacked_dot(&unpacked, &inputs.quantized[t])
                } else {
                    self.format.dot(row, inputs.token(t), &inputs.quantized[t])
                });
            }
        }
        values
    }
}

/// Asks the CPU to fetch `bytes` into its caches (x86-64; a no-op elsewhere).
#[inline(always)]
fn prefetch(bytes: Option<&[u8]>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(bytes) = bytes {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for line in bytes.chunks(64) {
            // SAFETY: a prefetch reads nothing and cannot fault; the address is in `bytes`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// A batch of activations, as f32 and as 8-bit blocks (zero-padded to whole blocks).
struct Inputs<'a> {
    values: &'a [f32],
    width: usize,
    tokens: usize,
    quantized: Vec<Vec<Q8Block>>,
}

impl<'a> Inputs<'a> {
    fn new(values: &'a [f32], width: usize) -> Self {
        let tokens = values.len() / width;
        let quantized = values
            .chunks_exact(width)
            .map(|x| {
                if width.is_multiple_of(Q8_BLOCK) {
                    quantize_q8(x)
                } else {
                    let mut padded = x.to_vec();
                    padded.resize(width.next_multiple_of(Q8_BLOCK), 0.0);
                    quantize_q8(&padded)
                }
            })
            .collect();
        Self {
            values,
            width,
            tokens,
            quantized,
        }
    }

    fn token(&self, t: usize) -> &[f32] {
        &self.values[t * self.width..(t + 1) * self.width]
    }
}

struct CpuLayer {
    attn_norm: Vec<f32>,
    wq: CpuMatrix,
    wk: CpuMatrix,
    wv: CpuMatrix,
    q_bias: Vec<f32>,
    k_bias: Vec<f32>,
    v_bias: Vec<f32>,
    wo: CpuMatrix,
    ffn_norm: Vec<f32>,
    w_gate: CpuMatrix,
    w_up: CpuMatrix,
    w_down: CpuMatrix,
}

/// How the CPU engine runs on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSettings {
    /// The block products' instructions (default: the fastest this CPU has).
    pub simd: SimdLevel,
    /// Threads multiplying each matrix's rows (natively; the browser runs one).
    pub threads: usize,
}

impl Default for CpuSettings {
    fn default() -> Self {
        Self {
            simd: SimdLevel::detected(),
            threads: 1,
        }
    }
}

pub struct CpuQwen2Weights {
    pub hyperparameters: ModelHyperparameters,
    pub settings: CpuSettings,
    threads: RowThreads,
    layers: Vec<CpuLayer>,
    output_norm: Vec<f32>,
    output: CpuMatrix,
    embedding: EmbeddingRows,
    /// base^(2i / head_dim) for each of a head's pairs, computed once.
    rope_frequencies: Vec<f32>,
}

impl CpuQwen2Weights {
    /// Reads the weights of a validated Qwen2 GGUF, for one thread at the fastest SIMD level.
    /// A tensor the engine cannot run (unknown block type, missing, wrong shape) is an error
    /// naming it.
    pub fn load<R: Read + Seek>(
        gguf: &GgufModel,
        reader: &mut R,
    ) -> Result<Arc<Self>, EngineError> {
        Self::load_with(gguf, reader, CpuSettings::default())
    }

    /// As `load`, run as `settings` say.
    pub fn load_with<R: Read + Seek>(
        gguf: &GgufModel,
        reader: &mut R,
        settings: CpuSettings,
    ) -> Result<Arc<Self>, EngineError> {
        if !SimdLevel::available().contains(&settings.simd) {
            return Err(EngineError::Unsupported(format!(
                "this CPU has no {} (it has {:?})",
                settings.simd,
                SimdLevel::available()
            )));
        }
        let threads = RowThreads::new(settings.threads)?;
        let level = settings.simd;
        let hp = gguf.hyperparameters.clone();
        let mut tensors = GgufTensors::open(gguf, reader, "the CPU engine")?;
        let t = &mut tensors;
        let matrix = |t: &mut GgufTensors<'_, R>, name: &str| -> Result<CpuMatrix, EngineError> {
            Ok(CpuMatrix::new(
                t.matrix_shape(name)?,
                Arc::new(t.bytes(name)?),
                level,
            ))
        };
        let mut layers = Vec::with_capacity(hp.block_count);
        for layer in 0..hp.block_count {
            let name = |tensor: Qwen2Tensor| tensor.gguf(layer);
            layers.push(CpuLayer {
                attn_norm: t.f32_values(&name(Qwen2Tensor::AttnNorm))?,
                wq: matrix(t, &name(Qwen2Tensor::AttnQ))?,
                wk: matrix(t, &name(Qwen2Tensor::AttnK))?,
                wv: matrix(t, &name(Qwen2Tensor::AttnV))?,
                q_bias: t.f32_values(&name(Qwen2Tensor::AttnQBias))?,
                k_bias: t.f32_values(&name(Qwen2Tensor::AttnKBias))?,
                v_bias: t.f32_values(&name(Qwen2Tensor::AttnVBias))?,
                wo: matrix(t, &name(Qwen2Tensor::AttnOutput))?,
                ffn_norm: t.f32_values(&name(Qwen2Tensor::FfnNorm))?,
                w_gate: matrix(t, &name(Qwen2Tensor::FfnGate))?,
                w_up: matrix(t, &name(Qwen2Tensor::FfnUp))?,
                w_down: matrix(t, &name(Qwen2Tensor::FfnDown))?,
            });
        }
        let output_norm = t.f32_values(Qwen2Tensor::OutputNorm.gguf_model())?;
        let embedding = t.embedding()?;
        // Tied weights: the output head multiplies by the embedding table's own bytes.
        let output = if hp.tied_embeddings {
            CpuMatrix::new(
                t.matrix_shape(Qwen2Tensor::TokenEmbedding.gguf_model())?,
                embedding.shared_table(),
                level,
            )
        } else {
            matrix(t, Qwen2Tensor::Output.gguf_model())?
        };
        // Each pair of a head's values turns by position / frequency (NeoX RoPE).
        let rope_frequencies = (0..hp.head_dim / 2)
            .map(|i| hp.rope_freq_base.powf(2.0 * i as f32 / hp.head_dim as f32))
            .collect();
        Ok(Arc::new(Self {
            hyperparameters: hp,
            settings,
            threads,
            layers,
            output_norm,
            output,
            embedding,
            rope_frequencies,
        }))
    }
}

/// One sequence on shared CPU weights: its tokens, its keys and values, and the logits after
/// its last token.
pub struct CpuSequence {
    weights: Arc<CpuQwen2Weights>,
    max_positions: usize,
    tokens: Vec<u32>,
    /// Per layer, [position][kv_heads × head_dim].
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    logits: Vec<f32>,
}

impl CpuSequence {
    /// A sequence of up to `max_positions` tokens (prompt and reply).
    pub fn new(weights: &Arc<CpuQwen2Weights>, max_positions: usize) -> Self {
        let hp = &weights.hyperparameters;
        let layers = weights.layers.len();
        Self {
            weights: Arc::clone(weights),
            max_positions: max_positions.clamp(1, hp.context_length),
            tokens: Vec::new(),
            keys: vec![Vec::new(); layers],
            values: vec![Vec::new(); layers],
            logits: Vec::new(),
        }
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// How its weights run: SIMD level and threads.
    pub fn settings(&self) -> CpuSettings {
        self.weights.settings
    }

    /// The tokens in the cache, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
        let kv = self.kv_width();
        for cache in self.keys.iter_mut().chain(&mut self.values) {
            cache.truncate(len * kv);
        }
    }

    fn kv_width(&self) -> usize {
        let hp = &self.weights.hyperparameters;
        hp.head_count_kv * hp.head_dim
    }

    /// The logits for the token after the last one fed.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The `needed` best next tokens after the repetition penalty on `penalized`, best first.
    pub fn next_token_scores(
        &self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Vec<TokenScore> {
        if penalized.is_empty() || penalty == 1.0 {
            return top_scores(&self.logits, needed);
        }
        let mut logits = self.logits.clone();
        apply_repetition_penalty(&mut logits, penalized, penalty);
        top_scores(&logits, needed)
    }

    /// Runs `tokens` after the cached ones as one batch; afterwards the logits are those for
    /// the token after the last.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<(), EngineError> {
        if tokens.is_empty() {
            return Ok(());
        }
        if self.tokens.len() + tokens.len() > self.max_positions {
            return Err(EngineError::Unsupported(format!(
                "{} tokens do not fit the sequence's {} positions ({} in use)",
                tokens.len(),
                self.max_positions,
                self.tokens.len()
            )));
        }
        let weights = Arc::clone(&self.weights);
        let hp = &weights.hyperparameters;
        let threads = &weights.threads;
        let (d, ff) = (hp.embedding_length, hp.feed_forward_length);
        let (heads, kv_heads, head_dim) = (hp.head_count, hp.head_count_kv, hp.head_dim);
        let kv = kv_heads * head_dim;
        let n = tokens.len();
        let start = self.tokens.len();

        let mut hidden = weights.embedding.rows(tokens)?;
        let mut normed = vec![0f32; n * d];
        let (mut q, mut k, mut v) = (vec![0f32; n * d], vec![0f32; n * kv], vec![0f32; n * kv]);
        let mut attended = vec![0f32; n * d];
        let (mut gate, mut up) = (vec![0f32; n * ff], vec![0f32; n * ff]);
        for (index, layer) in weights.layers.iter().enumerate() {
            rms_norm(&hidden, &layer.attn_norm, hp.rms_norm_eps, &mut normed);
            let inputs = Inputs::new(&normed, d);
            for (m, bias, out) in [
                (&layer.wq, &layer.q_bias, &mut q),
                (&layer.wk, &layer.k_bias, &mut k),
                (&layer.wv, &layer.v_bias, &mut v),
            ] {
                m.multiply(&inputs, out, false, threads);
                for row in out.chunks_exact_mut(m.rows) {
                    row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
                }
            }
            rope(&mut q, heads, start, &weights.rope_frequencies);
            rope(&mut k, kv_heads, start, &weights.rope_frequencies);
            self.keys[index].extend_from_slice(&k);
            self.values[index].extend_from_slice(&v);
            attend(
                &q,
                &self.keys[index],
                &self.values[index],
                [heads, kv_heads, head_dim],
                start,
                &mut attended,
                threads,
            );
            layer
                .wo
                .multiply(&Inputs::new(&attended, d), &mut hidden, true, threads);

            rms_norm(&hidden, &layer.ffn_norm, hp.rms_norm_eps, &mut normed);
            let inputs = Inputs::new(&normed, d);
            layer.w_gate.multiply(&inputs, &mut gate, false, threads);
            layer.w_up.multiply(&inputs, &mut up, false, threads);
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            layer
                .w_down
                .multiply(&Inputs::new(&gate, ff), &mut hidden, true, threads);
        }
        let last = &hidden[(n - 1) * d..];
        let mut final_normed = vec![0f32; d];
        rms_norm(
            last,
            &weights.output_norm,
            hp.rms_norm_eps,
            &mut final_normed,
        );
        self.logits = vec![0f32; weights.output.rows];
        weights.output.multiply(
            &Inputs::new(&final_normed, d),
            &mut self.logits,
            false,
            threads,
        );
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }
}

/// `out[t] = x[t] / rms(x[t]) · weight` for every token.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    for (row, out_row) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for ((o, &v), &w) in out_row.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// NeoX rotary embedding in place: in each head, element i pairs with i + head_dim / 2 and
/// both rotate by position / frequencies[i] (frequencies[i] = base^(2i / head_dim)); token t
/// is at `first_position + t`.
fn rope(x: &mut [f32], heads: usize, first_position: usize, frequencies: &[f32]) {
    let head_dim = 2 * frequencies.len();
    for (t, token) in x.chunks_exact_mut(heads * head_dim).enumerate() {
        let position = (first_position + t) as f32;
        for head in token.chunks_exact_mut(head_dim) {
            let (first, second) = head.split_at_mut(frequencies.len());
            for ((a, b), frequency) in first.iter_mut().zip(second).zip(frequencies) {
                let (sin, cos) = (position / frequency).sin_cos();
                let (x0, x1) = (*a, *b);
                *a = x0 * cos - x1 * sin;
                *b = x0 * sin + x1 * cos;
            }
        }
    }
}

/// Causal grouped-query attention of the batch's queries (token t at `first_position + t`)
/// over the cached keys and values, which already hold the batch's own; the heads split over
/// `threads` (each head computed as on one thread).
fn attend(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    [heads, kv_heads, head_dim]: [usize; 3],
    first_position: usize,
    out: &mut [f32],
    threads: &RowThreads,
) {
    let tokens = q.len() / (heads * head_dim);
    let parts = threads.map_rows(heads, |range| {
        let mut part = vec![0f32; tokens * range.len() * head_dim];
        let mut scores = Vec::new();
        for (t, token_part) in part.chunks_exact_mut(range.len() * head_dim).enumerate() {
            for (head, output) in range.clone().zip(token_part.chunks_exact_mut(head_dim)) {
                let query = &q[(t * heads + head) * head_dim..][..head_dim];
                let position = [first_position + t, head];
                attend_head(
                    query,
                    keys,
                    values,
                    [kv_heads, head_dim, heads],
                    position,
                    (&mut scores, output),
                );
            }
        }
        part
    });
    for (range, part) in parts {
        let width = range.len() * head_dim;
        for (t, token_part) in part.chunks_exact(width).enumerate() {
            let at = (t * heads + range.start) * head_dim;
            out[at..at + width].copy_from_slice(token_part);
        }
    }
}

/// One head's attention for the query at `position`, over the positions up to it, into
/// `output`; `scores` is scratch space, reused from head to head.
fn attend_head(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    [kv_heads, head_dim, heads]: [usize; 3],
    [position, head]: [usize; 2],
    (scores, output): (&mut Vec<f32>, &mut [f32]),
) {
    let kv = kv_heads * head_dim;
    let offset = (head / (heads / kv_heads)) * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    scores.clear();
    scores.extend((0..=position).map(|s| {
        let key = &keys[s * kv + offset..s * kv + offset + head_dim];
        query.iter().zip(key).map(|(a, b)| a * b).sum::<f32>() * scale
    }));
    let largest = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for score in scores.iter_mut() {
        *score = (*score - largest).exp();
        total += *score;
    }
    output.fill(0.0);
    for (s, p) in scores.iter().enumerate() {
        let value = &values[s * kv + offset..s * kv + offset + head_dim];
        for (o, v) in output.iter_mut().zip(value) {
            *o += p / total * v;
        }
    }
}

impl GeneratingSequence for CpuSequence {
    fn max_positions(&self) -> usize {
        CpuSequence::max_positions(self)
    }

    fn tokens(&self) -> &[u32] {
        CpuSequence::tokens(self)
    }

    fn truncate(&mut self, len: usize) {
        CpuSequence::truncate(self, len);
    }

    /// The caches grow as positions are fed: nothing to allocate ahead.
    async fn reserve(&mut self, _positions: usize) -> Result<(), EngineError> {
        Ok(())
    }

    fn feed(&mut self, tokens: &[u32]) -> Result<(), EngineError> {
        CpuSequence::feed(self, tokens)
    }

    fn vocab_size(&self) -> usize {
        self.weights.hyperparameters.vocab_size
    }

    async fn next_token_scores(
        &self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>, EngineError> {
        Ok(CpuSequence::next_token_scores(
            self, needed, penalized, penalty,
        ))
    }
}
