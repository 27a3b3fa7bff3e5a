//! What an annotator asks before labelling: `GET /api/prompts/next`, a prompt of the prompt
//! set leased to them for a while (`204` when none is left for them), and `GET
//! /api/campaign`, what the app needs to know (access mode, guidelines, whether own prompts
//! are allowed, the battle share, progress, who the token belongs to).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::api::{AccessMode, ApiError, CampaignInfo, InviteStatus, InvitedAnnotator, NextPrompt};

use super::annotator_access::{bearer_token, invited_annotator};
use super::app_state::AppState;
use super::error_response::error;
use crate::store::prompt_set::prompt_seeds;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NextPromptQuery {
    /// The open mode's pseudonymous annotator id: 1 to 128 letters, digits, `-`, `_`, `.`,
    /// `:` (ignored under `--access invite`, where the token names the annotator).
    #[param(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    annotator: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/prompts/next",
    tag = "labels",
    summary = "Lease the next prompt of the prompt set to the calling annotator",
    params(NextPromptQuery),
    responses(
        (status = 200, description = "A prompt, leased to this annotator", body = NextPrompt),
        (status = 204, description = "No prompt is left for this annotator"),
        (status = 400, description = "Open mode without a valid `annotator`", body = ApiError),
        (status = 401, description = "`--access invite`: no or an unknown invite token", body = ApiError),
        (status = 403, description = "`--access invite`: the invite was revoked", body = ApiError),
        (status = 500, description = "The worker failed", body = ApiError),
        (status = 503, description = "The store failed; retry", body = ApiError),
    )
)]
pub async fn next_prompt(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<NextPromptQuery>, QueryRejection>,
) -> Response {
    let annotator = match invited_annotator(state.access, &state.store, &headers).await {
        Ok(Some(name)) => name,
        Ok(None) => match query.ok().and_then(|Query(q)| q.annotator) {
            Some(id) if is_plain_id(&id) => id,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "annotator",
                    "give ?annotator=ID (1 to 128 letters, digits, - _ . :)",
                );
            }
        },
        Err((status, reason)) => return error(status, "authorization", reason),
    };
    let store = state.store.clone();
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let lease_ms = state.prompt_lease.as_millis() as i64;
    match tokio::task::spawn_blocking(move || store.next_prompt(&annotator, now_ms, lease_ms)).await
    {
        Ok(Ok(Some(prompt))) => axum::Json(NextPrompt {
            seeds: prompt_seeds(&prompt.id),
            id: prompt.id,
            conversation: prompt.conversation,
            lease_seconds: state.prompt_lease.as_secs(),
        })
        .into_response(),
        Ok(Ok(None)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => {
            tracing::error!("handing out a prompt failed: {e:#}");
            error(StatusCode::SERVICE_UNAVAILABLE, "$", "no prompt now; retry")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "$", "no prompt now"),
    }
}

fn is_plain_id(id: &str) -> bool {
    (1..=128).contains(&id.chars().count())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

#[utoipa::path(
    get,
    path = "/api/campaign",
    tag = "labels",
    summary = "The label campaign as the app shows it",
    responses(
        (status = 200, description = "Access mode, this token's annotator, guidelines, progress", body = CampaignInfo),
    )
)]
pub async fn campaign(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let invited = |name, status| Some(InvitedAnnotator { name, status });
    let annotator = match (state.access, bearer_token(&headers)) {
        (AccessMode::Invite, Some(_)) => {
            match invited_annotator(state.access, &state.store, &headers).await {
                Ok(name) => invited(name, InviteStatus::Valid),
                Err((StatusCode::FORBIDDEN, _)) => invited(None, InviteStatus::Revoked),
                Err(_) => invited(None, InviteStatus::Unknown),
            }
        }
        (AccessMode::Invite, None) => invited(None, InviteStatus::Missing),
        (AccessMode::Open, _) => None,
    };
    let store = state.store.clone();
    let progress = tokio::task::spawn_blocking(move || store.prompt_progress())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    axum::Json(CampaignInfo {
        access: state.access,
        annotator,
        guidelines: state.guidelines.clone(),
        own_prompts: state.allow_own_prompts || progress.prompts == 0,
        battle_share: state.battle_share_now(),
        prompts: progress,
    })
    .into_response()
}
