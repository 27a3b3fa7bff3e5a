//! The campaign's labelling guidelines (`dpo serve --guidelines FILE.md`), rendered with the
//! inert Markdown view: shown over the compare view until the labeller confirms reading
//! them (again whenever they change), and as a section of the help overlay.

use leptos::prelude::*;

use crate::campaign::Campaign;
use crate::markdown_view::Markdown;

/// The guidelines over the compare view, until confirmed.
#[component]
pub fn GuidelinesOverlay() -> impl IntoView {
    let campaign = expect_context::<Campaign>();
    move || {
        let text = campaign.guidelines()?;
        if campaign.guidelines_read.get() {
            return None;
        }
        Some(view! {
            <div class="overlay" data-testid="guidelines-overlay">
                <div class="help guidelines" role="dialog" aria-label="Labelling guidelines">
                    <h3>"Labelling guidelines"</h3>
                    <div data-testid="guidelines"><Markdown text=text/></div>
                    <button data-testid="guidelines-accept" on:click=move |_| campaign.confirm_guidelines()>
                        "I have read the guidelines"
                    </button>
                </div>
            </div>
        })
    }
}

/// The guidelines inside the help overlay, when the campaign has them.
#[component]
pub fn GuidelinesSection() -> impl IntoView {
    let campaign = expect_context::<Campaign>();
    move || {
        campaign.guidelines().map(|text| {
            view! {
                <section data-testid="help-guidelines">
                    <h3>"Guidelines"</h3>
                    <Markdown text=text/>
                </section>
            }
        })
    }
}
