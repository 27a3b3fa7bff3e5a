//! Multi-turn chat with the loaded model: replies stream in token by token; stop,
//! regenerate, edit-and-resend a user turn, copy a reply; the system prompt and sampling
//! settings apply to every reply, and the last reply's speed is shown.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::generation::{GenerationStats, StopHandle, StopReason};
use shared::{ChatMessage, Role};

use crate::generation_settings::{GenerationSettings, SettingsPanel};
use crate::loaded_model;
use crate::markdown_view::Markdown;

#[derive(Clone, Copy)]
struct ChatState {
    /// Finished turns (no system prompt: that lives in the settings).
    messages: RwSignal<Vec<ChatMessage>>,
    /// The reply being streamed.
    streaming: RwSignal<Option<String>>,
    input: RwSignal<String>,
    stats: RwSignal<Option<GenerationStats>>,
    error: RwSignal<Option<String>>,
    stop: StoredValue<Option<StopHandle>>,
}

impl ChatState {
    fn busy(&self) -> bool {
        self.streaming.get().is_some()
    }

    /// Sends the input as a user turn and streams the reply.
    fn send(self, settings: GenerationSettings) {
        let text = self.input.get_untracked();
        if text.trim().is_empty() || self.streaming.get_untracked().is_some() {
            return;
        }
        self.messages
            .update(|m| m.push(ChatMessage::new(Role::User, text)));
        self.input.set(String::new());
        self.reply(settings);
    }

    /// Streams an assistant reply to the conversation as it stands.
    fn reply(self, settings: GenerationSettings) {
        let (mut model, sampling, mut conversation) = match settings.begin_reply() {
            Ok(begun) => begun,
            Err(error) => {
                self.error.set(Some(error));
                return;
            }
        };
        conversation.extend(self.messages.get_untracked());
        let seed = settings.next_seed();
        let stop = StopHandle::new();
        self.stop.set_value(Some(stop.clone()));
        self.error.set(None);
        self.streaming.set(Some(String::new()));
        let streaming = self.streaming;
        spawn_local(async move {
            let result = model
                .generate(&conversation, sampling, seed, stop, &mut |piece| {
                    streaming.update(|s| {
                        if let Some(s) = s {
                            s.push_str(piece)
                        }
                    })
                })
                .await;
            loaded_model::put_back(model);
            let partial = self.streaming.get_untracked().unwrap_or_default();
            match result {
                Ok((reply, stats)) => {
                    self.messages
                        .update(|m| m.push(ChatMessage::new(Role::Assistant, reply)));
                    self.stats.set(Some(stats));
                }
                Err(error) => {
                    if !partial.is_empty() {
                        self.messages
                            .update(|m| m.push(ChatMessage::new(Role::Assistant, partial)));
                    }
                    self.error.set(Some(error));
                }
            }
            self.stop.set_value(None);
            self.streaming.set(None);
        });
    }

    fn stop(self) {
        if let Some(stop) = self.stop.get_value() {
            stop.stop();
        }
    }

    /// Drops the last reply and generates a new one.
    fn regenerate(self, settings: GenerationSettings) {
        if self.streaming.get_untracked().is_some() {
            return;
        }
        let last_is_reply = self
            .messages
            .with_untracked(|m| m.last().is_some_and(|m| m.role == Role::Assistant));
        if last_is_reply {
            self.messages.update(|m| {
                m.pop();
            });
        }
        if self
            .messages
            .with_untracked(|m| m.last().is_some_and(|m| m.role == Role::User))
        {
            self.reply(settings);
        }
    }

    /// Puts user turn `index` back in the input and forgets it and everything after it.
    fn edit(self, index: usize) {
        if self.streaming.get_untracked().is_some() {
            return;
        }
        let Some(text) = self
            .messages
            .with_untracked(|m| m.get(index).map(|m| m.content.clone()))
        else {
            return;
        };
        self.messages.update(|m| m.truncate(index));
        self.input.set(text);
    }
}

/// Whether a key press in a prompt box submits it: Enter, but not Shift+Enter (a new line)
/// nor the Enter that ends an input-method composition.
pub fn submits_prompt(ev: &web_sys::KeyboardEvent) -> bool {
    ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing()
}

