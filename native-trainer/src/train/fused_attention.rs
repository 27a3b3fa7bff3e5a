//! RoPE and causal grouped-query attention over a `TokenLayout` as one op, a chunk of queries
//! at a time, forward and backward (the memory pattern of FlashAttention, in candle's ops).
//! As separate ops autograd keeps, per layer, the rotated queries and keys, the repeated keys
//! and values, and four copies of every head's `queries × keys` scores in f32 (the product,
//! the scaled, the masked and the softmaxed): gigabytes per layer at a thousand tokens. This
//! op keeps its inputs (queries and keys before rotation, values) and its output; the backward
//! pass recomputes each chunk's scores.
//!
//! Each chunk of a row's queries sees its parent's prefix and its own keys up to the chunk's
//! last query, so keys no query of the chunk may see are never multiplied. Query heads are
//! grouped by the key/value head they share (`heads / kv_heads` of them), so keys and values
//! are never repeated. With `P` the probabilities, `dO` the output's gradient and `s` the
//! score scale `1/√d`: `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − rowsum(dP ∘ P))`,
//! `dQ = s dS K`, `dK = s dSᵀ Q`, then the inverse rotation of `dQ` and `dK`.
//!
//! Precision follows `qwen2.rs`'s attention: products in the compute dtype, scores masked and
//! softmaxed in f32.

use candle_core::{Result, Tensor};

use super::causal_softmax::{causal_softmax, causal_softmax_backward};
use super::custom_backward::{Backward, attach};
use super::precision::widened;
use super::rope::{rotate, rotate_back};
use super::token_layout::RowSpan;

/// The attention's heads.
#[derive(Debug, Clone, Copy)]
pub struct HeadShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl HeadShape {
    /// Query heads per key/value head.
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
}

/// `softmax(rope(q) rope(k)ᵀ / √d + causal mask) v` for every row of `rows`: `q` `(slots,
/// heads × head_dim)`, `k` and `v` `(slots, kv_heads × head_dim)` before rotation,
/// `rotation` each slot's `(cos, sin)`; returns `(slots, heads × head_dim)`. Chunks of queries
/// hold at most `chunk_bytes` of f32 scores.
pub fn fused_attention(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    rotation: &(Tensor, Tensor),
    rows: &[RowSpan],
    shape: HeadShape,
    chunk_bytes: usize,
) -> Result<Tensor> {
    let pass = AttentionPass {
        rotation: rotation.clone(),
        rows: rows.to_vec(),
        shape,
        chunk_bytes,
    };
    let inputs = pass.inputs(&q.detach(), &k.detach(), &v.detach())?;
    let mut outputs = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let keys = inputs.row_keys(rows, index)?;
        for chunk in pass.chunks(row) {
            let queries = grouped(&inputs.q, row.start + chunk.first, chunk.count, shape)?;
            let probabilities = pass.probabilities(&queries, &keys, row, chunk)?;
            let values = keys.values.narrow(1, 0, chunk.visible)?;
            let out = probabilities.to_dtype(q.dtype())?.matmul(&values)?;
            outputs.push(ungrouped(&out, chunk.count, shape)?);
        }
    }
    let (slots, width) = q.dims2()?;
    let value = Tensor::cat(&outputs, 0)?.reshape((slots, width))?;
    attach(value, &[q, k, v], pass)
}

/// What the forward pass and the backward pass both need.
struct AttentionPass {
    rotation: (Tensor, Tensor),
    rows: Vec<RowSpan>,
    shape: HeadShape,
    chunk_bytes: usize,
}

/// A run of one row's queries: `count` of them from its `first` own slot, which see
/// `visible` keys (the parent's prefix, then the row's own up to the last query).
#[derive(Debug, Clone, Copy)]
struct QueryChunk {
    first: usize,
    count: usize,
    visible: usize,
}

