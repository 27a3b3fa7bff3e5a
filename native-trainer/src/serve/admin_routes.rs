//! Behind the admin token (`Authorization: Bearer …`, compared in constant time): `GET
//! /api/export`, the stored pairs as TRL rows in JSON Lines, and `GET /api/admin/dashboard`,
//! the dashboard's figures. Without `--admin-token` both are off (`404`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::ChatTemplate;
use shared::api::{ApiError, Dashboard};
use shared::trl_rows::TrlStyle;

use super::annotator_access::bearer_token;
use super::app_state::AppState;
use super::dashboard_data::dashboard_data;
use super::error_response::error;
use super::trl_row_file::{chat_template_of, json_lines, stored_rows};

/// The refusal to send unless the request carries the admin token.
fn admin_refusal(state: &AppState, headers: &HeaderMap, what: &str) -> Option<Response> {
    let Some(token) = &state.admin_token else {
        return Some(error(
            StatusCode::NOT_FOUND,
            "$",
            format!("{what} is off: start with --admin-token"),
        ));
    };
    if !bearer_token(headers)
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
    {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "authorization",
            "a valid admin token is required",
        ));
    }
    None
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[utoipa::path(
    get,
    path = "/api/admin/dashboard",
    tag = "admin",
    summary = "The admin dashboard's figures",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Labels per day and annotator, progress, agreement, standings, training curves", body = Dashboard),
        (status = 401, description = "No or a wrong admin token", body = ApiError),
        (status = 404, description = "The server was started without `--admin-token`", body = ApiError),
        (status = 500, description = "The worker failed", body = ApiError),
        (status = 503, description = "The store failed; retry", body = ApiError),
    )
)]
pub async fn dashboard(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = admin_refusal(&state, &headers, "the dashboard") {
        return refused;
    }
    let worker = state.clone();
    match tokio::task::spawn_blocking(move || {
        dashboard_data(worker.store.as_ref(), &worker.catalog)
    })
    .await
    {
        Ok(Ok(data)) => axum::Json(data).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "$", format!("{e:#}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "$", "dashboard failed"),
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// TRL's row style: `conversational` (messages, the default) or `standard` (the prompt
    /// rendered with the newest served model's chat template).
    #[param(pattern = "^(conversational|standard)$")]
    style: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/export",
    tag = "admin",
    summary = "Every stored pair as a TRL preference row (JSON Lines)",
    params(ExportQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "One TRL row per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "An unknown `style`", body = ApiError),
        (status = 401, description = "No or a wrong admin token", body = ApiError),
        (status = 404, description = "The server was started without `--admin-token`", body = ApiError),
        (status = 409, description = "Standard rows, but no model is served to take the chat template from", body = ApiError),
        (status = 500, description = "The worker failed", body = ApiError),
        (status = 503, description = "The store failed; retry", body = ApiError),
    )
)]
pub async fn export_pairs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = admin_refusal(&state, &headers, "export") {
        return refused;
    }
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "style",
            "expected ?style=standard or ?style=conversational",
        );
    };
    let style = match query.style.as_deref().unwrap_or("conversational") {
        "conversational" => TrlStyle::Conversational,
        "standard" => TrlStyle::Standard,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                "style",
                format!("`{other}`: expected standard or conversational"),
            );
        }
    };
    // Standard rows render the prompt with the newest served model's chat template.
    let template_gguf = match style {
        TrlStyle::Conversational => None,
        TrlStyle::Standard => {
            let newest = state
                .catalog
                .versions()
                .last()
                .and_then(|m| state.catalog.file(&m.version, &m.gguf.path));
            let Some(file) = newest else {
                return error(
                    StatusCode::CONFLICT,
                    "style",
                    "standard rows need a served model's chat template: publish a version \
                     first, or ask for conversational rows",
                );
            };
            Some(file.path)
        }
    };
    let store = state.store.clone();
    let rows = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let template = match template_gguf {
            Some(gguf) => chat_template_of(&gguf)?,
            None => ChatTemplate::new(None, "", "")?,
        };
        let (_, rows) = stored_rows(store.as_ref(), style, &template)?;
        json_lines(&rows)
    })
    .await;
    match rows {
        Ok(Ok(rows)) => ([(header::CONTENT_TYPE, "application/x-ndjson")], rows).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "$", format!("{e:#}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "$", "export failed"),
    }
}
