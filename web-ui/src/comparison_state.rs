//! The state of one comparison in the labelling view and what can happen to it: where its
//! prompt comes from (own, or the server's prompt set), generating the two sides (a blind
//! battle takes one from another served version), the vote and the ideal answer, and the pair
//! submitted with its full provenance to the vote queue. `compare_view.rs` draws it.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::NextPrompt;
use shared::battle_pairing::battle_opponents;
use shared::generation::StopHandle;
use shared::preference_pair::PAIR_SCHEMA_VERSION;
use shared::{Candidate, ChatMessage, ModelManifest, PreferencePair, Role, SamplingParams, Vote};
use time::OffsetDateTime;

use crate::browser_storage::{annotator_id, now_ms, random_id, random_u64};
use crate::campaign::{Campaign, annotator_token};
use crate::generation_settings::GenerationSettings;
use crate::loaded_model::{self, LoadedModel};
use crate::model_loader::{LoadPhase, ModelLoader, load_battle_opponent};
use crate::server_api;
use crate::vote_queue::VoteQueue;

/// Temperature of the sampled side when the settings ask for greedy decoding.
const SAMPLED_TEMPERATURE: f32 = 0.8;

/// One side's answer and how it was generated.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub text: String,
    pub sampling: SamplingParams,
    pub seed: u64,
    /// The version that generated it.
    pub model: ModelManifest,
}

/// Where this view's prompt comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptSource {
    /// No prompt set on the server: the labeller writes the prompt.
    Own,
    Loading,
    Served(NextPrompt),
    /// The prompt set has nothing left for this annotator.
    NoneLeft,
    Failed(String),
}

#[derive(Clone, Copy)]
pub struct CompareState {
    pub campaign: Campaign,
    pub source: RwSignal<PromptSource>,
    /// What the view is doing besides generating (loading a battle's second version).
    pub activity: RwSignal<Option<String>>,
    /// A vote on a served prompt is on its way; the next prompt comes once it is delivered.
    pub awaiting_ack: RwSignal<bool>,
    pub input: RwSignal<String>,
    /// The prompt the candidates answer (system prompt first when set).
    pub conversation: RwSignal<Vec<ChatMessage>>,
    pub sides: [RwSignal<Option<Side>>; 2],
    pub generating: RwSignal<bool>,
    pub vote: RwSignal<Option<Vote>>,
    pub ideal_answer: RwSignal<String>,
    pub shown_at_ms: StoredValue<f64>,
    pub notice: RwSignal<Option<String>>,
    pub error: RwSignal<Option<String>>,
    pub help: RwSignal<bool>,
    pub stop: StoredValue<Option<StopHandle>>,
}

fn timestamp(ms: f64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl CompareState {
    /// Both answers are there and the pair store can keep them (no NUL characters).
    pub fn ready_to_vote(&self) -> bool {
        self.campaign.guidelines_read.get()
            && !self.generating.get()
            && self
                .sides
                .iter()
                .all(|s| s.with(|s| s.as_ref().is_some_and(|s| !s.text.contains('\0'))))
    }

    /// Asks the server for this annotator's next prompt (when it has a prompt set).
    pub fn fetch_prompt(self) {
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
    pub fn writes_own_prompt(&self) -> bool {
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

    /// Another served version for a blind battle, drawn with the campaign's battle share:
    /// while the server has candidates, a candidate against the default
    /// (`shared::battle_pairing`), else any other version.
    pub fn battle_opponent(&self, loader: ModelLoader, loaded: &str) -> Option<ModelManifest> {
        let share = self.campaign.info.get_untracked()?.battle_share;
        let versions = loader.versions.get_untracked();
        let names: Vec<String> = versions.iter().map(|m| m.version.clone()).collect();
        let default_version = loader.default_version.get_untracked();
        let candidates = loader.candidates.get_untracked();
        let opponents = battle_opponents(loaded, default_version.as_deref(), &candidates, &names);
        let others: Vec<ModelManifest> = versions
            .into_iter()
            .filter(|m| opponents.contains(&m.version.as_str()))
            .collect();
        if others.is_empty() || js_sys::Math::random() >= share {
            return None;
        }
        Some(others[(random_u64() % others.len() as u64) as usize].clone())
    }

    /// Generates both answers to the prompt, in random order on screen.
    pub fn generate(self, settings: GenerationSettings, loader: ModelLoader) {
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
    pub fn submit(self, loader: ModelLoader, queue: VoteQueue) {
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
    pub fn reset(self) {
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

/// How a vote reads to the labeller.
pub fn vote_label(vote: Vote) -> &'static str {
    match vote {
        Vote::A => "A is better",
        Vote::B => "B is better",
        Vote::Tie => "tie",
        Vote::BothBad => "both bad",
    }
}
