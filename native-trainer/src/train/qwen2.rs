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

use candle_core::backprop::GradStore;
use candle_core::{D, DType, Device, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};
use shared::ModelHyperparameters;

use super::linear_product::linear_product;
use super::lora::{LoraAdapter, LoraConfig};
use super::optimization::add_gradients;
use super::token_layout::TokenLayout;

/// Whether a forward pass includes the LoRA adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapters {
    On,
    Off,
}

/// The hyperparameters, with transformers' `config.json` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
}

fn default_max_positions() -> usize {
    32_768
}

impl Qwen2Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The same model as a GGUF header describes it.
    pub fn from_hyperparameters(hp: &ModelHyperparameters) -> Self {
        Self {
            vocab_size: hp.vocab_size,
            hidden_size: hp.embedding_length,
            intermediate_size: hp.feed_forward_length,
            num_hidden_layers: hp.block_count,
            num_attention_heads: hp.head_count,
            num_key_value_heads: hp.head_count_kv,
            rope_theta: f64::from(hp.rope_freq_base),
            rms_norm_eps: f64::from(hp.rms_norm_eps),
            tie_word_embeddings: hp.tied_embeddings,
            max_position_embeddings: hp.context_length,
        }
    }
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

    fn forward(&self, x: &Tensor, adapters: Adapters) -> Result<Tensor> {
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

/// The dtype statistics and softmaxes run in: f32 for half-precision activations, else the
/// activations' own.
fn widened(dtype: DType) -> DType {
    match dtype {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}

/// RMSNorm with its statistics in f32 (or wider) whatever the compute dtype (as transformers'
/// Qwen2).
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let wide = x.to_dtype(widened(x.dtype()))?;
    let mean_square = wide.sqr()?.mean_keepdim(D::Minus1)?;
    wide.broadcast_div(&(mean_square + eps)?.sqrt()?)?
        .to_dtype(x.dtype())?
        .broadcast_mul(&weight.to_dtype(x.dtype())?)
}

/// cos and sin of position × frequency, `(max_positions, head_dim / 2)`.
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(config: &Qwen2Config, dtype: DType, device: &Device) -> Result<Self> {
        let dim = config.head_dim();
        let inverse_frequencies: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f64 / dim as f64))
            .collect();
        let positions = config.max_position_embeddings.min(32_768);
        let angles: Vec<f64> = (0..positions)
            .flat_map(|p| inverse_frequencies.iter().map(move |f| p as f64 * f))
            .collect();
        let angles = Tensor::from_vec(angles, (positions, dim / 2), device)?;
        Ok(Self {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }

    /// cos and sin at each token's position, `(tokens, 1, head_dim / 2)` each, in `dtype`.
    fn at(&self, positions: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos
                .index_select(positions, 0)?
                .unsqueeze(1)?
                .to_dtype(dtype)?,
            self.sin
                .index_select(positions, 0)?
                .unsqueeze(1)?
                .to_dtype(dtype)?,
        ))
    }
}

/// Rotates `x` `(tokens, heads, head_dim)` by each token's `(cos, sin)` from `Rotary::at`.
fn rotate(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor> {
    let dim = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, dim / 2)?;
    let x2 = x.narrow(D::Minus1, dim / 2, dim / 2)?;
    let rotated_1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let rotated_2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
    Tensor::cat(&[rotated_1, rotated_2], D::Minus1)
}

