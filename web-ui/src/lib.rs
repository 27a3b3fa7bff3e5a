//! The labelling web app (leptos, client-side rendered, compiled to wasm32): pick a model
//! version the server offers, download it once into the browser's cache and run it on the
//! labeller's GPU (WebGPU) or, without a usable GPU, on the CPU engine (WebAssembly), chat
//! with it, and compare two of its answers side by side and
//! vote — the votes go to `dpo serve` as preference pairs for the next DPO round. In a label
//! campaign the prompts come from the server's prompt set, invited annotators sign in with
//! their invite link, guidelines come first, and the team's lead reads the dashboard.

pub mod browser_storage;
pub mod campaign;
pub mod chat_view;
pub mod compare_view;
pub mod comparison_state;
pub mod dashboard_view;
pub mod engine_choice;
pub mod engine_probe;
pub mod engine_worker;
pub mod generation_settings;
pub mod gpu_adapter;
pub mod guidelines_view;
pub mod js_bytes_reader;
pub mod kernel_probe;
pub mod loaded_model;
pub mod markdown_view;
pub mod model_cache;
pub mod model_download;
pub mod model_loader;
pub mod model_session;
pub mod server_api;
pub mod svg_plots;
pub mod vote_queue;
pub mod worker_link;
pub mod worker_protocol;

use leptos::prelude::*;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::campaign::Campaign;
use crate::chat_view::ChatView;
use crate::compare_view::CompareView;
use crate::dashboard_view::DashboardView;
use crate::generation_settings::GenerationSettings;
use crate::model_loader::{ModelLoader, ModelLoaderView};
use crate::vote_queue::VoteQueue;

/// The two things a labeller does, and the lead's dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Chat,
    Compare,
    Dashboard,
}

/// The app's root view: the model loader on top, then chat or compare-and-vote once a model
/// is on the GPU; the dashboard needs no model.
#[component]
pub fn App() -> impl IntoView {
    let loader = ModelLoader::start();
    // Before anything reads the token: an invite link signs this browser in.
    let campaign = Campaign::start();
    provide_context(campaign);
    provide_context(loader);
    provide_context(GenerationSettings::new());
    provide_context(VoteQueue::start());
    let mode = RwSignal::new(Mode::Chat);
    let tab = move |target: Mode, label: &'static str, testid: &'static str| {
        view! {
            <button
                data-testid=testid
                class="tab"
                class:active=move || mode.get() == target
                on:click=move |_| mode.set(target)
            >
                {label}
            </button>
        }
    };
    view! {
        <header class="top">
            <h1>"DPO flywheel"</h1>
            <nav>
                {tab(Mode::Chat, "Chat", "mode-chat")}
                {tab(Mode::Compare, "Compare & vote", "mode-compare")}
                {tab(Mode::Dashboard, "Dashboard", "mode-dashboard")}
            </nav>
            {move || campaign.info.get().and_then(|i| i.annotator).and_then(|a| a.name).map(|name| view! {
                <span class="muted" data-testid="signed-in-as">{format!("Signed in as {name}")}</span>
            })}
        </header>
        <Show
            when=move || mode.get() != Mode::Dashboard
            fallback=|| view! { <DashboardView/> }
        >
            <ModelLoaderView/>
            <Show when=move || loader.is_ready()>
                {move || match mode.get() {
                    Mode::Chat => view! { <ChatView/> }.into_any(),
                    _ => view! { <CompareView/> }.into_any(),
                }}
            </Show>
        </Show>
    }
}

/// Entry point called by the wasm-bindgen JS glue: mounts the app when the page has an
/// `#app` element (index.html), and stays silent on pages that only call the engine and in
/// the engine's worker (`engine_worker.rs`).
#[wasm_bindgen(start)]
pub fn start() {
    let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("app"))
    else {
        return;
    };
    let root: web_sys::HtmlElement = wasm_bindgen::JsCast::unchecked_into(root);
    leptos::mount::mount_to(root, App).forget();
}
