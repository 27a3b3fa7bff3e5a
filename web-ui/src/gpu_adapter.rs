//! The browser's WebGPU adapter as the page sees it: what the loader shows about it (adapter,
//! backend, limits, whether it is a software fallback), or why there is none. The page only
//! looks: it opens a device once to read these facts and closes it, since every model runs
//! in a worker with a device of its own.

use std::cell::RefCell;

use shared::wgpu_engine::GpuContext;

thread_local! {
    static SUMMARY: RefCell<Option<AdapterSummary>> = const { RefCell::new(None) };
}

/// What the loader shows about the adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub max_buffer_bytes: u64,
    pub max_binding_bytes: u64,
    pub shader_f16: bool,
    /// The browser's software fallback (SwiftShader), which wgpu reports as a CPU device.
    pub software: bool,
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
            software: ctx.is_software_adapter(),
        }
    }
}

/// The adapter's summary, found on first use. The error says what to do (enable WebGPU, use
/// another browser).
pub async fn summary() -> Result<AdapterSummary, String> {
    if let Some(summary) = SUMMARY.with(|s| s.borrow().clone()) {
        return Ok(summary);
    }
    let ctx = GpuContext::new().await.map_err(|e| {
        format!(
            "WebGPU is not available: {e}. Open this page in a browser with WebGPU (Chrome or \
             Edge 113+, Firefox 141+, Safari 26+) with hardware acceleration enabled; on Linux \
             Chrome may need --enable-unsafe-webgpu."
        )
    })?;
    let summary = AdapterSummary::of(&ctx);
    ctx.device.destroy();
    SUMMARY.with(|s| *s.borrow_mut() = Some(summary.clone()));
    Ok(summary)
}
