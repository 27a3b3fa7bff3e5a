//! Compare and vote — the labelling view (its state and actions: `comparison_state.rs`). One prompt, two answers from the loaded model with
//! different seeds (and, when the settings are greedy, one greedy and one sampled answer),
//! shown side by side in random order; the labeller votes A better, B better, tie or both
//! bad, may write the ideal answer, and submits. The pair goes to the vote queue with its
//! full provenance (model version and sha256, sampling settings and seed of each side, when
//! it was shown and voted). Keyboard first: 1–4 vote, Enter submits, N starts a new prompt,
//! ? shows the shortcuts.
//!
//! In a campaign the prompt comes from the server's prompt set (`/api/prompts/next`), with
//! the seeds every annotator of that prompt uses, and the pair names it; the labeller writes
//! their own only when the server allows it. A share of comparisons (`--battle-share`) are
//! blind battles: one side from the loaded version, the other from another served version
//! (loaded beside it), sides random, each candidate recording its own version. Guidelines,
//! when the campaign has them, come before the first vote.

use leptos::ev;
use leptos::prelude::*;
use shared::Vote;

use crate::campaign::Campaign;
use crate::chat_view::submits_prompt;
use crate::comparison_state::{CompareState, PromptSource, vote_label};
use crate::generation_settings::{GenerationSettings, SettingsPanel};
use crate::guidelines_view::{GuidelinesOverlay, GuidelinesSection};
use crate::markdown_view::Markdown;
use crate::model_loader::ModelLoader;
use crate::vote_queue::VoteQueue;

fn is_text_field(event: &web_sys::KeyboardEvent) -> bool {
    event
        .target()
        .and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::Element>(t).ok())
        .is_some_and(|e| matches!(e.tag_name().as_str(), "TEXTAREA" | "INPUT" | "SELECT"))
}

