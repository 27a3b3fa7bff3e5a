//! `GET /api/prompts/next`: a prompt of the campaign's prompt set, leased to the annotator who
//! asked.

use serde::{Deserialize, Serialize};

use crate::ChatMessage;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NextPrompt {
    pub id: String,
    pub conversation: Vec<ChatMessage>,
    /// The two answers' seeds (the same for every annotator of this prompt).
    pub seeds: [u64; 2],
    /// How long the prompt stays reserved for this annotator.
    pub lease_seconds: u64,
}
