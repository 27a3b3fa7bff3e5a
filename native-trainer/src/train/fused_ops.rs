//! Which of the training model's memory-saving ops are on. Each one replaces a chain of candle
//! primitives (whose every intermediate autograd keeps until the backward pass ends) by one
//! function with its own backward pass (`custom_backward.rs`) that keeps only its arguments
//! and output, or computes in pieces what the chain computes whole. Each gives the chain's
//! values and gradients (to float rounding); all are on by default, and the tests compare
//! each one switched off against on.

/// The fused ops, each on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedOps {
    /// The output head, log-softmax and the target's pick a slice of the vocabulary at a
    /// time, forward and backward (`vocabulary_logps.rs`), instead of positions × vocabulary
    /// logits and their log-softmax kept whole.
    pub vocabulary: bool,
    /// RoPE and causal attention over a few queries at a time, recomputed in the backward
    /// pass (`fused_attention.rs`), instead of every head's scores and probabilities kept.
    pub attention: bool,
    /// RMSNorm as one op (`rms_norm.rs`) instead of six.
    pub rms_norm: bool,
    /// A frozen linear layer with its bias and LoRA adapter as one op (`fused_linear.rs`).
    pub linear: bool,
    /// SwiGLU and the down projection as one op (`fused_mlp.rs`), which keeps the gate and up
    /// projections but not their product.
    pub mlp: bool,
    /// The most bytes of f32 scores (attention's, or the vocabulary's logits) one chunk of
    /// the chunked ops holds.
    pub chunk_bytes: usize,
}

impl FusedOps {
    /// 32 MiB: 2,200 tokens of the vocabulary for 3,700 positions, or 600 queries of 14 heads
    /// over 1,000 keys.
    pub const CHUNK_BYTES: usize = 32 << 20;

    /// Every fused op: what training uses.
    pub const ALL: Self = Self {
        vocabulary: true,
        attention: true,
        rms_norm: true,
        linear: true,
        mlp: true,
        chunk_bytes: Self::CHUNK_BYTES,
    };

    /// None: every op a chain of candle primitives, as autograd sees them.
    pub const NONE: Self = Self {
        vocabulary: false,
        attention: false,
        rms_norm: false,
        linear: false,
        mlp: false,
        chunk_bytes: Self::CHUNK_BYTES,
    };

    /// Each op alone, with its name: what the tests switch one at a time.
    pub fn each() -> [(&'static str, Self); 5] {
        let only = |set: fn(&mut Self)| {
            let mut ops = Self::NONE;
            set(&mut ops);
            ops
        };
        [
            ("vocabulary", only(|o| o.vocabulary = true)),
            ("attention", only(|o| o.attention = true)),
            ("rms_norm", only(|o| o.rms_norm = true)),
            ("linear", only(|o| o.linear = true)),
            ("mlp", only(|o| o.mlp = true)),
        ]
    }
}

impl Default for FusedOps {
    fn default() -> Self {
        Self::ALL
    }
}
