//! The HTTP API of `dpo serve`, typed once: the server serialises these types and the app
//! deserialises them, so a renamed field is a compile error on both sides, not a blank chart.
//!
//! - `POST /api/pairs`: a [`crate::PreferencePair`] in, a [`PairReceipt`] out (`201`, or `200`
//!   for a retry with the same idempotency key).
//! - `GET /api/models`: [`ModelList`].
//! - `GET /api/prompts/next`: [`NextPrompt`] (or `204` when none is left).
//! - `GET /api/campaign`: [`CampaignInfo`].
//! - Every error: [`ApiError`], `{"error": {"field": …, "reason": …}}`.

mod api_error;
mod campaign_info;
mod model_list;
mod next_prompt;
mod pair_receipt;

pub use api_error::{ApiError, ErrorDetail};
pub use campaign_info::{AccessMode, CampaignInfo, InviteStatus, InvitedAnnotator, PromptProgress};
pub use model_list::ModelList;
pub use next_prompt::NextPrompt;
pub use pair_receipt::PairReceipt;
