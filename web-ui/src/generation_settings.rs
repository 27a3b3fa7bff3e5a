//! The sampling settings and system prompt chat and compare use, and their form: temperature,
//! top-p, top-k, repetition penalty, max new tokens and an optional fixed seed. Defaults are
//! Qwen2.5-Instruct's own `generation_config.json`.

use leptos::prelude::*;
use shared::{ChatMessage, Role, SamplingParams};

use crate::browser_storage::random_u64;
use crate::loaded_model::{self, LoadedModel};

#[derive(Debug, Clone, Copy)]
pub struct GenerationSettings {
    pub system_prompt: RwSignal<String>,
    pub temperature: RwSignal<f32>,
    pub top_p: RwSignal<f32>,
    pub top_k: RwSignal<u32>,
    pub repeat_penalty: RwSignal<f32>,
    pub max_new_tokens: RwSignal<u32>,
    /// A fixed seed makes sampled replies repeatable; `None` draws one per reply.
    pub seed: RwSignal<Option<u64>>,
}

impl GenerationSettings {
    pub fn new() -> Self {
        Self {
            system_prompt: RwSignal::new(String::new()),
            temperature: RwSignal::new(0.7),
            top_p: RwSignal::new(0.8),
            top_k: RwSignal::new(20),
            repeat_penalty: RwSignal::new(1.05),
            max_new_tokens: RwSignal::new(512),
            seed: RwSignal::new(None),
        }
    }

    /// The settings as the engine takes them; the error names the field.
    pub fn sampling(&self) -> Result<SamplingParams, String> {
        let params = SamplingParams {
            temperature: self.temperature.get_untracked(),
            top_p: self.top_p.get_untracked(),
            top_k: self.top_k.get_untracked(),
            repeat_penalty: self.repeat_penalty.get_untracked(),
            repeat_last_n: 64,
            max_new_tokens: self.max_new_tokens.get_untracked(),
        };
        params.validate()?;
        Ok(params)
    }

    /// Everything a reply needs before it starts: the checked sampling settings, the model
    /// (taken out of its slot: `loaded_model::put_back` returns it) and the turns the
    /// conversation opens with (the system prompt, when one is set). The error says why not.
    pub fn begin_reply(&self) -> Result<(LoadedModel, SamplingParams, Vec<ChatMessage>), String> {
        let sampling = self
            .sampling()
            .map_err(|error| format!("sampling settings: {error}"))?;
        let model = loaded_model::take().ok_or("the model is busy with another reply")?;
        let system = self.system_prompt.get_untracked();
        let opening = if system.trim().is_empty() {
            Vec::new()
        } else {
            vec![ChatMessage::new(Role::System, system)]
        };
        Ok((model, sampling, opening))
    }

    /// The seed for the next reply.
    pub fn next_seed(&self) -> u64 {
        self.seed.get_untracked().unwrap_or_else(random_u64)
    }
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self::new()
    }
}

/// A number input bound to `value`; text that does not parse leaves the value unchanged
/// and marks the field invalid.
fn number_field<T>(
    label: &'static str,
    testid: &'static str,
    step: &'static str,
    value: RwSignal<T>,
) -> impl IntoView
where
    T: std::str::FromStr + std::fmt::Display + Clone + Send + Sync + 'static,
{
    let invalid = RwSignal::new(false);
    view! {
        <label class="field" class:invalid=move || invalid.get()>
            <span>{label}</span>
            <input
                type="number"
                step=step
                data-testid=testid
                prop:value=move || value.get().to_string()
                on:change=move |ev| {
                    match event_target_value(&ev).trim().parse::<T>() {
                        Ok(parsed) => {
                            invalid.set(false);
                            value.set(parsed);
                        }
                        Err(_) => invalid.set(true),
                    }
                }
            />
        </label>
    }
}

/// The settings form (system prompt and sampling), folded away by default.
#[component]
pub fn SettingsPanel() -> impl IntoView {
    let settings = expect_context::<GenerationSettings>();
    let seed_invalid = RwSignal::new(false);
    view! {
        <details class="settings" data-testid="settings">
            <summary>"System prompt & sampling"</summary>
            <label class="field wide">
                <span>"System prompt"</span>
                <textarea
                    data-testid="system-prompt"
                    rows="2"
                    placeholder="(the model's default)"
                    prop:value=move || settings.system_prompt.get()
                    on:input=move |ev| settings.system_prompt.set(event_target_value(&ev))
                ></textarea>
            </label>
            <div class="fields">
                {number_field("Temperature (0 = greedy)", "temperature", "0.05", settings.temperature)}
                {number_field("Top-p", "top-p", "0.05", settings.top_p)}
                {number_field("Top-k (0 = off)", "top-k", "1", settings.top_k)}
                {number_field("Repetition penalty", "repeat-penalty", "0.01", settings.repeat_penalty)}
                {number_field("Max new tokens", "max-new-tokens", "1", settings.max_new_tokens)}
                <label class="field" class:invalid=move || seed_invalid.get()>
                    <span>"Seed (empty = random)"</span>
                    <input
                        type="text"
                        inputmode="numeric"
                        data-testid="seed"
                        prop:value=move || settings.seed.get().map(|s| s.to_string()).unwrap_or_default()
                        on:change=move |ev| {
                            let text = event_target_value(&ev);
                            let text = text.trim();
                            if text.is_empty() {
                                seed_invalid.set(false);
                                settings.seed.set(None);
                            } else if let Ok(seed) = text.parse::<u64>() {
                                seed_invalid.set(false);
                                settings.seed.set(Some(seed));
                            } else {
                                seed_invalid.set(true);
                            }
                        }
                    />
                </label>
            </div>
        </details>
    }
}
