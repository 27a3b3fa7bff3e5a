//! Prompt sets, as the store keeps them: a prompt to label (an id and the conversation the
//! two answers continue) with the number of acknowledged labels it wants, the key that makes
//! two prompts the same (their normalised conversation), and what an import did.

use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::ChatMessage;

/// A prompt to add to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPrompt {
    pub id: String,
    pub conversation: Vec<ChatMessage>,
    pub labels_wanted: u32,
}

/// A prompt handed to an annotator (`GET /api/prompts/next`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServedPrompt {
    pub id: String,
    pub conversation: Vec<ChatMessage>,
}

/// What `PairStore::add_prompts` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PromptImport {
    pub added: u64,
    /// Prompts whose normalised conversation (or id) the store already had, or that came
    /// twice in the import.
    pub duplicates: u64,
}

/// Two conversations are the same prompt when their roles match and their texts match after
/// trimming and collapsing runs of whitespace.
pub fn conversation_key(conversation: &[ChatMessage]) -> String {
    let normalised: Vec<(&str, String)> = conversation
        .iter()
        .map(|message| {
            (
                message.role.as_str(),
                message
                    .content
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect();
    serde_json::to_string(&normalised).expect("strings serialize")
}

/// The id of a prompt imported without one: `p-` and 16 hex digits of its key's sha256.
pub fn derived_prompt_id(conversation: &[ChatMessage]) -> String {
    let digest = Sha256::digest(conversation_key(conversation).as_bytes());
    format!("p-{}", &hex::encode(digest)[..16])
}

/// The seeds both answers to a served prompt are sampled with: the same for every annotator,
/// so that the labels of one prompt judge the same two answers (when settings and version
/// match) and their agreement means something.
pub fn prompt_seeds(prompt_id: &str) -> [u64; 2] {
    let digest = Sha256::digest(prompt_id.as_bytes());
    let word = |i: usize| u64::from_le_bytes(digest[i..i + 8].try_into().expect("8 bytes"));
    let (first, second) = (word(0) >> 11, word(8) >> 11);
    [first, if second == first { first + 1 } else { second }]
}
