//! The server's HTTP surface (axum): which route each request goes to, and the layers every
//! response passes through. Each route lives in its own file:
//! - `POST /api/pairs` (`pair_route.rs`): a vote, validated and durably stored;
//! - `GET /api/prompts/next`, `GET /api/campaign` (`prompt_routes.rs`): what to label;
//! - `GET /api/models`, `GET /models/{version}/{file}` (`model_files.rs`): the served versions;
//! - `GET /api/stats` (`stats_route.rs`): counts, progress, ratings;
//! - `GET /api/export`, `GET /api/admin/dashboard` (`admin_routes.rs`): behind the admin token;
//! - `GET /api/openapi.json` (`openapi.rs`): the OpenAPI document of all of the above;
//! - everything else: the web app's files (`web_files.rs`).
//!
//! Every response carries the security headers and, for configured origins, CORS
//! (`response_headers.rs`); every error is JSON: `{"error": {"field": …, "reason": …}}`
//! (`error_response.rs`).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::app_state::AppState;
use super::response_headers::{cors, security_headers};
use super::web_files::web_file;
use super::{admin_routes, model_files, openapi, pair_route, prompt_routes, stats_route};

pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.max_body_bytes;
    Router::new()
        .route("/api/pairs", post(pair_route::submit_pair))
        .route("/api/models", get(model_files::list_models))
        .route("/api/stats", get(stats_route::stats))
        .route("/api/export", get(admin_routes::export_pairs))
        .route("/api/prompts/next", get(prompt_routes::next_prompt))
        .route("/api/campaign", get(prompt_routes::campaign))
        .route("/api/admin/dashboard", get(admin_routes::dashboard))
        .route("/api/openapi.json", get(openapi::openapi_document))
        .route("/models/{version}/{file}", get(model_files::model_file))
        .fallback(get(web_file))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}
