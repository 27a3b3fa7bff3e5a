//! `GET /api/stats`: counts per vote and model version, prompt-set progress, and each
//! version's Bradley–Terry rating and win rate against its parent.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::api::{ApiError, StatsReport};

use super::app_state::AppState;
use super::error_response::error;
use crate::label_analytics::version_standings::version_standings;

#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "figures",
    summary = "Stored pairs counted, prompt-set progress, each version's standing",
    responses(
        (status = 200, description = "The figures", body = StatsReport),
        (status = 503, description = "The store failed; retry", body = ApiError),
    )
)]
pub async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let worker = state.clone();
    let figures = tokio::task::spawn_blocking(move || -> anyhow::Result<StatsReport> {
        Ok(StatsReport {
            pairs: worker.store.stats()?,
            prompts: worker.store.prompt_progress()?,
            versions: version_standings(&worker.catalog.versions(), &worker.store.all_pairs()?),
        })
    })
    .await;
    match figures {
        Ok(Ok(figures)) => axum::Json(figures).into_response(),
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "$", "stats unavailable"),
    }
}
