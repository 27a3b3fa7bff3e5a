//! Every error answer of `dpo serve` as one JSON shape, `shared::api::ApiError`: the field at
//! fault and the reason; `429` adds `Retry-After`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::api::ApiError;

/// A JSON error response naming the field at fault.
pub fn error(status: StatusCode, field: &str, reason: impl Into<String>) -> Response {
    (status, axum::Json(ApiError::new(field, reason))).into_response()
}

/// `429 Too Many Requests` with the seconds to wait in `Retry-After`.
pub fn too_many(retry_after: std::time::Duration, who: &str) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "$",
        format!("rate limit for this {who}; retry in {seconds} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
