//! A multi-turn chat: keeps the messages, renders each prompt with the model's chat template,
//! streams the reply as text pieces and remembers it for the next turn.

use anyhow::Result;
use shared::generation::{GeneratingSequence, GenerationStats};
use shared::{ChatMessage, ModelText, SamplingParams};

use super::blocking_generation::generate;

pub struct Conversation<S: GeneratingSequence> {
    sequence: S,
    text: ModelText,
    system: Option<String>,
    messages: Vec<ChatMessage>,
    sampling: SamplingParams,
    seed: u64,
    turns: u64,
}

impl<S: GeneratingSequence> Conversation<S> {
    pub fn new(
        sequence: S,
        text: ModelText,
        system: Option<String>,
        sampling: SamplingParams,
        seed: u64,
    ) -> Self {
        Self {
            sequence,
            text,
            system,
            messages: Vec::new(),
            sampling,
            seed,
            turns: 0,
        }
    }

    /// The messages as the template sees them, system prompt first.
    pub fn messages(&self) -> Vec<ChatMessage> {
        self.system
            .iter()
            .map(|s| ChatMessage::system(s.clone()))
            .chain(self.messages.iter().cloned())
            .collect()
    }

    /// Answers `user_text`; `on_text` receives the reply as it is generated.
    pub fn reply(
        &mut self,
        user_text: &str,
        on_text: &mut dyn FnMut(&str) -> std::io::Result<()>,
    ) -> Result<(String, GenerationStats)> {
        self.messages.push(ChatMessage::user(user_text));
        let prompt = self.text.template.render(&self.messages(), true)?;
        let prompt_tokens = self.text.tokenizer.encode(&prompt)?;
        tracing::debug!("prompt of {} tokens: {prompt:?}", prompt_tokens.len());
        let mut decoder = self.text.tokenizer.stream_decoder();
        // Each turn gets its own seed so that a multi-turn chat is reproducible as a whole.
        let seed = self.seed.wrapping_add(self.turns);
        let stop_tokens = self.text.stop_tokens();
        let result = generate(
            &mut self.sequence,
            &prompt_tokens,
            self.sampling,
            seed,
            &stop_tokens,
            &mut |id| {
                if let Some(piece) = decoder.push(id)? {
                    on_text(&piece)?;
                }
                Ok(true)
            },
        );
        let stats = match result {
            Ok(stats) => stats,
            Err(error) => {
                self.messages.pop();
                return Err(error);
            }
        };
        if let Some(rest) = decoder.finish()? {
            on_text(&rest)?;
        }
        let reply = decoder.text()?;
        self.messages.push(ChatMessage::assistant(reply.clone()));
        self.turns += 1;
        Ok((reply, stats))
    }

    pub fn reset(&mut self) {
        self.messages.clear();
        self.sequence.truncate(0);
    }
}
