//! `POST /api/pairs`: a `shared::PreferencePair` — size-capped, UTF-8, parsed and validated
//! (errors name the field), both candidates from a served model version, rate-limited per
//! client IP and per annotator (`429` + `Retry-After`); `201` only once durably committed, a
//! retry with the same idempotency key answers `200` with the stored id, the key reused for
//! another pair `409`. With `--access invite` it needs the annotator's bearer token (`401` /
//! `403`) and records the token's annotator; a pair naming a served prompt is stored only
//! while the prompt wants labels, once per annotator (`409` otherwise).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::api::{ApiError, PairReceipt};
use shared::{PairLimits, PairRejection, PreferencePair};

use super::annotator_access::invited_annotator;
use super::app_state::AppState;
use super::error_response::{error, too_many};
use crate::store::InsertOutcome;

#[utoipa::path(
    post,
    path = "/api/pairs",
    tag = "labels",
    summary = "Store one vote on two candidate answers",
    request_body(content = PreferencePair, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored (durably committed)", body = PairReceipt),
        (status = 200, description = "A retry of a pair stored before with this idempotency key", body = PairReceipt),
        (status = 400, description = "Not JSON, not UTF-8, or not a pair: the field at fault", body = ApiError),
        (status = 401, description = "`--access invite`: no or an unknown invite token", body = ApiError),
        (status = 403, description = "`--access invite`: the invite was revoked", body = ApiError),
        (status = 409, description = "The idempotency key was used for another pair, or the prompt wants no more labels from this annotator", body = ApiError),
        (status = 413, description = "The body is over the size limit", body = ApiError),
        (status = 422, description = "A pair, but not one to store: limits, unserved model version, wrong sha256, prompts not allowed", body = ApiError),
        (status = 429, description = "Rate limit per client address or annotator", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The store failed; retry with the same idempotency key", body = ApiError),
    )
)]
pub async fn submit_pair(
    State(state): State<Arc<AppState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(wait) = state.ip_limit.check(&client.ip().to_string()) {
        return too_many(wait, "address");
    }
    let invited = match invited_annotator(state.access, &state.store, &headers).await {
        Ok(invited) => invited,
        Err((status, reason)) => return error(status, "authorization", reason),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("body is larger than {} bytes", state.max_body_bytes)
            } else {
                rejection.body_text()
            };
            return error(status, "$", reason);
        }
    };
    let text = match std::str::from_utf8(&body) {
        Ok(text) => text,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "$",
                format!("body is not UTF-8 (byte {})", e.valid_up_to()),
            );
        }
    };
    let pair = match PairLimits::default().read_submission(text, invited) {
        Ok(pair) => pair,
        Err(PairRejection::Malformed(malformed)) => {
            return error(StatusCode::BAD_REQUEST, &malformed.field, malformed.reason);
        }
        Err(PairRejection::Invalid(invalid)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &invalid.field,
                invalid.reason,
            );
        }
    };
    if pair.prompt_id.is_none() && !own_prompts_allowed(&state).await {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "prompt_id",
            "this server labels its prompt set only: label a prompt from /api/prompts/next",
        );
    }
    if let Err(wait) = state.annotator_limit.check(&pair.annotator_id) {
        return too_many(wait, "annotator");
    }
    if let Some(refusal) = unserved_candidate(&state, &pair) {
        return refusal;
    }
    let canonical = serde_json::to_string(&pair).expect("a pair serializes");
    let key = pair.idempotency_key.clone();
    let receipt = |id, replayed| PairReceipt {
        id,
        idempotency_key: key.clone(),
        replayed,
    };
    match state.queue.submit(pair, canonical).await {
        Ok(InsertOutcome::Created(id)) => {
            (StatusCode::CREATED, axum::Json(receipt(id, false))).into_response()
        }
        Ok(InsertOutcome::Replayed(id)) => {
            (StatusCode::OK, axum::Json(receipt(id, true))).into_response()
        }
        Ok(InsertOutcome::KeyReused(_)) => error(
            StatusCode::CONFLICT,
            "idempotency_key",
            "already used for a different pair",
        ),
        Ok(InsertOutcome::Refused(refusal)) => {
            error(StatusCode::CONFLICT, "prompt_id", refusal.reason())
        }
        Err(e) => {
            tracing::error!("pair not stored: {e:#}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "$",
                "the pair could not be stored; retry with the same idempotency key",
            )
        }
    }
}

/// The `422` for a candidate whose model version is not served, or whose sha256 is not that
/// version's.
fn unserved_candidate(state: &AppState, pair: &PreferencePair) -> Option<Response> {
    let versions = state.catalog.versions();
    for (field, candidate) in [
        ("candidate_a", &pair.candidate_a),
        ("candidate_b", &pair.candidate_b),
    ] {
        match versions
            .iter()
            .find(|m| m.version == candidate.model.version)
        {
            None => {
                return Some(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("{field}.model.version"),
                    format!(
                        "`{}` is not a served model version",
                        candidate.model.version
                    ),
                ));
            }
            Some(manifest) if manifest.gguf.sha256 != candidate.model.sha256 => {
                return Some(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("{field}.model.sha256"),
                    format!("not the sha256 of version `{}`", candidate.model.version),
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// Whether a pair may label a prompt its annotator wrote.
async fn own_prompts_allowed(state: &Arc<AppState>) -> bool {
    if state.allow_own_prompts {
        return true;
    }
    let store = state.store.clone();
    matches!(
        tokio::task::spawn_blocking(move || store.prompt_progress()).await,
        Ok(Ok(progress)) if progress.prompts == 0
    )
}
