//! Reading the next-token scores back cheaply: the repetition penalty and a two-pass top-K
//! selection run on the GPU (`kernels/repetition_penalty.wgsl`, `top_candidates_*.wgsl`), so a
//! step reads back at most `GPU_TOP_K` (token, logit) pairs — 512 bytes — instead of the
//! vocabulary.

use super::gpu_context::GpuContext;

/// Candidates the GPU selection returns; sampling with `top_k` up to this (and greedy) needs
/// nothing more.
pub const GPU_TOP_K: usize = 64;
/// Slices of the vocabulary in the first pass (`SLICES` in the kernels).
const SLICES: usize = 256;
/// Most distinct tokens the penalty kernel takes per step.
pub const MAX_PENALIZED_TOKENS: usize = 1024;

/// The selection is compiled for these candidate counts; a step uses the smallest that covers
/// what sampling needs (greedy decoding needs one, which is much cheaper to select).
const CANDIDATE_COUNTS: [usize; 2] = [1, GPU_TOP_K];

/// The two passes of the top-K selection for one K.
pub struct TopCandidates {
    pub k: usize,
    pub slices: wgpu::ComputePipeline,
    pub merge: wgpu::ComputePipeline,
}

pub struct SamplingKernels {
    pub penalty: wgpu::ComputePipeline,
    /// One per entry of `CANDIDATE_COUNTS`, in increasing K.
    pub top: Vec<TopCandidates>,
}

impl SamplingKernels {
    pub fn new(ctx: &GpuContext) -> Self {
        let top = CANDIDATE_COUNTS
            .iter()
            .map(|&k| {
                let with_k = |source: &str| format!("const K: u32 = {k}u;\n{source}");
                TopCandidates {
                    k,
                    slices: ctx.compute_pipeline(
                        &format!("top {k} candidates (slices)"),
                        &with_k(include_str!("kernels/top_candidates_slices.wgsl")),
                    ),
                    merge: ctx.compute_pipeline(
                        &format!("top {k} candidates (merge)"),
                        &with_k(include_str!("kernels/top_candidates_merge.wgsl")),
                    ),
                }
            })
            .collect();
        Self {
            penalty: ctx.compute_pipeline(
                "repetition penalty",
                include_str!("kernels/repetition_penalty.wgsl"),
            ),
            top,
        }
    }

    /// Index into `top` of the cheapest selection that yields `needed` candidates, if any.
    pub fn top_for(&self, needed: usize) -> Option<usize> {
        self.top.iter().position(|top| top.k >= needed)
    }

    /// Scratch for the first pass: `SLICES × GPU_TOP_K` (token, logit) pairs.
    pub fn slice_buffer_bytes() -> u64 {
        (SLICES * GPU_TOP_K * 8) as u64
    }

    /// Workgroups of 64 for the first pass.
    pub fn slice_groups() -> u32 {
        SLICES.div_ceil(64) as u32
    }
}
