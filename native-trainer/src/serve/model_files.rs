//! The served model versions over HTTP: `GET /api/models`, their manifests and roles, and `GET
//! /models/{version}/{file}`, a file a manifest lists, with `ETag` = its sha256, one HTTP
//! byte range, and long-lived cache headers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::api::{ApiError, ModelList};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::app_state::AppState;
use super::error_response::error;
use super::web_files::content_type;
use crate::flywheel::version_roles::version_roles;

#[utoipa::path(
    get,
    path = "/api/models",
    tag = "models",
    summary = "The served model versions' manifests, oldest first, the default and candidates",
    responses(
        (status = 200, description = "Every served version and their roles", body = ModelList),
        (status = 503, description = "The store failed; retry", body = ApiError),
    )
)]
pub async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let worker = state.clone();
    let listed = tokio::task::spawn_blocking(move || -> anyhow::Result<ModelList> {
        let versions = worker.catalog.versions();
        let roles = version_roles(&versions, &worker.store.version_events()?);
        Ok(ModelList {
            versions,
            default_version: roles.default_version,
            candidates: roles.candidates,
        })
    })
    .await;
    match listed {
        Ok(Ok(list)) => axum::Json(list).into_response(),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "$",
            "model roles unavailable",
        ),
    }
}

#[utoipa::path(
    get,
    path = "/models/{version}/{file}",
    tag = "models",
    summary = "A file of a served version (the GGUF, its card), resumable",
    params(
        ("version" = String, Path, description = "A served version id"),
        ("file" = String, Path, description = "A file its manifest lists"),
        ("Range" = Option<String>, Header, pattern = r"^bytes=([0-9]+-[0-9]*|-[0-9]+)$",
            description = "One byte range: `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX` \
                (`416` when it starts beyond the file)"),
        ("If-None-Match" = Option<String>, Header, description = "ETags held: the file's sha256 in quotes, or `*`"),
    ),
    responses(
        (status = 200, description = "The whole file", content(
            ("application/octet-stream"), ("application/json"), ("text/markdown")),
            headers(("ETag" = String, description = "The file's sha256, quoted"))),
        (status = 206, description = "The range asked for", content(
            ("application/octet-stream"), ("application/json"), ("text/markdown")),
            headers(("Content-Range" = String, description = "`bytes START-END/SIZE`"))),
        (status = 304, description = "The client's copy is current"),
        (status = 404, description = "No such version or file", body = ApiError),
        (status = 416, description = "Not one satisfiable byte range", body = ApiError,
            headers(("Content-Range" = String, description = "`bytes */SIZE`"))),
        (status = 500, description = "The file could not be read", body = ApiError),
    )
)]
pub async fn model_file(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((version, name))) = path else {
        return error(StatusCode::NOT_FOUND, "$", "no such file");
    };
    let Some(file) = state.catalog.file(&version, &name) else {
        return error(
            StatusCode::NOT_FOUND,
            "$",
            format!("no file `{name}` in version `{version}`"),
        );
    };
    let etag = format!("\"{}\"", file.sha256);
    let cache = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".into(),
        ),
        (header::ACCEPT_RANGES, "bytes".into()),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let range = match headers.get(header::RANGE).map(|v| v.to_str()) {
        None => None,
        Some(spec) => match spec.ok().and_then(|spec| parse_range(spec, file.size)) {
            Some(range) => Some(range),
            None => {
                let spec = String::from_utf8_lossy(headers[header::RANGE].as_bytes());
                let mut response = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range",
                    format!(
                        "`{spec}` is not a satisfiable single byte range of {} bytes",
                        file.size
                    ),
                );
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{}", file.size)).expect("ascii"),
                );
                return response;
            }
        },
    };
    let mut reader = match tokio::fs::File::open(&file.path).await {
        Ok(reader) => reader,
        Err(e) => return error(StatusCode::NOT_FOUND, "$", format!("{name}: {e}")),
    };
    let (status, start, length) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, file.size),
    };
    if start > 0 && reader.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "$", "seek failed");
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader.take(length)));
    let mut response = (status, cache, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{}", start + length - 1, file.size);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("ascii"),
        );
    }
    response
}

/// One `bytes=` range as inclusive (start, end), clamped to the file; `None` if unsatisfiable.
fn parse_range(spec: &str, size: u64) -> Option<(u64, u64)> {
    let spec = spec.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (start, "") => (start.parse().ok()?, size - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn byte_ranges_parse_and_clamp() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-2", 100), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
