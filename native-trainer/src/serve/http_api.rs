//! The server's HTTP surface (axum):
//! - `POST /api/pairs`: a `shared::PreferencePair` — size-capped, UTF-8, parsed and validated
//!   (errors name the field), both candidates from a served model version, rate-limited per
//!   client IP and per annotator (`429` + `Retry-After`); `201` only once durably committed, a
//!   retry with the same idempotency key answers `200` with the stored id, the key reused for
//!   another pair `409`.
//! - `GET /api/models`: the served versions' manifests; `GET /models/{version}/{file}`: a file
//!   a manifest lists, with `ETag` = its sha256, HTTP Range, long-lived cache headers.
//!   With `--access invite` it needs the annotator's bearer token (`401` / `403`) and records
//!   the token's annotator; a pair naming a served prompt is stored only while the prompt
//!   wants labels, once per annotator (`409` otherwise).
//! - `GET /api/prompts/next`: a prompt of the prompt set for the calling annotator (`200`
//!   with its id, conversation and the two answers' seeds), leased to them for a while, or
//!   `204` when none is left for them. `GET /api/campaign`: what the app needs to know (access
//!   mode, guidelines, whether own prompts are allowed, the battle share, progress, who the
//!   token belongs to).
//! - `GET /api/stats`: counts per vote and model version, prompt-set progress, and each
//!   version's Bradley–Terry rating and win rate against its parent.
//! - Behind the admin token (`Authorization: Bearer …`): `GET /api/export` (TRL rows as JSON
//!   Lines) and `GET /api/admin/dashboard` (the dashboard's figures).
//! - Everything else: the web app's files, when a web directory is given (gzip when accepted).
//!
//! Every response carries the security headers (a CSP allowing only what the wasm app needs,
//! `nosniff`, no framing); CORS is off unless origins are configured; every error is JSON:
//! `{"error": {"field": …, "reason": …}}`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shared::api::{
    AccessMode, ApiError, CampaignInfo, InviteStatus, InvitedAnnotator, ModelList, NextPrompt,
    PairReceipt, StatsReport,
};
use shared::trl_rows::TrlStyle;
use shared::{ChatTemplate, GgufModel, PairLimits, PairRejection};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::annotator_access::{bearer_token, invited_annotator};
use super::commit_queue::CommitQueue;
use super::compressed_files::CompressedFiles;
use super::dashboard_data::dashboard_data;
use super::model_catalog::ModelCatalog;
use super::rate_limiter::RateLimiter;
use super::trl_row_file::{json_lines, stored_rows};
use crate::campaign::version_standings::version_standings;
use crate::store::prompt_set::prompt_seeds;
use crate::store::{InsertOutcome, PairStore};

/// What only the wasm app needs: its own scripts and wasm, inline styles, same-origin fetches.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub struct AppState {
    pub queue: CommitQueue,
    pub store: Arc<dyn PairStore>,
    pub catalog: ModelCatalog,
    pub annotator_limit: RateLimiter,
    pub ip_limit: RateLimiter,
    pub admin_token: Option<String>,
    pub web_dir: Option<PathBuf>,
    pub compressed: CompressedFiles,
    pub max_body_bytes: usize,
    /// Origins allowed to call the API from other sites' pages; empty: CORS off.
    pub cors_origins: Vec<String>,
    pub access: AccessMode,
    /// The labelling guidelines (Markdown) the app shows before the first vote.
    pub guidelines: Option<String>,
    /// Whether annotators may label prompts they write (always, while the store has no
    /// prompt set).
    pub allow_own_prompts: bool,
    /// The share of comparisons drawn from two different versions, when there are two.
    pub battle_share: Option<f64>,
    /// How long a handed-out prompt stays reserved for its annotator.
    pub prompt_lease: std::time::Duration,
}

pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.max_body_bytes;
    Router::new()
        .route("/api/pairs", post(submit_pair))
        .route("/api/models", get(list_models))
        .route("/api/stats", get(stats))
        .route("/api/export", get(export_pairs))
        .route("/api/prompts/next", get(next_prompt))
        .route("/api/campaign", get(campaign))
        .route("/api/admin/dashboard", get(dashboard))
        .route("/models/{version}/{file}", get(model_file))
        .fallback(get(web_file))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// A JSON error response naming the field at fault.
