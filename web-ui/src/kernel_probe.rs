//! The matrix kernels as JavaScript calls, so kernel checks run in a real browser: compile one
//! matmul plan's kernels for every block type on the browser's GPU, then run single products
//! of weights in their GGUF blocks and read y back (the native checks' `run_single_product`).

use std::rc::Rc;

use shared::gguf::BlockType;
use shared::wgpu_engine::{
    GpuContext, MatmulPlan, ProductInputs, QuantizedMatmulKernels, QuantizedMatrix,
    run_single_product,
};
use wasm_bindgen::prelude::*;

/// One plan's kernels on the browser's GPU.
#[wasm_bindgen]
pub struct MatmulProbe {
    compiled: Rc<CompiledPlan>,
}

struct CompiledPlan {
    ctx: GpuContext,
    kernels: QuantizedMatmulKernels,
}

#[wasm_bindgen]
impl MatmulProbe {
    /// Compiles the kernels of `plan` (a plan name: `cpu`, `browser-cpu`, `gpu`,
    /// `lanes:16/tiledx8`, …; see `shared::wgpu_engine::matmul_plan_name`) for every block type.
    /// Rejects a plan the adapter cannot run (f16 tiles without shader-f16, subgroup sums
    /// without subgroups) or without WebGPU.
    #[wasm_bindgen(js_name = forPlan)]
    pub async fn for_plan(plan: String) -> Result<MatmulProbe, JsError> {
        let plan: MatmulPlan = plan.parse()?;
        let ctx = GpuContext::new().await?;
        plan.check_adapter(&ctx)?;
        let kernels = QuantizedMatmulKernels::with_plan(&ctx, &BlockType::ALL, &[], plan);
        Ok(MatmulProbe {
            compiled: Rc::new(CompiledPlan { ctx, kernels }),
        })
    }

    /// Resolves to y (`tokens × rows`, token-major) = W · x for every token of `xs` (token
    /// after token, `cols` values each), W being `rows × cols` in `blockType`'s GGUF blocks
    /// (`blocks`; block types as the engine names them: F32, F16, Q4_0, Q4_1, Q5_0, Q8_0,
    /// Q4K, Q5K, Q6K). A non-empty `normWeight` has the product RMS-normalize each x first
    /// (with `normEps`), as plans that fold norms into products do.
    #[allow(clippy::too_many_arguments)]
    pub fn product(
        &self,
        block_type: String,
        rows: u32,
        cols: u32,
        blocks: Vec<u8>,
        xs: Vec<f32>,
        norm_weight: Vec<f32>,
        norm_eps: f32,
    ) -> js_sys::Promise {
        let compiled = Rc::clone(&self.compiled);
        wasm_bindgen_futures::future_to_promise(async move {
            compiled
                .product(
                    &block_type,
                    rows as usize,
                    cols as usize,
                    &blocks,
                    &xs,
                    &norm_weight,
                    norm_eps,
                )
                .await
                .map(|y| js_sys::Float32Array::from(&y[..]).into())
                .map_err(JsValue::from)
        })
    }
}

impl CompiledPlan {
    /// See `MatmulProbe::product`.
    #[allow(clippy::too_many_arguments)]
    async fn product(
        &self,
        block_type: &str,
        rows: usize,
        cols: usize,
        blocks: &[u8],
        xs: &[f32],
        norm_weight: &[f32],
        norm_eps: f32,
    ) -> Result<Vec<f32>, JsError> {
        let block_type = BlockType::ALL
            .into_iter()
            .find(|t| format!("{t:?}") == block_type)
            .ok_or_else(|| JsError::new(&format!("no block type is named {block_type:?}")))?;
        let matrix = QuantizedMatrix::upload(&self.ctx, "w", block_type, rows, cols, blocks)?;
        let inputs = ProductInputs {
            norm_weight: (!norm_weight.is_empty()).then_some(norm_weight),
            norm_eps,
            ..ProductInputs::plain(xs, xs.len() / cols.max(1))
        };
        Ok(run_single_product(&self.ctx, &self.kernels, &matrix, inputs).await?)
    }
}