#[component]
pub fn CompareView() -> impl IntoView {
    let settings = expect_context::<GenerationSettings>();
    let loader = expect_context::<ModelLoader>();
    let queue = expect_context::<VoteQueue>();
    let campaign = expect_context::<Campaign>();
    let state = CompareState {
        campaign,
        source: RwSignal::new(PromptSource::Loading),
        activity: RwSignal::new(None),
        awaiting_ack: RwSignal::new(false),
        input: RwSignal::new(String::new()),
        conversation: RwSignal::new(Vec::new()),
        sides: [RwSignal::new(None), RwSignal::new(None)],
        generating: RwSignal::new(false),
        vote: RwSignal::new(None),
        ideal_answer: RwSignal::new(String::new()),
        shown_at_ms: StoredValue::new(0.0),
        notice: RwSignal::new(None),
        error: RwSignal::new(None),
        help: RwSignal::new(false),
        stop: StoredValue::new(None),
    };
    // The first prompt, once the campaign is known.
    Effect::new(move |asked: Option<bool>| {
        if asked == Some(true) {
            return true;
        }
        if campaign.info.get().is_some() {
            state.fetch_prompt();
            return true;
        }
        if let Some(error) = campaign.error.get() {
            state.source.set(PromptSource::Failed(error));
        }
        false
    });
    Effect::new(move || {
        if state.awaiting_ack.get() && queue.pending.get() == 0 {
            state.awaiting_ack.set(false);
            state.fetch_prompt();
        }
    });
    let prompt_ref: NodeRef<leptos::html::Textarea> = NodeRef::new();
    let focus_prompt = move || {
        if let Some(element) = prompt_ref.get_untracked() {
            let _ = element.focus();
        }
    };
    let keys = window_event_listener(ev::keydown, move |event| {
        if event.key() == "Escape" {
            state.help.set(false);
            return;
        }
        if is_text_field(&event) || event.ctrl_key() || event.meta_key() || event.alt_key() {
            return;
        }
        let vote = match event.key().as_str() {
            "1" => Some(Vote::A),
            "2" => Some(Vote::B),
            "3" => Some(Vote::Tie),
            "4" => Some(Vote::BothBad),
            _ => None,
        };
        if let Some(vote) = vote {
            if state.ready_to_vote() {
                state.vote.set(Some(vote));
            }
            return;
        }
        match event.key().as_str() {
            "Enter" => {
                event.prevent_default();
                let nothing_generated = state
                    .sides
                    .iter()
                    .all(|s| s.with_untracked(Option::is_none));
                if nothing_generated
                    && matches!(state.source.get_untracked(), PromptSource::Served(_))
                {
                    state.generate(settings, loader);
                } else {
                    state.submit(loader, queue);
                }
            }
            "n" | "N" => {
                event.prevent_default();
                state.reset();
                focus_prompt();
            }
            "?" => state.help.update(|h| *h = !*h),
            _ => {}
        }
    });
    on_cleanup(move || keys.remove());

    let side_view = move |index: usize, label: &'static str, testid: &'static str| {
        let side = state.sides[index];
        view! {
            <div class="candidate" data-testid=testid data-done=move || (!state.generating.get() && side.with(Option::is_some)).to_string()>
                <h3>{label}</h3>
                {move || match side.get() {
                    Some(side) => view! { <Markdown text=side.text/> }.into_any(),
                    None => view! { <p class="muted">{if state.generating.get() { "waiting…" } else { "" }}</p> }.into_any(),
                }}
            </div>
        }
    };
    let vote_button = move |vote: Vote, key: &'static str, testid: &'static str| {
        view! {
            <button
                data-testid=testid
                class="vote"
                class:selected=move || state.vote.get() == Some(vote)
                aria-pressed=move || (state.vote.get() == Some(vote)).to_string()
                disabled=move || !state.ready_to_vote()
                on:click=move |_| state.vote.set(Some(vote))
            >
                <kbd>{key}</kbd>
                {vote_label(vote)}
            </button>
        }
    };
    view! {
        <section class="compare">
            <SettingsPanel/>
            {move || state.campaign.info.get().and_then(|info| info.sign_in_problem()).map(|problem| view! {
                <div class="error" role="alert" data-testid="invite-needed">{problem}</div>
            })}
            {move || match state.source.get() {
                PromptSource::Served(prompt) => view! {
                    <div class="served-prompt" data-testid="served-prompt" data-prompt-id=prompt.id.clone()>
                        <h3>"Prompt to label"</h3>
                        {prompt.conversation.iter().map(|message| {
                            let role = message.role.as_str();
                            view! {
                                <div class=format!("turn {role}") data-testid=format!("served-{role}")>
                                    <span class="muted">{role}</span>
                                    <Markdown text=message.content.clone()/>
                                </div>
                            }
                        }).collect_view()}
                    </div>
                }.into_any(),
                PromptSource::NoneLeft => view! {
                    <p class="notice" data-testid="no-prompts-left">
                        "No prompts are left for you in this campaign. Thank you!"
                    </p>
                }.into_any(),
                PromptSource::Failed(error) => view! {
                    <div class="error" role="alert" data-testid="prompt-error">
                        {format!("The next prompt could not be fetched: {error}")}
                    </div>
                }.into_any(),
                PromptSource::Loading => view! {
                    <p class="muted">
                        {move || if state.awaiting_ack.get() {
                            "Waiting for the server to acknowledge your vote before the next prompt…"
                        } else {
                            "Fetching the next prompt…"
                        }}
                    </p>
                }.into_any(),
                PromptSource::Own => ().into_any(),
            }}
            {move || {
                let info = state.campaign.info.get()?;
                if !info.own_prompts || info.prompts.prompts == 0 || state.generating.get() {
                    return None;
                }
                Some(match state.source.get() {
                    PromptSource::Served(_) => view! {
                        <button data-testid="write-own-prompt" class="secondary" on:click=move |_| {
                            state.reset();
                            state.source.set(PromptSource::Own);
                        }>"Write my own prompt instead"</button>
                    }.into_any(),
                    PromptSource::Own => view! {
                        <button data-testid="label-served-prompt" class="secondary" on:click=move |_| {
                            state.reset();
                            state.fetch_prompt();
                        }>"Label the campaign's next prompt"</button>
                    }.into_any(),
                    _ => ().into_any(),
                })
            }}
            {move || state.activity.get().map(|a| view! { <p class="muted" data-testid="compare-activity">{a}</p> })}
            <div class="composer">
                <textarea
                    data-testid="prompt-input"
                    hidden=move || !state.writes_own_prompt()
                    node_ref=prompt_ref
                    rows="3"
                    placeholder="A prompt to compare two answers to (Enter generates)"
                    prop:value=move || state.input.get()
                    on:input=move |ev| state.input.set(event_target_value(&ev))
                    on:keydown=move |ev| {
                        if submits_prompt(&ev) {
                            ev.prevent_default();
                            state.generate(settings, loader);
                        }
                    }
                ></textarea>
                <div class="buttons">
                    <Show
                        when=move || state.generating.get()
                        fallback=move || view! {
                            <button data-testid="send" on:click=move |_| state.generate(settings, loader)>"Generate two answers"</button>
                        }
                    >
                        <button
                            data-testid="stop"
                            class="danger"
                            on:click=move |_| {
                                if let Some(stop) = state.stop.get_value() {
                                    stop.stop();
                                }
                            }
                        >
                            "Stop"
                        </button>
                    </Show>
                    <button data-testid="new-prompt" class="secondary" on:click=move |_| { state.reset(); focus_prompt(); }>
                        <kbd>"N"</kbd>" New prompt"
                    </button>
                    <button data-testid="show-help" class="secondary" on:click=move |_| state.help.update(|h| *h = !*h)>
                        <kbd>"?"</kbd>" Shortcuts"
                    </button>
                </div>
            </div>
            <div class="candidates">
                {side_view(0, "A", "candidate-a")}
                {side_view(1, "B", "candidate-b")}
            </div>
            <div class="votes">
                {vote_button(Vote::A, "1", "vote-a")}
                {vote_button(Vote::B, "2", "vote-b")}
                {vote_button(Vote::Tie, "3", "vote-tie")}
                {vote_button(Vote::BothBad, "4", "vote-both-bad")}
            </div>
            <label class="field wide">
                <span>"Ideal answer (optional: write or correct the answer you would want)"</span>
                <textarea
                    data-testid="ideal-answer"
                    rows="3"
                    prop:value=move || state.ideal_answer.get()
                    on:input=move |ev| state.ideal_answer.set(event_target_value(&ev))
                ></textarea>
            </label>
            <div class="buttons">
                <button
                    data-testid="submit-vote"
                    disabled=move || !state.ready_to_vote() || state.vote.get().is_none()
                    on:click=move |_| state.submit(loader, queue)
                >
                    <kbd>"Enter"</kbd>" Submit vote"
                </button>
                <span class="muted">
                    "Labels submitted: "
                    <span data-testid="labels-submitted">{move || queue.acknowledged.get()}</span>
                    " · waiting to send: "
                    <span data-testid="votes-pending">{move || queue.pending.get()}</span>
                </span>
            </div>
            {move || state.notice.get().map(|n| view! { <p class="notice" data-testid="vote-notice">{n}</p> })}
            {move || state.error.get().map(|e| view! { <div class="error" role="alert" data-testid="compare-error">{e}</div> })}
            {move || queue.last_error.get().map(|e| view! { <div class="error" role="alert" data-testid="queue-error">{e}</div> })}
            <Show when=move || state.help.get()>
                <div class="overlay" data-testid="help-overlay" on:click=move |_| state.help.set(false)>
                    <div class="help">
                        <h3>"Keyboard shortcuts"</h3>
                        <dl>
                            <dt><kbd>"1"</kbd></dt><dd>"A is better"</dd>
                            <dt><kbd>"2"</kbd></dt><dd>"B is better"</dd>
                            <dt><kbd>"3"</kbd></dt><dd>"Tie"</dd>
                            <dt><kbd>"4"</kbd></dt><dd>"Both bad"</dd>
                            <dt><kbd>"Enter"</kbd></dt><dd>"Submit the vote"</dd>
                            <dt><kbd>"N"</kbd></dt><dd>"New prompt"</dd>
                            <dt><kbd>"?"</kbd></dt><dd>"Show or hide this help"</dd>
                            <dt><kbd>"Esc"</kbd></dt><dd>"Close"</dd>
                        </dl>
                        <p class="muted">"Keys work when no text field has the focus."</p>
                        <GuidelinesSection/>
                    </div>
                </div>
            </Show>
            <GuidelinesOverlay/>
        </section>
    }
}
