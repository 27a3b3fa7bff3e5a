//! The browser's WebGPU device, opened once per page and shared by every model load: what
//! the loader shows about it (adapter, backend, limits), or why there is none.

use std::cell::RefCell;

use shared::engine::GpuContext;

thread_local! {
    static CONTEXT: RefCell<Option<GpuContext>> = const { RefCell::new(None) };
}

/// What the loader shows about the adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub max_buffer_bytes: u64,
    pub max_binding_bytes: u64,
    pub shader_f16: bool,
}

impl AdapterSummary {
    fn of(ctx: &GpuContext) -> Self {
        let name = if ctx.adapter_info.name.is_empty() {
            "unnamed adapter".to_string()
        } else {
            ctx.adapter_info.name.clone()
        };
        Self {
            name,
            backend: format!("{:?}", ctx.adapter_info.backend),
            max_buffer_bytes: ctx.limits.max_buffer_size,
            max_binding_bytes: ctx.max_binding_bytes,
            shader_f16: ctx.has_shader_f16,
        }
    }
}

/// The page's GPU context, opened on first use. The error says what to do (enable WebGPU,
/// use another browser).
pub async fn context() -> Result<(GpuContext, AdapterSummary), String> {
    if let Some(ctx) = CONTEXT.with(|c| c.borrow().clone()) {
        let summary = AdapterSummary::of(&ctx);
        return Ok((ctx, summary));
    }
    let ctx = GpuContext::new().await.map_err(|e| {
        format!(
            "WebGPU is not available: {e}. Open this page in a browser with WebGPU (Chrome or \
             Edge 113+, Firefox 141+, Safari 26+) with hardware acceleration enabled; on Linux \
             Chrome may need --enable-unsafe-webgpu."
        )
    })?;
    let summary = AdapterSummary::of(&ctx);
    CONTEXT.with(|c| *c.borrow_mut() = Some(ctx.clone()));
    Ok((ctx, summary))
}