fn copy_to_clipboard(text: String) {
    if let Some(window) = web_sys::window() {
        let _ = window.navigator().clipboard().write_text(&text);
    }
}

#[component]
pub fn ChatView() -> impl IntoView {
    let settings = expect_context::<GenerationSettings>();
    let state = ChatState {
        messages: RwSignal::new(Vec::new()),
        streaming: RwSignal::new(None),
        input: RwSignal::new(String::new()),
        stats: RwSignal::new(None),
        error: RwSignal::new(None),
        stop: StoredValue::new(None),
    };
    let message_list = move || {
        state
            .messages
            .get()
            .into_iter()
            .enumerate()
            .map(|(index, message)| {
                let content = message.content.clone();
                match message.role {
                    Role::User => view! {
                        <article class="message user" data-testid="message-user">
                            <Markdown text=content/>
                            <div class="actions">
                                <button
                                    data-testid="edit-message"
                                    class="link"
                                    on:click=move |_| state.edit(index)
                                >
                                    "Edit"
                                </button>
                            </div>
                        </article>
                    }
                    .into_any(),
                    _ => {
                        let copied = content.clone();
                        view! {
                            <article class="message assistant" data-testid="message-assistant">
                                <Markdown text=content/>
                                <div class="actions">
                                    <button
                                        data-testid="copy-message"
                                        class="link"
                                        on:click=move |_| copy_to_clipboard(copied.clone())
                                    >
                                        "Copy"
                                    </button>
                                </div>
                            </article>
                        }
                        .into_any()
                    }
                }
            })
            .collect_view()
    };
    let streaming_reply = move || {
        state.streaming.get().map(|text| {
            view! {
                <article class="message assistant streaming" data-testid="message-assistant" data-streaming="true">
                    <Markdown text=text/>
                    <span class="cursor">"▍"</span>
                </article>
            }
        })
    };
    let readout = move || {
        state.stats.get().map(|s| {
            view! {
                <span
                    data-testid="tokens-per-second"
                    class="muted"
                    data-prompt-tokens=s.prompt_tokens
                    data-generated-tokens=s.generated_tokens
                    data-first-token-ms=s.first_token_ms
                    data-decode-tokens-per-second=s.decode_tokens_per_second()
                >
                    {format!(
                        "{} tokens · {:.1} tok/s · first token after {:.2} s ({} prompt tokens){}",
                        s.generated_tokens,
                        s.decode_tokens_per_second(),
                        s.first_token_ms / 1000.0,
                        s.prompt_tokens,
                        if s.stop_reason == StopReason::Stopped { " · stopped" } else { "" }
                    )}
                </span>
            }
        })
    };
    view! {
        <section class="chat">
            <SettingsPanel/>
            <div class="messages" data-testid="messages">
                {message_list}
                {streaming_reply}
            </div>
            {move || state.error.get().map(|e| view! { <div class="error" role="alert" data-testid="chat-error">{e}</div> })}
            <div class="composer">
                <textarea
                    data-testid="prompt-input"
                    rows="3"
                    placeholder="Message the model (Enter sends, Shift+Enter for a new line)"
                    prop:value=move || state.input.get()
                    on:input=move |ev| state.input.set(event_target_value(&ev))
                    on:keydown=move |ev| {
                        if submits_prompt(&ev) {
                            ev.prevent_default();
                            state.send(settings);
                        }
                    }
                ></textarea>
                <div class="buttons">
                    <Show
                        when=move || state.busy()
                        fallback=move || view! {
                            <button data-testid="send" on:click=move |_| state.send(settings)>"Send"</button>
                        }
                    >
                        <button data-testid="stop" class="danger" on:click=move |_| state.stop()>"Stop"</button>
                    </Show>
                    <button
                        data-testid="regenerate"
                        class="secondary"
                        disabled=move || state.busy() || state.messages.with(|m| m.is_empty())
                        on:click=move |_| state.regenerate(settings)
                    >
                        "Regenerate"
                    </button>
                    <button
                        data-testid="new-chat"
                        class="secondary"
                        disabled=move || state.busy()
                        on:click=move |_| {
                            state.messages.set(Vec::new());
                            state.stats.set(None);
                            state.error.set(None);
                        }
                    >
                        "New chat"
                    </button>
                    {readout}
                </div>
            </div>
        </section>
    }
}
