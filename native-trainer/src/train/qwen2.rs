//! A differentiable Qwen2 for training, readable in one sitting. DPO needs gradients through
//! every weight and the logits of every position; candle-transformers' Qwen2 uses fused
//! RMSNorm, softmax and RoPE ops without a backward pass and returns only the last position.
//! This one is built from candle primitives that all have a backward pass:
//!
//! - RMSNorm: `x / sqrt(mean(x²) + eps) * w`
//! - RoPE (NeoX halves, as Qwen2): `[x1 cos − x2 sin, x1 sin + x2 cos]` on precomputed tables
//! - attention: `softmax(q kᵀ / √d + causal mask) v`, key/value heads repeated for GQA
//! - SwiGLU MLP: `down(silu(gate(x)) · up(x))`
//!
//! Weights use Hugging Face names (`model.layers.N.self_attn.q_proj.weight`, …) so the same
//! model loads from a transformers checkpoint or from a GGUF renamed by `gguf_import`.
//! LoRA adapters (`lora.rs`) attach to the linear layers; `forward` uses them and
//! `forward_reference` leaves them out (DPO's reference model without a second copy).
//! Sequences are right-padded: with a causal mask, real tokens never see the padding after
//! them. A batch can share prefixes (`token_layout.rs`): DPO's chosen and rejected answers
//! attend to one copy of their prompt.
//!
//! Mixed precision follows PyTorch autocast as transformers' Qwen2 runs under it: activations
//! in the compute dtype (bf16 or f16; frozen weights are stored in it, trainable ones are f32
//! and cast where used), RMSNorm's statistics and the attention softmax in f32. With f32 the
//! casts are no-ops.
//!
//! Gradient checkpointing (`checkpointed_hidden_states`) keeps only each decoder layer's
//! input; `LayerTape::backward` recomputes one layer at a time during the backward pass.
//!
//! Memory: autograd keeps every intermediate of a chain of primitives until the backward
//! pass ends, so by default (`FusedOps::ALL`) RMSNorm, RoPE with attention, frozen linear
//! layers with their bias and LoRA, and SwiGLU with the down projection each run as one op
//! with its own backward pass (`fused_*.rs`, `rms_norm.rs`), which keeps only its inputs and
//! output; `FusedOps::NONE` runs the chains above, which the tests compare against.

use candle_core::backprop::GradStore;
use candle_core::{D, DType, Device, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::fused_attention::{HeadShape, fused_attention};
use super::fused_linear::{AdapterWeights, fused_linear};
use super::fused_mlp::{fused_gated_down, fused_swiglu};
use super::fused_ops::FusedOps;
use super::linear_product::linear_product;
use super::lora::{LoraAdapter, LoraConfig};
use super::optimization::add_gradients;
use super::precision::widened;
use super::qwen2_config::Qwen2Config;
use super::rms_norm::{fused_rms_norm, rms_norm};
use super::rope::{Rotary, rotate};
use super::token_layout::{RowSpan, TokenLayout};

/// Whether a forward pass includes the LoRA adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapters {
    On,
    Off,
}

/// `y = x Wᵀ (+ b)`, weight `(out, in)` as in PyTorch, plus an optional LoRA adapter.
struct Linear {
    /// transformers' name without `.weight` (`model.layers.0.self_attn.q_proj`).
    name: String,
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraAdapter>,
}