/// What every layer's attention needs to know about the batch's layout.
struct AttentionContext<'a> {
    layout: &'a TokenLayout,
    rotation: (Tensor, Tensor),
    /// Additive causal mask of the primary rows, `(width, width)`, in the softmax's dtype.
    causal: Tensor,
    /// See `TokenLayout::continuation_mask`.
    continuation_mask: Option<Tensor>,
    parents: Option<Tensor>,
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
    fn forward(
        &self,
        x: &Tensor,
        context: &AttentionContext,
        adapters: Adapters,
    ) -> Result<Tensor> {
        let tokens = x.dim(0)?;
        let heads_of = |y: Tensor, heads: usize| y.reshape((tokens, heads, self.head_dim));
        let q = rotate(
            &heads_of(self.q_proj.forward(x, adapters)?, self.heads)?,
            &context.rotation,
        )?;
        let k = rotate(
            &heads_of(self.k_proj.forward(x, adapters)?, self.kv_heads)?,
            &context.rotation,
        )?;
        let v = heads_of(self.v_proj.forward(x, adapters)?, self.kv_heads)?;
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
            &context.causal,
        )?];
        if let (Some(dims), Some(parents), Some(mask)) = (
            context.layout.continuation_dims()?,
            &context.parents,
            &context.continuation_mask,
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
        self.o_proj.forward(&Tensor::cat(&outputs, 0)?, adapters)
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

    fn forward(&self, x: &Tensor, adapters: Adapters) -> Result<Tensor> {
        let gated =
            (self.gate_proj.forward(x, adapters)?.silu()? * self.up_proj.forward(x, adapters)?)?;
        self.down_proj.forward(&gated, adapters)
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
        context: &AttentionContext,
        adapters: Adapters,
        eps: f64,
    ) -> Result<Tensor> {
        let attended =
            self.attention
                .forward(&rms_norm(x, &self.input_layernorm, eps)?, context, adapters)?;
        let x = (x + attended)?;
        let mixed = self.mlp.forward(
            &rms_norm(&x, &self.post_attention_layernorm, eps)?,
            adapters,
        )?;
        x + mixed
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
        })
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
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        linear_product(hidden, head)
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

    fn attention_context<'a>(&self, layout: &'a TokenLayout) -> Result<AttentionContext<'a>> {
        let device = self.embed_tokens.device();
        let (_, width) = layout.primary_dims()?;
        Ok(AttentionContext {
            layout,
            rotation: self
                .rotary
                .at(&layout.positions(device)?, self.compute_dtype)?,
            causal: causal_mask(width, widened(self.compute_dtype), device)?,
            continuation_mask: layout.continuation_mask(widened(self.compute_dtype), device)?,
            parents: layout.parent_index(device)?,
        })
    }

    fn run(&self, layout: &TokenLayout, adapters: Adapters) -> Result<Tensor> {
        let context = self.attention_context(layout)?;
        let eps = self.config.rms_norm_eps;
        let mut x = self.embed(layout)?;
        for block in &self.layers {
            x = block.forward(&x, &context, adapters, eps)?;
        }
        rms_norm(&x, &self.norm, eps)
    }

    /// As `layout_hidden_states` with the adapters, keeping only each decoder layer's input:
    /// the layers run without a graph, and the returned hidden states hang off a leaf standing
    /// for the last layer's output. After the loss's backward pass, `LayerTape::backward`
    /// carries the gradient down through the layers, recomputing one at a time.
    pub fn checkpointed_hidden_states<'a>(
        &'a self,
        layout: &'a TokenLayout,
    ) -> Result<(Tensor, LayerTape<'a>)> {
        let context = self.attention_context(layout)?;
        let eps = self.config.rms_norm_eps;
        let mut x = self.embed(layout)?.detach();
        let mut inputs = Vec::with_capacity(self.layers.len());
        for block in &self.layers {
            let output = block.forward(&x, &context, Adapters::On, eps)?.detach();
            inputs.push(x);
            x = output;
        }
        let top = Var::from_tensor(&x)?;
        let hidden = rms_norm(top.as_tensor(), &self.norm, eps)?;
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
    /// Adds to `grads` the gradients of `vars` through every decoder layer (and the token
    /// embedding), from the gradient `grads` holds for the last layer's output: each layer is
    /// run again from its saved input with a graph, and `sum(output · gradient)` is
    /// differentiated, which gives that layer's parameter gradients and its input's gradient.
    pub fn backward(self, grads: &mut GradStore, vars: &[Var]) -> Result<()> {
        let Some(mut gradient) = grads.remove(self.top.as_tensor()) else {
            return Ok(()); // Nothing reached the layers.
        };
        let model = self.model;
        let context = model.attention_context(self.layout)?;
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
