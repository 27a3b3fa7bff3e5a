//! The web app's files, when `dpo serve` is given a web directory: any path the API does not
//! own, `index.html` for `/`, nothing outside the directory, gzip when the client accepts it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::app_state::AppState;
use super::compressed_files::CompressedFiles;
use super::error_response::error;

/// The `Content-Type` of a file by its extension.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "md" => "text/markdown; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

pub async fn web_file(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(dir) = &state.web_dir else {
        return error(StatusCode::NOT_FOUND, "$", "no such resource");
    };
    let relative = uri.path().trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    let safe = relative
        .split('/')
        .all(|part| !part.is_empty() && part != ".." && part != "." && !part.contains('\\'));
    if !safe {
        return error(StatusCode::NOT_FOUND, "$", "no such resource");
    }
    let path = dir.join(relative);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(_) => return error(StatusCode::NOT_FOUND, "$", format!("no file `{relative}`")),
    };
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let kind = [
        (header::CONTENT_TYPE, content_type(relative)),
        (header::VARY, "Accept-Encoding"),
    ];
    if accepts_gzip && CompressedFiles::worth_it(relative, bytes.len()) {
        let state = state.clone();
        let bytes = Arc::new(bytes);
        let source = bytes.clone();
        let compressed =
            tokio::task::spawn_blocking(move || state.compressed.gzip(&path, &source)).await;
        if let Ok(Ok(compressed)) = compressed {
            let body = Body::from(compressed.as_ref().clone());
            return (kind, [(header::CONTENT_ENCODING, "gzip")], body).into_response();
        }
        return (kind, bytes.as_ref().clone()).into_response();
    }
    (kind, bytes).into_response()
}