impl Linear {
    fn new(
        vb: &VarBuilder,
        name: &str,
        (inputs, outputs): (usize, usize),
        bias: bool,
    ) -> Result<Self> {
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let weight = vb.get_with_hints((outputs, inputs), &format!("{name}.weight"), init)?;
        let bias = if bias {
            Some(vb.get_with_hints(outputs, &format!("{name}.bias"), Init::Const(0.0))?)
        } else {
            None
        };
        let prefix = vb.prefix();
        Ok(Self {
            name: if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            },
            weight,
            bias,
            lora: None,
        })
    }

    /// `fused`: as one op (`fused_linear.rs`) when the weight and bias are frozen.
    fn forward(&self, x: &Tensor, adapters: Adapters, fused: bool) -> Result<Tensor> {
        let frozen = !self.weight.track_op() && !self.bias.as_ref().is_some_and(|b| b.track_op());
        if fused && frozen {
            let adapter = match adapters {
                Adapters::On => self.lora.as_ref().map(|lora| AdapterWeights {
                    a: &lora.a,
                    b: &lora.b,
                    scale: lora.scale,
                }),
                Adapters::Off => None,
            };
            return fused_linear(x, &self.weight, self.bias.as_ref(), adapter);
        }
        let mut y = linear_product(x, &self.weight)?;
        if let (Some(lora), Adapters::On) = (&self.lora, adapters) {
            y = (y + lora.delta(x)?)?;
        }
        match &self.bias {
            Some(bias) => y.broadcast_add(&bias.to_dtype(y.dtype())?),
            None => Ok(y),
        }
    }

    /// The layer's short name (`q_proj`).
    fn module(&self) -> &str {
        self.name.rsplit('.').next().unwrap_or(&self.name)
    }

    fn add_lora(&mut self, config: &LoraConfig, vb: &VarBuilder) -> Result<()> {
        let (outputs, inputs) = self.weight.dims2()?;
        let adapter = LoraAdapter::new(&vb.pp(&self.name), (inputs, outputs), config)?;
        self.lora = Some(adapter);
        Ok(())
    }

    fn detached(&self) -> Self {
        Self {
            name: self.name.clone(),
            weight: self.weight.detach(),
            bias: self.bias.as_ref().map(Tensor::detach),
            lora: self.lora.as_ref().map(LoraAdapter::detached),
        }
    }

    /// The weight with any adapter folded in.
    fn merged_weight(&self) -> Result<Tensor> {
        match &self.lora {
            Some(lora) => lora.merge_into(&self.weight),
            None => Ok(self.weight.clone()),
        }
    }
}

fn norm_weight(vb: &VarBuilder, name: &str, size: usize) -> Result<Tensor> {
    vb.get_with_hints(size, &format!("{name}.weight"), Init::Const(1.0))
}

/// What every layer needs to know about the batch: its layout, each slot's rotation, which
/// fused ops run, and the masks the unfused attention needs.
struct BatchContext<'a> {
    layout: &'a TokenLayout,
    rotation: (Tensor, Tensor),
    fused: FusedOps,
    /// Every row of `layout`, for the fused attention.
    spans: Vec<RowSpan>,
    /// Unfused attention only: the additive causal mask of the primary rows, `(width,
    /// width)`, in the softmax's dtype; `TokenLayout::continuation_mask`; the parents.
    masks: Option<AttentionMasks>,
}

struct AttentionMasks {
    causal: Tensor,
    continuation: Option<Tensor>,
    parents: Option<Tensor>,
}