fn error(status: StatusCode, field: &str, reason: impl Into<String>) -> Response {
    (status, axum::Json(ApiError::new(field, reason))).into_response()
}

fn too_many(retry_after: std::time::Duration, who: &str) -> Response {
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

async fn submit_pair(
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
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("{field}.model.version"),
                    format!(
                        "`{}` is not a served model version",
                        candidate.model.version
                    ),
                );
            }
            Some(manifest) if manifest.gguf.sha256 != candidate.model.sha256 => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("{field}.model.sha256"),
                    format!("not the sha256 of version `{}`", candidate.model.version),
                );
            }
            Some(_) => {}
        }
    }
    let canonical = serde_json::to_string(&pair).expect("a pair serializes");
    let key = pair.idempotency_key.clone();
    match state.queue.submit(pair, canonical).await {
        Ok(InsertOutcome::Created(id)) => (
            StatusCode::CREATED,
            axum::Json(PairReceipt {
                id,
                idempotency_key: key,
                replayed: false,
            }),
        )
            .into_response(),
        Ok(InsertOutcome::Replayed(id)) => (
            StatusCode::OK,
            axum::Json(PairReceipt {
                id,
                idempotency_key: key,
                replayed: true,
            }),
        )
            .into_response(),
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

async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(ModelList {
        versions: state.catalog.versions(),
    })
    .into_response()
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
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

/// The share of comparisons that are battles between two versions, as served now.
fn battle_share(state: &AppState) -> f64 {
    if state.catalog.versions().len() < 2 {
        return 0.0;
    }
    state.battle_share.unwrap_or(0.5)
}

#[derive(serde::Deserialize)]
struct NextPromptQuery {
    /// The open mode's pseudonymous annotator id (ignored under `--access invite`).
    annotator: Option<String>,
}

async fn next_prompt(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<NextPromptQuery>,
) -> Response {
    let annotator = match invited_annotator(state.access, &state.store, &headers).await {
        Ok(Some(name)) => name,
        Ok(None) => match query.annotator {
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

async fn campaign(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
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
        battle_share: battle_share(&state),
        prompts: progress,
    })
    .into_response()
}

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

async fn dashboard(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
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

#[derive(serde::Deserialize)]
struct ExportQuery {
    style: Option<String>,
}

async fn export_pairs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ExportQuery>,
) -> Response {
    if let Some(refused) = admin_refusal(&state, &headers, "export") {
        return refused;
    }
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
    let store = state.store.clone();
    let newest_gguf = state
        .catalog
        .versions()
        .last()
        .and_then(|m| state.catalog.file(&m.version, &m.gguf.path))
        .map(|f| f.path);
    let rows = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let template = match style {
            TrlStyle::Standard => {
                let gguf = newest_gguf.ok_or_else(|| {
                    anyhow::anyhow!("standard rows need a served model's chat template")
                })?;
                chat_template_of(&gguf)?
            }
            TrlStyle::Conversational => ChatTemplate::new(None, "", "")?,
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

/// The chat template stored in a GGUF (for standard TRL rows).
pub fn chat_template_of(gguf: &std::path::Path) -> anyhow::Result<ChatTemplate> {
    let model = GgufModel::open(gguf)?;
    let text = shared::ModelText::from_gguf(&model)?;
    Ok(text.template)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn model_file(
    State(state): State<Arc<AppState>>,
    Path((version, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
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
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(spec) => match parse_range(spec, file.size) {
            Some(range) => Some(range),
            None => {
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

fn content_type(name: &str) -> &'static str {
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

async fn web_file(State(state): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
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

/// CORS for the configured origins only: their preflights get `204` with the methods and
/// headers the API takes, their responses `Access-Control-Allow-Origin`. Any other origin's
/// preflight is refused, and its responses carry no CORS header (the browser withholds them).
async fn cors(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let allowed = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|origin| state.cors_origins.iter().any(|a| a == origin))
        .map(str::to_string);
    if request.method() == axum::http::Method::OPTIONS {
        let Some(origin) = allowed else {
            return error(
                StatusCode::FORBIDDEN,
                "origin",
                "cross-origin requests are not allowed",
            );
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        allow_origin(headers, &origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, authorization"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(600u32));
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(origin) = allowed {
        allow_origin(response.headers_mut(), &origin);
    }
    response
}

fn allow_origin(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
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