/// Rotated queries and keys, and values, each `(slots, heads, head_dim)`.
struct Inputs {
    q: Tensor,
    k: Tensor,
    v: Tensor,
}

/// One row's keys and values, `(kv_heads, prefix + own slots, head_dim)`.
struct RowKeys {
    keys: Tensor,
    values: Tensor,
}

impl AttentionPass {
    fn inputs(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Inputs> {
        let HeadShape {
            heads,
            kv_heads,
            head_dim,
        } = self.shape;
        let slots = q.dim(0)?;
        Ok(Inputs {
            q: rotate(&q.reshape((slots, heads, head_dim))?, &self.rotation)?,
            k: rotate(&k.reshape((slots, kv_heads, head_dim))?, &self.rotation)?,
            v: v.reshape((slots, kv_heads, head_dim))?,
        })
    }

    fn chunks(&self, row: &RowSpan) -> Vec<QueryChunk> {
        let keys = row.prefix_len() + row.len;
        let per_query = (self.shape.heads * keys * 4).max(1);
        let count = (self.chunk_bytes / per_query).clamp(1, row.len.max(1));
        (0..row.len)
            .step_by(count)
            .map(|first| {
                let count = count.min(row.len - first);
                QueryChunk {
                    first,
                    count,
                    visible: row.prefix_len() + first + count,
                }
            })
            .collect()
    }

    /// The chunk's attention probabilities in f32, `(kv_heads, group × count, visible)`.
    fn probabilities(
        &self,
        queries: &Tensor,
        keys: &RowKeys,
        row: &RowSpan,
        chunk: QueryChunk,
    ) -> Result<Tensor> {
        let HeadShape { kv_heads, .. } = self.shape;
        let group = self.shape.group();
        let keys = keys.keys.narrow(1, 0, chunk.visible)?;
        let scores = queries
            .matmul(&keys.t()?)?
            .to_dtype(widened(queries.dtype()))?
            .reshape((kv_heads, group, chunk.count, chunk.visible))?;
        // Query `i` of the chunk sees the prefix and its row's keys up to its own.
        let first_visible = row.prefix_len() + chunk.first + 1;
        causal_softmax(&scores, self.shape.scale(), first_visible)?.reshape((
            kv_heads,
            group * chunk.count,
            chunk.visible,
        ))
    }
}

impl Inputs {
    /// Row `index`'s keys and values: its parent's first slots, then its own.
    fn row_keys(&self, rows: &[RowSpan], index: usize) -> Result<RowKeys> {
        let row = rows[index];
        let take = |t: &Tensor| -> Result<Tensor> {
            let own = t.narrow(0, row.start, row.len)?;
            let joined = match row.parent {
                Some((parent, seen)) => {
                    Tensor::cat(&[t.narrow(0, rows[parent].start, seen)?, own], 0)?
                }
                None => own,
            };
            joined.transpose(0, 1)?.contiguous()
        };
        Ok(RowKeys {
            keys: take(&self.k)?,
            values: take(&self.v)?,
        })
    }
}

/// Queries `start..start + count` of `t` `(slots, heads, head_dim)`, grouped by key/value
/// head: `(kv_heads, group × count, head_dim)` (head `h` serves key/value head `h / group`).
fn grouped(t: &Tensor, start: usize, count: usize, shape: HeadShape) -> Result<Tensor> {
    t.narrow(0, start, count)?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((shape.kv_heads, shape.group() * count, shape.head_dim))
}

/// `grouped`'s inverse: `(count, heads, head_dim)`.
fn ungrouped(t: &Tensor, count: usize, shape: HeadShape) -> Result<Tensor> {
    t.reshape((shape.heads, count, shape.head_dim))?
        .transpose(0, 1)?
        .contiguous()
}

impl Backward for AttentionPass {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn backward(
        &self,
        args: &[&Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (q, k, v) = (args[0].detach(), args[1].detach(), args[2].detach());
        let shape = self.shape;
        let (slots, width) = q.dims2()?;
        let dtype = q.dtype();
        let wide = widened(dtype);
        let inputs = self.inputs(&q, &k, &v)?;
        let out_grad = grad.reshape((slots, shape.heads, shape.head_dim))?;
        let mut q_grads = Vec::new();
        // Each row's gradient for its own keys and values, `(own slots, kv_heads, head_dim)`.
        let mut own_k_grads: Vec<Tensor> = Vec::with_capacity(self.rows.len());
        let mut own_v_grads: Vec<Tensor> = Vec::with_capacity(self.rows.len());
        for (index, row) in self.rows.iter().enumerate() {
            let keys = inputs.row_keys(&self.rows, index)?;
            let key_count = keys.keys.dim(1)?;
            // Sums over chunks in f32, so chunking adds no rounding under half precision.
            let (mut k_grad, mut v_grad) = (
                keys.keys.zeros_like()?.to_dtype(wide)?,
                keys.values.zeros_like()?.to_dtype(wide)?,
            );
            for chunk in self.chunks(row) {
                let queries = grouped(&inputs.q, row.start + chunk.first, chunk.count, shape)?;
                let chunk_out_grad =
                    grouped(&out_grad, row.start + chunk.first, chunk.count, shape)?;
                let probabilities = self.probabilities(&queries, &keys, row, chunk)?;
                let (chunk_keys, chunk_values) = (
                    keys.keys.narrow(1, 0, chunk.visible)?,
                    keys.values.narrow(1, 0, chunk.visible)?,
                );
                let pad = |t: Tensor| {
                    t.to_dtype(wide)?
                        .pad_with_zeros(1, 0, key_count - chunk.visible)
                };
                let values_part = probabilities
                    .to_dtype(dtype)?
                    .t()?
                    .matmul(&chunk_out_grad)?;
                v_grad = (v_grad + pad(values_part)?)?;
                let probability_grad = chunk_out_grad.matmul(&chunk_values.t()?)?.to_dtype(wide)?;
                let score_grad =
                    causal_softmax_backward(&probabilities, &probability_grad, shape.scale())?
                        .to_dtype(dtype)?;
                q_grads.push(ungrouped(
                    &score_grad.matmul(&chunk_keys)?,
                    chunk.count,
                    shape,
                )?);
                k_grad = (k_grad + pad(score_grad.t()?.matmul(&queries)?)?)?;
            }
            let prefix = row.prefix_len();
            let slot_major = |t: &Tensor, start: usize, len: usize| -> Result<Tensor> {
                t.narrow(1, start, len)?.transpose(0, 1)?.contiguous()
            };
            own_k_grads.push(slot_major(&k_grad, prefix, row.len)?);
            own_v_grads.push(slot_major(&v_grad, prefix, row.len)?);
            if let Some((parent, seen)) = row.parent {
                // The prefix's keys are the parent's own.
                let parent_len = self.rows[parent].len;
                for (grads, source) in [(&mut own_k_grads, &k_grad), (&mut own_v_grads, &v_grad)] {
                    let part =
                        slot_major(source, 0, seen)?.pad_with_zeros(0, 0, parent_len - seen)?;
                    grads[parent] = (&grads[parent] + part)?;
                }
            }
        }
        let q_grad = rotate_back(&Tensor::cat(&q_grads, 0)?, &self.rotation)?;
        let k_grad = Tensor::cat(&own_k_grads, 0)?.to_dtype(dtype)?;
        let k_grad = rotate_back(&k_grad, &self.rotation)?;
        let v_grad = Tensor::cat(&own_v_grads, 0)?.to_dtype(dtype)?;
        let kv_width = shape.kv_heads * shape.head_dim;
        Ok(vec![
            Some(q_grad.reshape((slots, width))?),
            Some(k_grad.reshape((slots, kv_width))?),
            Some(v_grad.reshape((slots, kv_width))?),
        ])
    }
}
