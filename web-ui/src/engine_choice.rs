//! Which engine runs the model on this page: WebGPU when the browser's adapter is a real GPU,
//! the CPU engine (WebAssembly SIMD) when there is no adapter or only the browser's software
//! fallback, which runs the GPU kernels far slower than the CPU engine runs its own. The
//! labeller can override the choice (kept in localStorage; `?engine=webgpu|cpu|auto` in the
//! address sets it too), and the loader says which engine runs and why.

use serde::{Deserialize, Serialize};

use crate::browser_storage;
use crate::gpu_adapter::{self, AdapterSummary};

const PREFERENCE_KEY: &str = "dpo.engine";

/// What the labeller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnginePreference {
    Auto,
    WebGpu,
    Cpu,
}

impl EnginePreference {
    pub const ALL: [Self; 3] = [Self::Auto, Self::WebGpu, Self::Cpu];

    pub fn key(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::WebGpu => "webgpu",
            Self::Cpu => "cpu",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Auto => "Engine: automatic",
            Self::WebGpu => "Engine: WebGPU",
            Self::Cpu => "Engine: CPU (WebAssembly)",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.key() == text)
    }

    /// The address's `?engine=` (which is then kept), else the kept one, else automatic.
    pub fn current() -> Self {
        let from_address = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .and_then(|search| {
                search
                    .trim_start_matches('?')
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("engine="))
                    .and_then(Self::parse)
            });
        if let Some(preference) = from_address {
            preference.keep();
            return preference;
        }
        browser_storage::get(PREFERENCE_KEY)
            .as_deref()
            .and_then(Self::parse)
            .unwrap_or(Self::Auto)
    }

    /// Keeps the preference for the next visits (a refused localStorage keeps it for this
    /// page only).
    pub fn keep(self) {
        let _ = browser_storage::set(PREFERENCE_KEY, self.key());
    }
}

/// The engine a model loads into (in its worker, which opens its own GPU device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    WebGpu,
    Cpu,
}

/// The engine chosen for this page, what the loader shows about it, and why.
#[derive(Clone)]
pub struct EngineDecision {
    pub engine: Engine,
    pub adapter: Option<AdapterSummary>,
    pub reason: String,
}

impl EngineDecision {
    /// `data-engine` of the loader's line: `webgpu` or `cpu`.
    pub fn key(&self) -> &'static str {
        match self.engine {
            Engine::WebGpu => "webgpu",
            Engine::Cpu => "cpu",
        }
    }
}

/// Chooses the engine for `preference`. Only an explicit WebGPU preference without a WebGPU
/// adapter is an error (the message says what to do).
pub async fn decide(preference: EnginePreference) -> Result<EngineDecision, String> {
    let cpu = |adapter, reason: String| EngineDecision {
        engine: Engine::Cpu,
        adapter,
        reason,
    };
    if preference == EnginePreference::Cpu {
        return Ok(cpu(
            None,
            "the CPU engine was chosen in the settings".into(),
        ));
    }
    let summary = match gpu_adapter::summary().await {
        Ok(found) => found,
        Err(_) if preference == EnginePreference::Auto => {
            return Ok(cpu(
                None,
                "this browser offers no WebGPU adapter, so the model runs on the CPU".into(),
            ));
        }
        Err(error) => return Err(error),
    };
    let software = summary.software;
    if software && preference == EnginePreference::Auto {
        return Ok(cpu(
            Some(summary.clone()),
            format!(
                "the browser's WebGPU adapter ({}) is a software fallback, slower than the CPU engine",
                summary.name
            ),
        ));
    }
    let reason = if software {
        "WebGPU was chosen in the settings (on a software adapter)".to_string()
    } else {
        format!("a GPU adapter: {}", summary.name)
    };
    Ok(EngineDecision {
        engine: Engine::WebGpu,
        adapter: Some(summary),
        reason,
    })
}
