//! Choosing and loading a model version: the engine (WebGPU on a real GPU, else the CPU
//! engine; `engine_choice.rs`) with the adapter and its limits, the versions the server
//! offers, the download with its progress bar — or the browser's cached copy, verified
//! against the manifest's sha256 — and the load into the engine, which runs in a worker of its
//! own (`loaded_model.rs`). A cached version loads by itself when the page opens; "Clear
//! cache" forgets them.

use js_sys::Uint8Array;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::ModelManifest;

use crate::engine_choice::{self, EngineDecision, EnginePreference};
use crate::gpu_adapter::AdapterSummary;
use crate::loaded_model::{self, LoadedModel};
use crate::model_download::{self, DownloadProgress, sha256_hex_of_js};
use crate::{model_cache, server_api};

/// Largest GGUF a page loads: wasm32 memory is 4 GiB, and the CPU engine's worker keeps the
/// weights, about the file's size, in its wasm memory (the page holds the file in a
/// JavaScript array, outside wasm memory, while it verifies and caches it, and then hands it
/// to the worker, which reads the weights out of it).
const MAX_MODEL_BYTES: u64 = 1_900_000_000;

#[derive(Debug, Clone, PartialEq)]
pub enum LoadPhase {
    CheckingGpu,
    NoWebGpu(String),
    /// Waiting for the labeller to pick a version.
    Choosing,
    ReadingCache,
    Downloading(DownloadProgress),
    Uploading,
    Ready {
        version: String,
        from_cache: bool,
        seconds: f64,
        /// The wasm memory of the engine's worker (see `LoadedModel::engine_memory_bytes`).
        engine_memory_bytes: u64,
    },
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
pub struct ModelLoader {
    pub versions: RwSignal<Vec<ModelManifest>>,
    /// Versions the server battles against the default (`dpo versions candidate`).
    pub candidates: RwSignal<Vec<String>>,
    /// The server's default version (what the app loads unless the labeller chooses).
    pub default_version: RwSignal<Option<String>>,
    pub selected: RwSignal<Option<String>>,
    pub phase: RwSignal<LoadPhase>,
    pub adapter: RwSignal<Option<AdapterSummary>>,
    /// The engine models load into, and why (`None` until chosen).
    pub engine: RwSignal<Option<EngineDecision>, LocalStorage>,
    /// The manifest of the model on the GPU (what votes record as provenance).
    pub loaded: RwSignal<Option<ModelManifest>>,
}

impl ModelLoader {
    /// Opens the GPU, lists the server's versions and loads the default if it is cached.
    pub fn start() -> Self {
        let loader = Self {
            versions: RwSignal::new(Vec::new()),
            candidates: RwSignal::new(Vec::new()),
            default_version: RwSignal::new(None),
            selected: RwSignal::new(None),
            phase: RwSignal::new(LoadPhase::CheckingGpu),
            adapter: RwSignal::new(None),
            engine: RwSignal::new_local(None),
            loaded: RwSignal::new(None),
        };
        spawn_local(async move {
            match engine_choice::decide(EnginePreference::current()).await {
                Ok(decision) => {
                    loader.adapter.set(decision.adapter.clone());
                    loader.engine.set(Some(decision));
                }
                Err(error) => {
                    loader.phase.set(LoadPhase::NoWebGpu(error));
                    return;
                }
            }
            let list = match server_api::model_versions().await {
                Ok(list) => list,
                Err(error) => {
                    loader.phase.set(LoadPhase::Failed(format!(
                        "cannot list the server's models: {error}"
                    )));
                    return;
                }
            };
            // The server's default (the newest version where the server names none).
            let default = list
                .default_version
                .as_deref()
                .and_then(|name| list.versions.iter().find(|m| m.version == name))
                .or(list.versions.last())
                .cloned();
            loader.versions.set(list.versions);
            loader.candidates.set(list.candidates);
            loader
                .default_version
                .set(default.as_ref().map(|m| m.version.clone()));
            loader.phase.set(LoadPhase::Choosing);
            let Some(default) = default else {
                loader.phase.set(LoadPhase::Failed(
                    "the server offers no model versions yet: publish one with `dpo publish` or \
                     `dpo export` into its --models-dir"
                        .into(),
                ));
                return;
            };
            loader.selected.set(Some(default.version.clone()));
            if model_cache::get_size(&default.gguf.sha256).await == Some(default.gguf.size) {
                loader.load();
            }
        });
        loader
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.phase.get(), LoadPhase::Ready { .. })
    }

    fn is_busy(&self) -> bool {
        matches!(
            self.phase.get(),
            LoadPhase::CheckingGpu
                | LoadPhase::ReadingCache
                | LoadPhase::Downloading(_)
                | LoadPhase::Uploading
        )
    }

