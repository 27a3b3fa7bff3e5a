//! Who may label: `--access open` (anyone who reaches the server; a pair names its own
//! pseudonymous annotator) or `--access invite` (an `Authorization: Bearer <token>` from
//! `dpo annotators add` on every labelling request; the annotator is the token's, never the
//! body's). A missing or unknown token is `401`, a revoked one `403`.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use shared::api::AccessMode;

use crate::store::PairStore;
use crate::store::annotator_records::{TokenCheck, token_hash};

/// Why a request may not label: its status and reason.
pub type Refusal = (StatusCode, &'static str);

/// The bearer token of a request, if it sent one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The invited annotator a request speaks for; `Ok(None)` in open mode.
pub async fn invited_annotator(
    access: AccessMode,
    store: &Arc<dyn PairStore>,
    headers: &HeaderMap,
) -> Result<Option<String>, Refusal> {
    if access == AccessMode::Open {
        return Ok(None);
    }
    let Some(token) = bearer_token(headers) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "this server labels by invitation: send `Authorization: Bearer <token>` (open your invite link)",
        ));
    };
    let hash = token_hash(token);
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.check_token(&hash)).await {
        Ok(Ok(TokenCheck::Valid(name))) => Ok(Some(name)),
        Ok(Ok(TokenCheck::Revoked(name))) => {
            tracing::info!("refused a request from revoked annotator {name}");
            Err((StatusCode::FORBIDDEN, "this invite has been revoked"))
        }
        Ok(Ok(TokenCheck::Unknown)) => Err((StatusCode::UNAUTHORIZED, "unknown invite token")),
        _ => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot check the invite now; retry",
        )),
    }
}
