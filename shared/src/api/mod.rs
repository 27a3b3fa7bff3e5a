//! The HTTP API of `dpo serve`, typed once: the server serialises these types and the app
//! deserialises them, so a renamed field is a compile error on both sides, not a blank chart.
//!
//! - `POST /api/pairs`: a [`crate::PreferencePair`] in, a [`PairReceipt`] out (`201`, or `200`
//!   for a retry with the same idempotency key).
//! - `GET /api/models`: [`ModelList`].
//! - `GET /api/prompts/next`: [`NextPrompt`] (or `204` when none is left).
//! - `GET /api/campaign`: [`CampaignInfo`].
//! - `GET /api/stats`: [`StatsReport`]; `GET /api/admin/dashboard`: [`Dashboard`].
//! - Every error: [`ApiError`], `{"error": {"field": …, "reason": …}}`.

mod api_error;
mod campaign_info;
mod dashboard;
mod label_agreement;
mod model_list;
mod next_prompt;
mod pair_receipt;
mod pair_stats;
mod version_change;
mod version_standing;

pub use api_error::{ApiError, ErrorDetail};
pub use campaign_info::{AccessMode, CampaignInfo, InviteStatus, InvitedAnnotator, PromptProgress};
pub use dashboard::{AnnotatorLabels, CurvePoint, Dashboard, DayLabels, TrainingCurve};
pub use label_agreement::{AgreementReport, CohenKappa, MajorityAgreement};
pub use model_list::ModelList;
pub use next_prompt::NextPrompt;
pub use pair_receipt::PairReceipt;
pub use pair_stats::{PairStats, StatsReport};
pub use version_change::{VersionChange, VersionChangeKind};
pub use version_standing::VersionStanding;
