//! The GPU device the engine runs on: adapter selection, the adapter's own limits (so large
//! storage bindings are available where the hardware has them), and optional features.

use crate::generation::EngineError;

/// An open GPU device and what it can do. Cloning shares the device.
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Largest storage buffer binding; bigger tensors are split across buffers.
    pub max_binding_bytes: u64,
    pub has_shader_f16: bool,
    /// The smallest subgroup the adapter runs, where it offers subgroup operations (native
    /// Vulkan, Metal and DX12; wgpu does not yet pass WebGPU's `subgroups` through in
    /// browsers); `None` without them.
    pub subgroup_min_size: Option<u32>,
}

impl GpuContext {
    /// Whether the adapter runs on the CPU: a Vulkan CPU driver (lavapipe), or the browser's
    /// software fallback (SwiftShader), which wgpu reports as a CPU device too.
    pub fn is_software_adapter(&self) -> bool {
        self.adapter_info.device_type == wgpu::DeviceType::Cpu
    }

    /// Opens the default adapter with its full limits.
    pub async fn new() -> Result<Self, EngineError> {
        #[cfg(target_arch = "wasm32")]
        if !wgpu::util::is_browser_webgpu_supported().await {
            return Err(EngineError::NoAdapter(
                "this browser offers no WebGPU adapter: use a recent Chrome, Edge or Firefox \
                 with WebGPU enabled and hardware acceleration on"
                    .into(),
            ));
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| EngineError::NoAdapter(e.to_string()))?;
        let adapter_info = adapter.get_info();
        let limits = adapter.limits();
        let offered = adapter.features();
        let has_shader_f16 = offered.contains(wgpu::Features::SHADER_F16);
        let has_subgroups = offered.contains(wgpu::Features::SUBGROUP);
        let subgroup_min_size = has_subgroups.then_some(adapter_info.subgroup_min_size);
        let required_features = offered & (wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("dpo-engine"),
                required_features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| EngineError::Device(e.to_string()))?;
        let max_binding_bytes = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Ok(Self {
            device,
            queue,
            adapter_info,
            limits,
            max_binding_bytes,
            has_shader_f16,
            subgroup_min_size,
        })
    }

    /// A bind group whose binding i is the whole of `buffers[i]`.
    pub fn bind_buffers(
        &self,
        label: &str,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(i, buffer)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout,
            entries: &entries,
        })
    }

    /// Compiles a WGSL compute shader whose entry point is `main`, with the layout its
    /// bindings imply.
    pub fn compute_pipeline(&self, label: &str, source: &str) -> wgpu::ComputePipeline {
        self.build_pipeline(label, source, None)
    }

    /// Compiles a WGSL compute shader with an explicit layout, so several variants of a
    /// kernel accept the same bind groups.
    pub fn compute_pipeline_with_layout(
        &self,
        label: &str,
        source: &str,
        layout: &wgpu::PipelineLayout,
    ) -> wgpu::ComputePipeline {
        self.build_pipeline(label, source, Some(layout))
    }

    fn build_pipeline(
        &self,
        label: &str,
        source: &str,
        layout: Option<&wgpu::PipelineLayout>,
    ) -> wgpu::ComputePipeline {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            })
    }
}
