//! Compare and vote — the labelling view. One prompt, two answers from the loaded model with
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
use leptos::task::spawn_local;
use shared::api::NextPrompt;
use shared::generation::StopHandle;
use shared::preference_pair::PAIR_SCHEMA_VERSION;
use shared::{Candidate, ChatMessage, ModelManifest, PreferencePair, Role, SamplingParams, Vote};
use time::OffsetDateTime;

use crate::browser_storage::{annotator_id, now_ms, random_id, random_u64};
use crate::campaign::{Campaign, annotator_token};
use crate::chat_view::submits_prompt;
use crate::generation_settings::{GenerationSettings, SettingsPanel};
use crate::guidelines_view::{GuidelinesOverlay, GuidelinesSection};
use crate::loaded_model::{self, LoadedModel};
use crate::markdown_view::Markdown;
use crate::model_loader::{LoadPhase, ModelLoader, load_battle_opponent};
use crate::server_api;
use crate::vote_queue::VoteQueue;

/// Temperature of the sampled side when the settings ask for greedy decoding.
const SAMPLED_TEMPERATURE: f32 = 0.8;

/// One side's answer and how it was generated.
#[derive(Debug, Clone, PartialEq)]
struct Side {
    text: String,
    sampling: SamplingParams,
    seed: u64,
    /// The version that generated it.
    model: ModelManifest,
}

/// Where this view's prompt comes from.
#[derive(Debug, Clone, PartialEq)]
enum PromptSource {
    /// No prompt set on the server: the labeller writes the prompt.
    Own,
    Loading,
    Served(NextPrompt),
    /// The prompt set has nothing left for this annotator.
    NoneLeft,
    Failed(String),
}

