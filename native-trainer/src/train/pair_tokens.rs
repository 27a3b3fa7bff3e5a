//! A TRL row as token ids, the way TRL's DPOTrainer builds them (TRL 1.x `_prepare_dataset`):
//! - standard rows: the prompt text as is; each answer gets the EOS token appended (unless
//!   it already ends with it) and is tokenized together with the prompt;
//! - conversational rows: the prompt through the chat template with the generation prompt;
//!   prompt + answer messages through the template without it.
//!
//! The completion starts where the tokenized prompt and prompt + answer first differ (a
//! template or a merge across the boundary can make the prompt alone tokenize differently).

use anyhow::{Context, Result};
use shared::tokenizer::common_prefix_len;
use shared::{ModelText, TrlRow};

/// Token ids of one pair: the shared prompt and each completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairTokens {
    pub prompt_ids: Vec<u32>,
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
}

pub fn tokenize_pair(text: &ModelText, row: &TrlRow) -> Result<PairTokens> {
    let encode = |s: &str| text.tokenizer.encode(s).context("tokenizing a pair");
    let (prompt_ids, prompt_chosen, prompt_rejected) = match row {
        TrlRow::Standard {
            prompt,
            chosen,
            rejected,
        } => {
            let eos = text
                .tokenizer
                .id_to_token(text.tokenizer.eos_token_id)
                .context("the tokenizer's EOS token has no text")?;
            let with_eos = |answer: &str| {
                if answer.ends_with(&eos) {
                    answer.to_string()
                } else {
                    format!("{answer}{eos}")
                }
            };
            (
                encode(prompt)?,
                encode(&format!("{prompt}{}", with_eos(chosen)))?,
                encode(&format!("{prompt}{}", with_eos(rejected)))?,
            )
        }
        TrlRow::Conversational {
            prompt,
            chosen,
            rejected,
        } => {
            let render = |messages: &[shared::ChatMessage], generation_prompt: bool| {
                text.template
                    .render(messages, generation_prompt)
                    .context("applying the chat template")
            };
            let joined = |answer: &[shared::ChatMessage]| {
                prompt.iter().chain(answer).cloned().collect::<Vec<_>>()
            };
            (
                encode(&render(prompt, true)?)?,
                encode(&render(&joined(chosen), false)?)?,
                encode(&render(&joined(rejected), false)?)?,
            )
        }
    };
    let prompt_len = common_prefix_len(&prompt_ids, &prompt_chosen)
        .min(common_prefix_len(&prompt_ids, &prompt_rejected));
    Ok(PairTokens {
        prompt_ids: prompt_ids[..prompt_len].to_vec(),
        chosen_ids: prompt_chosen[prompt_len..].to_vec(),
        rejected_ids: prompt_rejected[prompt_len..].to_vec(),
    })
}
