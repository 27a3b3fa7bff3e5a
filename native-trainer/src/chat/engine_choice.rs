//! Which engine `dpo chat` and `dpo bench` run when `--engine` names none: candle on CUDA when
//! this build has CUDA and a GPU answers; else the wgpu engine on a hardware GPU adapter; else
//! the integer CPU engine on every physical core (a software adapter such as lavapipe runs the
//! same kernels far slower than the CPU engine does). The choice and its reason are logged.

use shared::wgpu_engine::GpuContext;

use super::EngineKind;

/// The engine to run: `requested`, or the fastest for this machine. `force_cpu` (`--cpu`)
/// keeps every GPU out of the choice.
pub fn choose_engine(requested: Option<EngineKind>, force_cpu: bool) -> EngineKind {
    if let Some(kind) = requested {
        tracing::info!("engine: {} (as asked)", kind.name());
        return kind;
    }
    if force_cpu {
        tracing::info!("engine: the CPU engine (--cpu)");
        return EngineKind::Cpu;
    }
    #[cfg(feature = "cuda")]
    if candle_core::Device::new_cuda(0).is_ok() {
        tracing::info!("engine: candle on CUDA (this build has CUDA and GPU 0 answers)");
        return EngineKind::Candle;
    }
    match pollster::block_on(GpuContext::new()) {
        Ok(gpu) if !gpu.is_software_adapter() => {
            tracing::info!(
                "engine: wgpu on {} ({:?}), a hardware GPU",
                gpu.adapter_info.name,
                gpu.adapter_info.backend
            );
            EngineKind::Wgpu
        }
        Ok(gpu) => {
            tracing::info!(
                "engine: the CPU engine ({} is a software adapter)",
                gpu.adapter_info.name
            );
            EngineKind::Cpu
        }
        Err(error) => {
            tracing::info!("engine: the CPU engine (no GPU adapter: {error})");
            EngineKind::Cpu
        }
    }
}

/// The CPU engine's threads: `requested`, or this machine's physical cores.
pub fn cpu_threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| num_cpus::get_physical().max(1))
}