    /// Loads the selected version: from the cache when a verified copy is there, else
    /// downloaded, verified and cached.
    pub fn load(self) {
        let Some(manifest) = self.selected.get_untracked().and_then(|version| {
            self.versions
                .get_untracked()
                .into_iter()
                .find(|m| m.version == version)
        }) else {
            return;
        };
        spawn_local(async move {
            let started = crate::browser_storage::now_ms();
            match self.fetch_and_upload(manifest.clone()).await {
                Ok((from_cache, engine_memory_bytes)) => {
                    self.loaded.set(Some(manifest.clone()));
                    self.phase.set(LoadPhase::Ready {
                        version: manifest.version,
                        from_cache,
                        seconds: (crate::browser_storage::now_ms() - started) / 1000.0,
                        engine_memory_bytes,
                    });
                }
                Err(error) => self.phase.set(LoadPhase::Failed(error)),
            }
        });
    }

    /// Returns whether the bytes came from the cache, and the engine's wasm memory.
    async fn fetch_and_upload(self, manifest: ModelManifest) -> Result<(bool, u64), String> {
        let engine = self
            .engine
            .get_untracked()
            .ok_or("no engine was chosen for this page")?
            .engine;
        loaded_model::unload();
        self.loaded.set(None);
        let phase = self.phase;
        let (bytes, from_cache) =
            verified_model_bytes(&manifest, &|progress| phase.set(progress)).await?;
        self.phase.set(LoadPhase::Uploading);
        // Let the page paint "Uploading" before the synchronous upload.
        crate::browser_storage::next_frame().await;
        let model = LoadedModel::load(engine, manifest, bytes).await?;
        let engine_memory_bytes = model.engine_memory_bytes;
        loaded_model::install(model);
        Ok((from_cache, engine_memory_bytes))
    }
}

/// Loads another served version beside the labeller's for a blind battle (from the cache
/// when a verified copy is there), reporting progress to `on_phase`.
pub async fn load_battle_opponent(
    manifest: ModelManifest,
    on_phase: &dyn Fn(LoadPhase),
) -> Result<LoadedModel, String> {
    let engine = engine_choice::decide(EnginePreference::current())
        .await?
        .engine;
    let (bytes, _) = verified_model_bytes(&manifest, on_phase).await?;
    on_phase(LoadPhase::Uploading);
    crate::browser_storage::next_frame().await;
    LoadedModel::load(engine, manifest, bytes).await
}

/// A version's GGUF, verified against its manifest: the cached copy if it checks out,
/// else downloaded (with progress) and cached. Also whether it came from the cache.
async fn verified_model_bytes(
    manifest: &ModelManifest,
    on_phase: &dyn Fn(LoadPhase),
) -> Result<(Uint8Array, bool), String> {
    let file = manifest.gguf.clone();
    if file.size > MAX_MODEL_BYTES {
        return Err(format!(
            "{} is {:.1} GB; a browser tab can hold about {:.1} GB of model. Publish a \
             smaller quantization (dpo export --quant q4_k_m) or a smaller model",
            manifest.version,
            file.size as f64 / 1e9,
            MAX_MODEL_BYTES as f64 / 1e9
        ));
    }
    on_phase(LoadPhase::ReadingCache);
    match model_cache::get(&file.sha256).await {
        Ok(Some(cached)) if sha256_hex_of_js(&cached) == file.sha256 => return Ok((cached, true)),
        Ok(Some(_)) => {
            web_sys::console::warn_1(
                &"the cached model failed verification; downloading it again".into(),
            );
            let _ = model_cache::remove(&file.sha256).await;
        }
        Ok(None) => {}
        Err(error) => web_sys::console::warn_1(&error.into()),
    }
    let url = format!(
        "/models/{}/{}",
        String::from(js_sys::encode_uri_component(&manifest.version)),
        file.path
    );
    on_phase(LoadPhase::Downloading(DownloadProgress {
        received: 0,
        total: file.size,
        bytes_per_second: 0.0,
    }));
    let bytes = model_download::download(&url, &file, &|progress| {
        on_phase(LoadPhase::Downloading(progress))
    })
    .await?;
    if let Err(error) = model_cache::put(&file.sha256, &bytes).await {
        web_sys::console::warn_1(&error.into());
    }
    Ok((bytes, false))
}

fn megabytes(bytes: u64) -> String {
    let bytes = bytes as f64;
    if bytes >= 1e9 {
        format!("{:.2} GB", bytes / 1e9)
    } else if bytes >= 1e6 {
        format!("{:.1} MB", bytes / 1e6)
    } else {
        format!("{:.1} kB", bytes / 1e3)
    }
}

fn describe(manifest: &ModelManifest) -> String {
    let trained = manifest
        .training
        .as_ref()
        .map(|t| format!(", DPO step {}", t.global_step))
        .unwrap_or_default();
    format!(
        "{} — {}, {}{trained}",
        manifest.version,
        manifest.quant,
        megabytes(manifest.gguf.size)
    )
}

