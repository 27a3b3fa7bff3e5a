//! A TRL row as token ids, the way TRL's DPOTrainer (and KTOTrainer, for unpaired rows) builds
//! them (TRL 1.x `_prepare_dataset`):
//! - standard rows: the prompt text as is; each answer gets the EOS token appended (unless
//!   it already ends with it) and is tokenized together with the prompt;
//! - conversational rows: the prompt through the chat template with the generation prompt;
//!   prompt + answer messages through the template without it.
//!
//! The completion starts where the tokenized prompt and prompt + answer first differ (a
//! template or a merge across the boundary can make the prompt alone tokenize differently).

use anyhow::{Context, Result};
use shared::tokenizer::common_prefix_len;
use shared::{ChatMessage, ModelText, TrlRow, UnpairedRow};

/// Token ids of one pair: the shared prompt and each completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairTokens {
    pub prompt_ids: Vec<u32>,
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
}

/// Token ids of one labelled completion (KTO): its prompt and completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledTokens {
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    pub desirable: bool,
}

/// A prompt or an answer as a row carries it.
#[derive(Clone, Copy)]
enum Part<'a> {
    Text(&'a str),
    Messages(&'a [ChatMessage]),
}

/// The ids of `prompt` alone and of `prompt` followed by `answer` (standard: the answer with
/// the EOS token appended; conversational: through the chat template).
fn encode(text: &ModelText, prompt: Part<'_>, answer: Part<'_>) -> Result<(Vec<u32>, Vec<u32>)> {
    let encode = |s: &str| text.tokenizer.encode(s).context("tokenizing a row");
    match (prompt, answer) {
        (Part::Text(prompt), Part::Text(answer)) => {
            let eos = text
                .tokenizer
                .id_to_token(text.tokenizer.eos_token_id)
                .context("the tokenizer's EOS token has no text")?;
            let answer = if answer.ends_with(&eos) {
                answer.to_string()
            } else {
                format!("{answer}{eos}")
            };
            Ok((encode(prompt)?, encode(&format!("{prompt}{answer}"))?))
        }
        (Part::Messages(prompt), Part::Messages(answer)) => {
            let render = |messages: &[ChatMessage], generation_prompt: bool| {
                text.template
                    .render(messages, generation_prompt)
                    .context("applying the chat template")
            };
            let joined: Vec<ChatMessage> = prompt.iter().chain(answer).cloned().collect();
            Ok((
                encode(&render(prompt, true)?)?,
                encode(&render(&joined, false)?)?,
            ))
        }
        _ => anyhow::bail!("a row mixes text and message lists"),
    }
}

pub fn tokenize_pair(text: &ModelText, row: &TrlRow) -> Result<PairTokens> {
    let (prompt, chosen, rejected) = match row {
        TrlRow::Standard {
            prompt,
            chosen,
            rejected,
        } => (Part::Text(prompt), Part::Text(chosen), Part::Text(rejected)),
        TrlRow::Conversational {
            prompt,
            chosen,
            rejected,
        } => (
            Part::Messages(prompt),
            Part::Messages(chosen),
            Part::Messages(rejected),
        ),
    };
    let (prompt_ids, prompt_chosen) = encode(text, prompt, chosen)?;
    let (_, prompt_rejected) = encode(text, prompt, rejected)?;
    let prompt_len = common_prefix_len(&prompt_ids, &prompt_chosen)
        .min(common_prefix_len(&prompt_ids, &prompt_rejected));
    Ok(PairTokens {
        prompt_ids: prompt_ids[..prompt_len].to_vec(),
        chosen_ids: prompt_chosen[prompt_len..].to_vec(),
        rejected_ids: prompt_rejected[prompt_len..].to_vec(),
    })
}

/// An unpaired row's ids the way TRL's KTOTrainer builds them (the same rules).
pub fn tokenize_labelled(text: &ModelText, row: &UnpairedRow) -> Result<LabelledTokens> {
    let (prompt, completion) = match row {
        UnpairedRow::Standard {
            prompt, completion, ..
        } => (Part::Text(prompt), Part::Text(completion)),
        UnpairedRow::Conversational {
            prompt, completion, ..
        } => (Part::Messages(prompt), Part::Messages(completion)),
    };
    let (prompt_ids, full) = encode(text, prompt, completion)?;
    let prompt_len = common_prefix_len(&prompt_ids, &full);
    Ok(LabelledTokens {
        prompt_ids: prompt_ids[..prompt_len].to_vec(),
        completion_ids: full[prompt_len..].to_vec(),
        desirable: row.label(),
    })
}
