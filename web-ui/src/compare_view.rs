//! Compare and vote — the labelling view. One prompt, two answers from the loaded model with
//! different seeds (and, when the settings are greedy, one greedy and one sampled answer),
//! shown side by side in random order; the labeller votes A better, B better, tie or both
//! bad, may write the ideal answer, and submits. The pair goes to the vote queue with its
//! full provenance (model version and sha256, sampling settings and seed of each side, when
//! it was shown and voted). Keyboard first: 1–4 vote, Enter submits, N starts a new prompt,
//! ? shows the shortcuts.

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::engine::StopHandle;
use shared::preference_pair::PAIR_SCHEMA_VERSION;
use shared::{Candidate, ChatMessage, PreferencePair, Role, SamplingParams, Vote};
use time::OffsetDateTime;

use crate::browser_storage::{annotator_id, now_ms, random_id, random_u64};
use crate::chat_view::submits_prompt;
use crate::generation_settings::{GenerationSettings, SettingsPanel};
use crate::loaded_model;
use crate::markdown_view::Markdown;
use crate::model_loader::ModelLoader;
use crate::vote_queue::VoteQueue;

/// Temperature of the sampled side when the settings ask for greedy decoding.
const SAMPLED_TEMPERATURE: f32 = 0.8;

/// One side's answer and how it was generated.
#[derive(Debug, Clone, PartialEq)]
struct Side {
    text: String,
    sampling: SamplingParams,
    seed: u64,
}

#[derive(Clone, Copy)]
struct CompareState {
    input: RwSignal<String>,
    /// The prompt the candidates answer (system prompt first when set).
    conversation: RwSignal<Vec<ChatMessage>>,
    sides: [RwSignal<Option<Side>>; 2],
    generating: RwSignal<bool>,
    vote: RwSignal<Option<Vote>>,
    ideal_answer: RwSignal<String>,
    shown_at_ms: StoredValue<f64>,
    notice: RwSignal<Option<String>>,
    error: RwSignal<Option<String>>,
    help: RwSignal<bool>,
    stop: StoredValue<Option<StopHandle>>,
}

