//! `POST /api/pairs`' answer once the pair is durably stored: its row id and idempotency key,
//! and whether this was a retry of a pair stored before.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PairReceipt {
    pub id: i64,
    pub idempotency_key: String,
    /// `true` when the same pair was stored before under this key (answered `200`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}