impl BatchContext<'_> {
    fn norm(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        if self.fused.rms_norm {
            fused_rms_norm(x, weight, eps)
        } else {
            rms_norm(x, weight, eps)
        }
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(vb: &VarBuilder, config: &Qwen2Config) -> Result<Self> {
        let (d, head_dim) = (config.hidden_size, config.head_dim());
        let kv = config.num_key_value_heads * head_dim;
        Ok(Self {
            q_proj: Linear::new(vb, "self_attn.q_proj", (d, d), true)?,
            k_proj: Linear::new(vb, "self_attn.k_proj", (d, kv), true)?,
            v_proj: Linear::new(vb, "self_attn.v_proj", (d, kv), true)?,
            o_proj: Linear::new(vb, "self_attn.o_proj", (d, d), false)?,
            heads: config.num_attention_heads,
            kv_heads: config.num_key_value_heads,
            head_dim,
        })
    }

    /// `x`: `(tokens, hidden)` in the layout of `context`.
    fn forward(&self, x: &Tensor, context: &BatchContext, adapters: Adapters) -> Result<Tensor> {
        let fused = context.fused.linear;
        let q = self.q_proj.forward(x, adapters, fused)?;
        let k = self.k_proj.forward(x, adapters, fused)?;
        let v = self.v_proj.forward(x, adapters, fused)?;
        let attended = match &context.masks {
            None => fused_attention(
                (&q, &k, &v),
                &context.rotation,
                &context.spans,
                HeadShape {
                    heads: self.heads,
                    kv_heads: self.kv_heads,
                    head_dim: self.head_dim,
                },
                context.fused.chunk_bytes,
            )?,
            Some(masks) => self.unfused(q, k, v, context, masks)?,
        };
        self.o_proj.forward(&attended, adapters, fused)
    }

    /// RoPE and attention as candle primitives: `(tokens, heads × head_dim)`.
    fn unfused(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        context: &BatchContext,
        masks: &AttentionMasks,
    ) -> Result<Tensor> {
        let tokens = q.dim(0)?;
        let heads_of = |y: Tensor, heads: usize| y.reshape((tokens, heads, self.head_dim));
        let q = rotate(&heads_of(q, self.heads)?, &context.rotation)?;
        let k = rotate(&heads_of(k, self.kv_heads)?, &context.rotation)?;
        let v = heads_of(v, self.kv_heads)?;
        // `(rows, heads, width, head_dim)` views of a run of token slots.
        let rows_of = |t: &Tensor, start: usize, (rows, width): (usize, usize)| -> Result<Tensor> {
            let heads = t.dim(1)?;
            t.narrow(0, start, rows * width)?
                .reshape((rows, width, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let primary = context.layout.primary_dims()?;
        let primary_slots = primary.0 * primary.1;
        let (k_primary, v_primary) = (rows_of(&k, 0, primary)?, rows_of(&v, 0, primary)?);
        let mut outputs = vec![self.attend(
            &rows_of(&q, 0, primary)?,
            &self.repeat_kv(k_primary.clone())?,
            &self.repeat_kv(v_primary.clone())?,
            &masks.causal,
        )?];
        if let (Some(dims), Some(parents), Some(mask)) = (
            context.layout.continuation_dims()?,
            &masks.parents,
            &masks.continuation,
        ) {
            let keys = Tensor::cat(
                &[
                    k_primary.index_select(parents, 0)?,
                    rows_of(&k, primary_slots, dims)?,
                ],
                2,
            )?;
            let values = Tensor::cat(
                &[
                    v_primary.index_select(parents, 0)?,
                    rows_of(&v, primary_slots, dims)?,
                ],
                2,
            )?;
            outputs.push(self.attend(
                &rows_of(&q, primary_slots, dims)?,
                &self.repeat_kv(keys)?,
                &self.repeat_kv(values)?,
                mask,
            )?);
        }
        Tensor::cat(&outputs, 0)
    }

    /// `softmax(q kᵀ / √d + mask) v` for `(rows, heads, queries, head_dim)` queries; returns
    /// `(rows × queries, heads × head_dim)`. The softmax runs in the mask's dtype (f32 under
    /// mixed precision).
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (rows, _, queries, _) = q.dims4()?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?
            .to_dtype(mask.dtype())?
            .broadcast_add(mask)?;
        let probabilities = candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(q.dtype())?;
        probabilities
            .matmul(v)?
            .transpose(1, 2)?
            .reshape((rows * queries, self.heads * self.head_dim))
    }

    /// Grouped-query attention: each key/value head serves `heads / kv_heads` query heads.
    fn repeat_kv(&self, x: Tensor) -> Result<Tensor> {
        let repeats = self.heads / self.kv_heads;
        if repeats == 1 {
            return Ok(x);
        }
        let (batch, kv_heads, tokens, dim) = x.dims4()?;
        x.unsqueeze(2)?
            .broadcast_as((batch, kv_heads, repeats, tokens, dim))?
            .contiguous()?
            .reshape((batch, kv_heads * repeats, tokens, dim))
    }
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(vb: &VarBuilder, config: &Qwen2Config) -> Result<Self> {
        let (d, ff) = (config.hidden_size, config.intermediate_size);
        Ok(Self {
            gate_proj: Linear::new(vb, "mlp.gate_proj", (d, ff), false)?,
            up_proj: Linear::new(vb, "mlp.up_proj", (d, ff), false)?,
            down_proj: Linear::new(vb, "mlp.down_proj", (ff, d), false)?,
        })
    }

    fn forward(&self, x: &Tensor, adapters: Adapters, fused: FusedOps) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x, adapters, fused.linear)?;
        let up = self.up_proj.forward(x, adapters, fused.linear)?;
        let down = &self.down_proj;
        let down_adapted = adapters == Adapters::On && down.lora.is_some();
        if !fused.mlp {
            return down.forward(&(gate.silu()? * up)?, adapters, fused.linear);
        }
        if !down_adapted && down.bias.is_none() && !down.weight.track_op() {
            return fused_gated_down(&gate, &up, &down.weight);
        }
        down.forward(&fused_swiglu(&gate, &up)?, adapters, fused.linear)
    }
}