#[derive(Clone, Copy)]
struct CompareState {
    campaign: Campaign,
    source: RwSignal<PromptSource>,
    /// What the view is doing besides generating (loading a battle's second version).
    activity: RwSignal<Option<String>>,
    /// A vote on a served prompt is on its way; the next prompt comes once it is delivered.
    awaiting_ack: RwSignal<bool>,
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
        self.campaign.guidelines_read.get()
            && !self.generating.get()
            && self
                .sides
                .iter()
                .all(|s| s.with(|s| s.as_ref().is_some_and(|s| !s.text.contains('\0'))))
    }

    /// Asks the server for this annotator's next prompt (when it has a prompt set).
    fn fetch_prompt(self) {
        let Some(info) = self.campaign.info.get_untracked() else {
            return;
        };
        if info.prompts.prompts == 0 || info.sign_in_problem().is_some() {
            self.source.set(PromptSource::Own);
            return;
        }
        self.source.set(PromptSource::Loading);
        spawn_local(async move {
            let token = annotator_token();
            self.source.set(
                match server_api::next_prompt(token.as_deref(), &annotator_id()).await {
                    Ok(Some(prompt)) => PromptSource::Served(prompt),
                    Ok(None) => PromptSource::NoneLeft,
                    Err(error) => PromptSource::Failed(error),
                },
            );
        });
    }

    /// Whether the labeller may write the prompt now.
    fn writes_own_prompt(&self) -> bool {
        match self.source.get() {
            PromptSource::Own => true,
            PromptSource::Served(_) | PromptSource::Loading => false,
            PromptSource::NoneLeft | PromptSource::Failed(_) => self
                .campaign
                .info
                .get()
                .is_some_and(|info| info.own_prompts),
        }
    }

    /// Another served version for a blind battle, drawn with the campaign's battle share.
    fn battle_opponent(&self, loader: ModelLoader, loaded: &str) -> Option<ModelManifest> {
        let share = self.campaign.info.get_untracked()?.battle_share;
        let others: Vec<ModelManifest> = loader
            .versions
            .get_untracked()
            .into_iter()
            .filter(|m| m.version != loaded)
            .collect();
        if others.is_empty() || js_sys::Math::random() >= share {
            return None;
        }
        Some(others[(random_u64() % others.len() as u64) as usize].clone())
    }

    /// Generates both answers to the prompt, in random order on screen.
    fn generate(self, settings: GenerationSettings, loader: ModelLoader) {
        if self.generating.get_untracked() {
            return;
        }
        if let Some(problem) = self
            .campaign
            .info
            .get_untracked()
            .and_then(|i| i.sign_in_problem())
        {
            self.error.set(Some(problem.into()));
            return;
        }
        let served = match self.source.get_untracked() {
            PromptSource::Served(prompt) => Some(prompt),
            _ if self.writes_own_prompt() => None,
            _ => return,
        };
        let prompt = self.input.get_untracked();
        if served.is_none() && prompt.trim().is_empty() {
            return;
        }
        let (mut model, base, mut conversation) = match settings.begin_reply() {
            Ok(begun) => begun,
            Err(error) => {
                self.error.set(Some(error));
                return;
            }
        };
        let opponent = self.battle_opponent(loader, &model.manifest.version);
        let seeds = match &served {
            Some(prompt) => {
                conversation = prompt.conversation.clone();
                prompt.seeds
            }
            None => {
                conversation.push(ChatMessage::new(Role::User, prompt));
                let first = settings.next_seed();
                let mut second = random_u64();
                if second == first {
                    second = first.wrapping_add(1);
                }
                [first, second]
            }
        };
        // A battle compares versions under the same settings; otherwise the second side is
        // sampled even when the settings are greedy, so the two answers can differ.
        let second = SamplingParams {
            temperature: if base.is_greedy() && opponent.is_none() {
                SAMPLED_TEMPERATURE
            } else {
                base.temperature
            },
            ..base
        };
        // (sampling, seed, from the battle opponent)
        let mut plans = [
            (base, seeds[0], false),
            (second, seeds[1], opponent.is_some()),
        ];
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
            let mut rival: Option<LoadedModel> = None;
            let mut failure = None;
            if let Some(manifest) = opponent {
                rival = loaded_model::take_opponent(&manifest.version);
                if rival.is_none() {
                    loaded_model::drop_opponent();
                    let activity = self.activity;
                    activity.set(Some(
                        "Loading another version for a blind comparison…".into(),
                    ));
                    match load_battle_opponent(manifest, &|phase| {
                        if let LoadPhase::Downloading(p) = phase {
                            activity.set(Some(format!(
                                "Downloading another version for a blind comparison… {:.0}%",
                                p.received as f64 * 100.0 / p.total.max(1) as f64
                            )));
                        }
                    })
                    .await
                    {
                        Ok(loaded) => rival = Some(loaded),
                        Err(error) => failure = Some(error),
                    }
                    activity.set(None);
                }
            }
            for (side, (sampling, seed, from_rival)) in self.sides.into_iter().zip(plans) {
                if failure.is_some() {
                    break;
                }
                let generator = match (from_rival, rival.as_mut()) {
                    (true, Some(rival)) => rival,
                    _ => &mut model,
                };
                side.set(Some(Side {
                    text: String::new(),
                    sampling,
                    seed,
                    model: generator.manifest.clone(),
                }));
                let result = generator
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
                }
            }
            loaded_model::put_back(model);
            if let Some(rival) = rival {
                loaded_model::keep_opponent(rival);
            }
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
        if loader.loaded.get_untracked().is_none() {
            self.error.set(Some("no model is loaded".into()));
            return;
        }
        let [a, b] = self
            .sides
            .map(|s| s.get_untracked().expect("both sides are generated"));
        let candidate = |side: Side| Candidate {
            text: side.text,
            model: side.model.model_ref(),
            sampling: side.sampling,
            seed: side.seed,
        };
        let prompt_id = match self.source.get_untracked() {
            PromptSource::Served(prompt) => Some(prompt.id),
            _ => None,
        };
        let ideal = self.ideal_answer.get_untracked();
        let pair = PreferencePair {
            schema_version: PAIR_SCHEMA_VERSION,
            idempotency_key: random_id(),
            annotator_id: annotator_id(),
            prompt_id,
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
                if pair.prompt_id.is_some() {
                    // The next prompt once the server has this vote (until then it would hand
                    // back the prompt this annotator still holds a lease on).
                    self.source.set(PromptSource::Loading);
                    self.awaiting_ack.set(true);
                }
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