fn timestamp(ms: f64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl CompareState {
    /// Both answers are there and the pair store can keep them (no NUL characters).
    fn ready_to_vote(&self) -> bool {
        !self.generating.get()
            && self
                .sides
                .iter()
                .all(|s| s.with(|s| s.as_ref().is_some_and(|s| !s.text.contains('\0'))))
    }

    /// Generates both answers to the input, in random order on screen.
    fn generate(self, settings: GenerationSettings) {
        let prompt = self.input.get_untracked();
        if prompt.trim().is_empty() || self.generating.get_untracked() {
            return;
        }
        let (mut model, base, mut conversation) = match settings.begin_reply() {
            Ok(begun) => begun,
            Err(error) => {
                self.error.set(Some(error));
                return;
            }
        };
        conversation.push(ChatMessage::new(Role::User, prompt));
        let second = SamplingParams {
            temperature: if base.is_greedy() {
                SAMPLED_TEMPERATURE
            } else {
                base.temperature
            },
            ..base
        };
        let mut plans = [(base, settings.next_seed()), (second, random_u64())];
        if plans[1].1 == plans[0].1 {
            plans[1].1 = plans[0].1.wrapping_add(1);
        }
        if random_u64() % 2 == 1 {
            plans.swap(0, 1);
        }
        self.conversation.set(conversation.clone());
        self.vote.set(None);
        self.ideal_answer.set(String::new());
        self.notice.set(None);
        self.error.set(None);
        for side in self.sides {
            side.set(None);
        }
        self.generating.set(true);
        let stop = StopHandle::new();
        self.stop.set_value(Some(stop.clone()));
        spawn_local(async move {
            let mut failure = None;
            for (side, (sampling, seed)) in self.sides.into_iter().zip(plans) {
                side.set(Some(Side {
                    text: String::new(),
                    sampling,
                    seed,
                }));
                let result = model
                    .generate(&conversation, sampling, seed, stop.clone(), &mut |piece| {
                        side.update(|s| {
                            if let Some(s) = s {
                                s.text.push_str(piece)
                            }
                        })
                    })
                    .await;
                if let Err(error) = result {
                    failure = Some(error);
                    break;
                }
            }
            loaded_model::put_back(model);
            self.stop.set_value(None);
            self.shown_at_ms.set_value(now_ms());
            self.generating.set(false);
            if let Some(error) = failure {
                self.error.set(Some(error));
            } else if self
                .sides
                .iter()
                .any(|s| s.with_untracked(|s| s.as_ref().is_some_and(|s| s.text.contains('\0'))))
            {
                self.error.set(Some(
                    "an answer contains a NUL character, which the pair store cannot keep: \
                     generate again"
                        .into(),
                ));
            }
        });
    }

    /// Queues the vote as a preference pair.
    fn submit(self, loader: ModelLoader, queue: VoteQueue) {
        if !self.ready_to_vote() {
            return;
        }
        let Some(vote) = self.vote.get_untracked() else {
            self.error.set(Some("pick a vote first (1–4)".into()));
            return;
        };
        let Some(manifest) = loader.loaded.get_untracked() else {
            self.error.set(Some("no model is loaded".into()));
            return;
        };
        let model = manifest.model_ref();
        let [a, b] = self
            .sides
            .map(|s| s.get_untracked().expect("both sides are generated"));
        let candidate = |side: Side| Candidate {
            text: side.text,
            model: model.clone(),
            sampling: side.sampling,
            seed: side.seed,
        };
        let ideal = self.ideal_answer.get_untracked();
        let pair = PreferencePair {
            schema_version: PAIR_SCHEMA_VERSION,
            idempotency_key: random_id(),
            annotator_id: annotator_id(),
            conversation: self.conversation.get_untracked(),
            candidate_a: candidate(a),
            candidate_b: candidate(b),
            vote,
            edited_answer: (!ideal.trim().is_empty()).then_some(ideal),
            shown_at: timestamp(self.shown_at_ms.get_value()),
            voted_at: timestamp(now_ms().max(self.shown_at_ms.get_value())),
        };
        match queue.submit(&pair) {
            Ok(()) => {
                self.reset();
                self.notice
                    .set(Some(format!("Vote saved ({}).", vote_label(vote))));
            }
            Err(error) => self
                .error
                .set(Some(format!("the vote was not saved: {error}"))),
        }
    }

    /// Clears the comparison for the next prompt.
    fn reset(self) {
        if self.generating.get_untracked() {
            return;
        }
        self.input.set(String::new());
        self.conversation.set(Vec::new());
        for side in self.sides {
            side.set(None);
        }
        self.vote.set(None);
        self.ideal_answer.set(String::new());
        self.error.set(None);
        self.notice.set(None);
    }
}

fn vote_label(vote: Vote) -> &'static str {
    match vote {
        Vote::A => "A is better",
        Vote::B => "B is better",
        Vote::Tie => "tie",
        Vote::BothBad => "both bad",
    }
}

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
    let state = CompareState {
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
                state.submit(loader, queue);
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
            <div class="composer">
                <textarea
                    data-testid="prompt-input"
                    node_ref=prompt_ref
                    rows="3"
                    placeholder="A prompt to compare two answers to (Enter generates)"
                    prop:value=move || state.input.get()
                    on:input=move |ev| state.input.set(event_target_value(&ev))
                    on:keydown=move |ev| {
                        if submits_prompt(&ev) {
                            ev.prevent_default();
                            state.generate(settings);
                        }
                    }
                ></textarea>
                <div class="buttons">
                    <Show
                        when=move || state.generating.get()
                        fallback=move || view! {
                            <button data-testid="send" on:click=move |_| state.generate(settings)>"Generate two answers"</button>
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
                    </div>
                </div>
            </Show>
        </section>
    }
}