struct Block {
    input_layernorm: Tensor,
    attention: Attention,
    post_attention_layernorm: Tensor,
    mlp: Mlp,
}

impl Block {
    /// The layer on hidden states `x` `(slots, hidden)`: attention and MLP, each after its
    /// RMSNorm and added to the residual stream.
    fn forward(
        &self,
        x: &Tensor,
        context: &BatchContext,
        adapters: Adapters,
        eps: f64,
    ) -> Result<Tensor> {
        let normed = context.norm(x, &self.input_layernorm, eps)?;
        let x = (x + self.attention.forward(&normed, context, adapters)?)?;
        let normed = context.norm(&x, &self.post_attention_layernorm, eps)?;
        let mixed = self.mlp.forward(&normed, adapters, context.fused)?;
        x + mixed
    }

    fn detached(&self) -> Self {
        let (a, m) = (&self.attention, &self.mlp);
        Self {
            input_layernorm: self.input_layernorm.detach(),
            attention: Attention {
                q_proj: a.q_proj.detached(),
                k_proj: a.k_proj.detached(),
                v_proj: a.v_proj.detached(),
                o_proj: a.o_proj.detached(),
                ..*a
            },
            post_attention_layernorm: self.post_attention_layernorm.detach(),
            mlp: Mlp {
                gate_proj: m.gate_proj.detached(),
                up_proj: m.up_proj.detached(),
                down_proj: m.down_proj.detached(),
            },
        }
    }

    fn linears(&self) -> [&Linear; 7] {
        let (a, m) = (&self.attention, &self.mlp);
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
    }

    fn linears_mut(&mut self) -> [&mut Linear; 7] {
        let (a, m) = (&mut self.attention, &mut self.mlp);
        [
            &mut a.q_proj,
            &mut a.k_proj,
            &mut a.v_proj,
            &mut a.o_proj,
            &mut m.gate_proj,
            &mut m.up_proj,
            &mut m.down_proj,
        ]
    }
}

pub struct Qwen2 {
    pub config: Qwen2Config,
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: Tensor,
    /// `None` when tied to the embedding.
    lm_head: Option<Tensor>,
    rotary: Rotary,
    /// The activations' dtype: f32, or bf16 / f16 under mixed precision.
    compute_dtype: DType,
    fused: FusedOps,
}

impl Qwen2 {
    /// Builds the model from `vb` (a checkpoint's tensors, or a `VarMap` that creates
    /// trainable variables: N(0, 0.02) matrices, zero biases, unit norms, as transformers
    /// initialises Qwen2).
    pub fn new(config: &Qwen2Config, vb: &VarBuilder) -> Result<Self> {
        let (d, vocab) = (config.hidden_size, config.vocab_size);
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let embed_tokens = vb.get_with_hints((vocab, d), "model.embed_tokens.weight", init)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("model.layers.{i}"));
                Ok(Block {
                    input_layernorm: norm_weight(&vb, "input_layernorm", d)?,
                    attention: Attention::new(&vb, config)?,
                    post_attention_layernorm: norm_weight(&vb, "post_attention_layernorm", d)?,
                    mlp: Mlp::new(&vb, config)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = norm_weight(vb, "model.norm", d)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(vb.get_with_hints((vocab, d), "lm_head.weight", init)?)
        };
        let rotary = Rotary::new(config, widened(vb.dtype()), vb.device())?;
        Ok(Self {
            config: config.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            compute_dtype: vb.dtype(),
            fused: FusedOps::default(),
        })
    }

    /// Uses `fused` (every fused op by default; `FusedOps::NONE` for candle's primitives only).
    pub fn set_fused_ops(&mut self, fused: FusedOps) {
        self.fused = fused;
    }

    pub fn fused_ops(&self) -> FusedOps {
        self.fused
    }

    /// The same model on the same storage with no trainable variable: its forward passes
    /// build no autograd graph, so scoring without training (evaluation) keeps nothing for a
    /// backward pass.
    pub fn detached(&self) -> Self {
        Self {
            config: self.config.clone(),
            embed_tokens: self.embed_tokens.detach(),
            layers: self.layers.iter().map(Block::detached).collect(),
            norm: self.norm.detach(),
            lm_head: self.lm_head.as_ref().map(Tensor::detach),
            rotary: self.rotary.clone(),
            compute_dtype: self.compute_dtype,
            fused: self.fused,
        }
    }

