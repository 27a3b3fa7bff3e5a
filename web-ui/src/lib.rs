//! The labelling web app (leptos, client-side rendered, compiled to wasm32).
//!
//! For now it shows the shell of the app and proves the shared contract compiles into the
//! browser bundle; the chat and compare-and-vote views arrive with the web-ui issue.

pub mod engine_probe;

use leptos::prelude::*;
use wasm_bindgen::prelude::wasm_bindgen;

/// The app's root view.
#[component]
pub fn App() -> impl IntoView {
    let roles = [
        shared::Role::System,
        shared::Role::User,
        shared::Role::Assistant,
    ];
    view! {
        <main data-testid="app-root">
            <h1>"DPO flywheel"</h1>
            <p data-testid="app-status">
                "Chat and compare-and-vote are coming. Roles understood: "
                {roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")}
            </p>
        </main>
    }
}

/// Entry point called by the wasm-bindgen JS glue.
#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(App);
}