#[component]
pub fn ModelLoaderView() -> impl IntoView {
    let loader = expect_context::<ModelLoader>();
    let adapter_line = move || {
        loader.adapter.get().map(|a| {
            view! {
                <p class="adapter" data-testid="adapter-info">
                    {format!(
                        "WebGPU: {} ({}) · max buffer {} · max storage binding {} · shader-f16 {}",
                        a.name,
                        a.backend,
                        megabytes(a.max_buffer_bytes),
                        megabytes(a.max_binding_bytes),
                        if a.shader_f16 { "yes" } else { "no (f32 kernels)" }
                    )}
                </p>
            }
        })
    };
    let engine_line = move || {
        loader.engine.get().map(|decision| {
            let name = match decision.engine {
                engine_choice::Engine::WebGpu => "WebGPU",
                engine_choice::Engine::Cpu => "the CPU engine (WebAssembly SIMD, one thread)",
            };
            view! {
                <p class="adapter" data-testid="engine-info" data-engine=decision.key()>
                    {format!("Runs on {name}: {}.", decision.reason)}
                </p>
            }
        })
    };
    // Another engine: kept, and the page reloads to open it.
    let choose_engine = move |ev: web_sys::Event| {
        let choice = event_target_value(&ev);
        if let Some(preference) = EnginePreference::ALL
            .into_iter()
            .find(|p| p.key() == choice)
        {
            preference.keep();
            if let Some(window) = web_sys::window() {
                let _ = window.location().replace(&format!(
                    "{}?engine={}",
                    window.location().pathname().unwrap_or_default(),
                    preference.key()
                ));
            }
        }
    };
    let current_preference = EnginePreference::current();
    let status = move || {
        match loader.phase.get() {
        LoadPhase::CheckingGpu => view! { <p class="muted">"Choosing the engine…"</p> }.into_any(),
        LoadPhase::NoWebGpu(message) => view! {
            <div class="error" role="alert" data-testid="webgpu-error">
                <strong>"This browser cannot run the model. "</strong>
                {message}
            </div>
        }
        .into_any(),
        LoadPhase::Choosing => view! { <p class="muted">"Pick a model version and load it."</p> }.into_any(),
        LoadPhase::ReadingCache => view! {
            <p data-testid="model-progress">"Reading the cached model and checking its sha256…"</p>
        }
        .into_any(),
        LoadPhase::Downloading(p) => {
            let percent = if p.total > 0 { p.received as f64 * 100.0 / p.total as f64 } else { 0.0 };
            view! {
                <div data-testid="model-progress" class="progress">
                    <progress max=p.total.to_string() value=p.received.to_string()></progress>
                    <span>
                        {format!(
                            "{} / {} · {percent:.0}% · {}/s",
                            megabytes(p.received),
                            megabytes(p.total),
                            megabytes(p.bytes_per_second as u64)
                        )}
                    </span>
                </div>
            }
            .into_any()
        }
        LoadPhase::Uploading => view! {
            <p data-testid="model-progress">"Verified; loading the weights into the engine…"</p>
        }
        .into_any(),
        LoadPhase::Ready { version, from_cache, seconds, engine_memory_bytes } => view! {
            <p class="ready" data-testid="model-ready" data-version=version.clone() data-from-cache=from_cache.to_string() data-seconds=seconds data-engine-memory-bytes=engine_memory_bytes>
                {format!(
                    "Ready: {version} ({} in {seconds:.1} s; the engine holds {})",
                    if from_cache { "from the browser cache" } else { "downloaded and verified" },
                    megabytes(engine_memory_bytes)
                )}
            </p>
        }
        .into_any(),
        LoadPhase::Failed(message) => view! {
            <div class="error" role="alert" data-testid="model-error">{message}</div>
        }
        .into_any(),
    }
    };
    // What the last "Clear cache" did, shown beside the button.
    let cache_status = RwSignal::new(String::new());
    let clear_cache = move |_| {
        cache_status.set("Clearing…".into());
        spawn_local(async move {
            cache_status.set(match model_cache::clear().await {
                Ok(()) => "Cleared the model cache: the next load downloads again.".to_string(),
                Err(error) => format!("Could not clear the cache: {error}"),
            });
        });
    };
    view! {
        <section class="loader">
            {adapter_line}
            {engine_line}
            <div class="row">
                <select data-testid="engine-select" on:change=choose_engine>
                    {EnginePreference::ALL
                        .into_iter()
                        .map(|p| {
                            view! {
                                <option value=p.key() selected={p == current_preference}>
                                    {p.label()}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
                <select
                    data-testid="model-select"
                    disabled=move || loader.is_busy()
                    on:change=move |ev| loader.selected.set(Some(event_target_value(&ev)))
                >
                    {move || {
                        let selected = loader.selected.get();
                        loader
                            .versions
                            .get()
                            .into_iter()
                            .rev()
                            .map(|m| {
                                let is_selected = selected.as_deref() == Some(m.version.as_str());
                                view! {
                                    <option value=m.version.clone() selected=is_selected>
                                        {describe(&m)}
                                    </option>
                                }
                            })
                            .collect_view()
                    }}
                </select>
                <button
                    data-testid="load-model"
                    disabled=move || loader.is_busy() || loader.selected.get().is_none()
                    on:click=move |_| loader.load()
                >
                    "Load"
                </button>
                <button data-testid="clear-cache" class="secondary" on:click=clear_cache>
                    "Clear cache"
                </button>
                <span class="muted" role="status" data-testid="cache-status">
                    {move || cache_status.get()}
                </span>
            </div>
            {status}
        </section>
    }
}