    /// Runs the activations in `dtype` (bf16 or f16 for mixed precision; f32 by default, or
    /// the dtype of the tensors the model was built from).
    pub fn computing_in(mut self, dtype: DType) -> Self {
        self.compute_dtype = dtype;
        self
    }

    pub fn compute_dtype(&self) -> DType {
        self.compute_dtype
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    /// Logits at every position, `(batch, tokens, vocab)`, for right-padded `input_ids`
    /// `(batch, tokens)` starting at position 0, with the LoRA adapters if any.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.logits(&self.hidden_states(input_ids, true)?)
    }

    /// As `forward` without the adapters: the model training started from.
    pub fn forward_reference(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.logits(&self.hidden_states(input_ids, false)?)
    }

    /// The final-norm hidden states at every position, `(batch, tokens, hidden)`, with or
    /// without the adapters. Training scores only some positions: `logits` of a selection of
    /// these rows costs a fraction of the whole vocabulary projection.
    pub fn hidden_states(&self, input_ids: &Tensor, with_adapters: bool) -> Result<Tensor> {
        let (batch, tokens) = input_ids.dims2()?;
        self.layout_hidden_states(&TokenLayout::plain(input_ids), with_adapters)?
            .reshape((batch, tokens, self.config.hidden_size))
    }

    /// The final-norm hidden states of every token slot of `layout`, `(slots, hidden)`.
    pub fn layout_hidden_states(
        &self,
        layout: &TokenLayout,
        with_adapters: bool,
    ) -> Result<Tensor> {
        let adapters = if with_adapters {
            Adapters::On
        } else {
            Adapters::Off
        };
        self.run(layout, adapters)
    }

    /// The output head on hidden states `(…, hidden)` → `(…, vocab)`, in the compute dtype.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        linear_product(hidden, self.output_head())
    }

    /// The output head's weight, `(vocab, hidden)`: the embedding's when tied.
    pub fn output_head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// Attaches LoRA adapters to the `config.target_modules` of every layer, created under
    /// `vb` (a `VarMap`'s builder makes them the trainable variables).
    pub fn add_lora(&mut self, config: &LoraConfig, vb: &VarBuilder) -> Result<()> {
        config.validate().map_err(candle_core::Error::msg)?;
        for block in &mut self.layers {
            for linear in block.linears_mut() {
                if config.target_modules.iter().any(|m| m == linear.module()) {
                    linear.add_lora(config, vb)?;
                }
            }
        }
        Ok(())
    }

    /// Every weight under its transformers name, adapters folded in (for export).
    pub fn merged_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut weights = vec![
            (
                "model.embed_tokens.weight".to_string(),
                self.embed_tokens.clone(),
            ),
            ("model.norm.weight".to_string(), self.norm.clone()),
        ];
        if let Some(head) = &self.lm_head {
            weights.push(("lm_head.weight".to_string(), head.clone()));
        }
        for (i, block) in self.layers.iter().enumerate() {
            let prefix = format!("model.layers.{i}");
            weights.push((
                format!("{prefix}.input_layernorm.weight"),
                block.input_layernorm.clone(),
            ));
            weights.push((
                format!("{prefix}.post_attention_layernorm.weight"),
                block.post_attention_layernorm.clone(),
            ));
            for linear in block.linears() {
                weights.push((format!("{}.weight", linear.name), linear.merged_weight()?));
                if let Some(bias) = &linear.bias {
                    weights.push((format!("{}.bias", linear.name), bias.clone()));
                }
            }
        }
        Ok(weights)
    }

    /// The token embeddings of `layout`'s slots, in the compute dtype.
    fn embed(&self, layout: &TokenLayout) -> Result<Tensor> {
        self.embed_tokens
            .index_select(&layout.flat_ids()?, 0)?
            .to_dtype(self.compute_dtype)
    }

    fn batch_context<'a>(&self, layout: &'a TokenLayout) -> Result<BatchContext<'a>> {
        let device = self.embed_tokens.device();
        let (_, width) = layout.primary_dims()?;
        let wide = widened(self.compute_dtype);
        let masks = if self.fused.attention {
            None
        } else {
            Some(AttentionMasks {
                causal: causal_mask(width, wide, device)?,
                continuation: layout.continuation_mask(wide, device)?,
                parents: layout.parent_index(device)?,
            })
        };
        Ok(BatchContext {
            layout,
            rotation: self
                .rotary
                .at(&layout.positions(device)?, self.compute_dtype)?,
            fused: self.fused,
            spans: layout.spans()?,
            masks,
        })
    }

    fn run(&self, layout: &TokenLayout, adapters: Adapters) -> Result<Tensor> {
        let context = self.batch_context(layout)?;
        let eps = self.config.rms_norm_eps;
        let mut x = self.embed(layout)?;
        for block in &self.layers {
            x = block.forward(&x, &context, adapters, eps)?;
        }
        context.norm(&x, &self.norm, eps)
    }

    /// As `layout_hidden_states` with the adapters, keeping only each decoder layer's input:
    /// the layers run without a graph, and the returned hidden states hang off a leaf standing
    /// for the last layer's output. After the loss's backward pass, `LayerTape::backward`
    /// carries the gradient down through the layers, recomputing one at a time.
    pub fn checkpointed_hidden_states<'a>(
        &'a self,
        layout: &'a TokenLayout,
    ) -> Result<(Tensor, LayerTape<'a>)> {
        let context = self.batch_context(layout)?;
        let eps = self.config.rms_norm_eps;
        let mut x = self.embed(layout)?.detach();
        let mut inputs = Vec::with_capacity(self.layers.len());
        for block in &self.layers {
            let output = block.forward(&x, &context, Adapters::On, eps)?.detach();
            inputs.push(x);
            x = output;
        }
        let top = Var::from_tensor(&x)?;
        let hidden = context.norm(top.as_tensor(), &self.norm, eps)?;
        let tape = LayerTape {
            model: self,
            layout,
            inputs,
            top,
        };
        Ok((hidden, tape))
    }
}

/// What the backward pass of `Qwen2::checkpointed_hidden_states` needs: each decoder layer's
/// input (no graph) and the leaf that stands for the last layer's output.
pub struct LayerTape<'a> {
    model: &'a Qwen2,
    layout: &'a TokenLayout,
    inputs: Vec<Tensor>,
    top: Var,
}

impl LayerTape<'_> {
    /// Bytes of the layer inputs the tape keeps.
    pub fn saved_bytes(&self) -> usize {
        self.inputs
            .iter()
            .map(|input| super::memory_profile::storage_bytes(input).1)
            .sum()
    }

    /// Adds to `grads` the gradients of `vars` through every decoder layer (and the token
    /// embedding), from the gradient `grads` holds for the last layer's output: each layer is
    /// run again from its saved input with a graph, and `sum(output · gradient)` is
    /// differentiated, which gives that layer's parameter gradients and its input's gradient.
    pub fn backward(self, grads: &mut GradStore, vars: &[Var]) -> Result<()> {
        let Some(mut gradient) = grads.remove(self.top.as_tensor()) else {
            return Ok(()); // Nothing reached the layers.
        };
        let model = self.model;
        let context = model.batch_context(self.layout)?;
        let eps = model.config.rms_norm_eps;
        for (block, input) in model.layers.iter().zip(&self.inputs).rev() {
            let x = Var::from_tensor(input)?;
            let output = block.forward(x.as_tensor(), &context, Adapters::On, eps)?;
            let mut layer = (output * &gradient)?.sum_all()?.backward()?;
            gradient = layer.remove(x.as_tensor()).ok_or_else(|| {
                candle_core::Error::Msg("no gradient reached a layer input".into())
            })?;
            add_gradients(grads, &layer, vars)?;
        }
        if model.embed_tokens.track_op() {
            let embedded = model.embed(self.layout)?;
            let layer = (embedded * &gradient)?.sum_all()?.backward()?;
            add_gradients(grads, &layer, vars)?;
        }
        Ok(())
    }
}

/// 0 where a query may attend (key position ≤ query position), −∞ elsewhere.
fn causal_mask(tokens: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..tokens)
        .flat_map(|query| {
            (0..tokens).map(move |key| if key <= query { 0.0 } else { f32::NEG_INFINITY })
        })
        .collect();
    Tensor::from_vec(values, (tokens, tokens), device)?.to_dtype(dtype)
}
