//! The app's calls to `dpo serve`, on the page's own origin: the model versions it offers
//! (`GET /api/models`), pair submissions (`POST /api/pairs`), the campaign
//! (`GET /api/campaign`), the next prompt to label (`GET /api/prompts/next`) and the admin
//! dashboard's figures (`GET /api/admin/dashboard`). Tokens travel only in the
//! `Authorization` header.

use js_sys::Promise;
use shared::api::{ApiError, CampaignInfo, Dashboard, ModelList, NextPrompt};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, Response};

/// `fetch(url, init)`, resolved to its response; the error names the URL.
pub async fn fetch(url: &str, init: &RequestInit) -> Result<Response, String> {
    let window = web_sys::window().ok_or("no window")?;
    let promise: Promise = window.fetch_with_str_and_init(url, init);
    let response = JsFuture::from(promise)
        .await
        .map_err(|e| format!("{url}: {}", js_error_text(&e)))?;
    Ok(response.unchecked_into())
}

/// The body of `response` as text.
pub async fn text(response: &Response) -> Result<String, String> {
    let promise = response.text().map_err(|e| js_error_text(&e))?;
    let value = JsFuture::from(promise)
        .await
        .map_err(|e| js_error_text(&e))?;
    Ok(value.as_string().unwrap_or_default())
}

/// A thrown JavaScript value as readable text.
pub fn js_error_text(error: &JsValue) -> String {
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    error.as_string().unwrap_or_else(|| format!("{error:?}"))
}

/// The versions the server offers, oldest first, with the default and the candidates.
pub async fn model_versions() -> Result<ModelList, String> {
    let response = fetch("/api/models", &request_init("GET", None)?).await?;
    let body = text(&response).await?;
    if !response.ok() {
        return Err(format!("/api/models: HTTP {}: {body}", response.status()));
    }
    serde_json::from_str::<ModelList>(&body)
        .map_err(|e| format!("/api/models: unexpected answer: {e}"))
}

/// What the server said to a pair submission.
pub struct Submission {
    pub status: u16,
    pub body: String,
}

/// A request's init with `method` and, when given, `Authorization: Bearer <token>`.
fn request_init(method: &str, token: Option<&str>) -> Result<RequestInit, String> {
    let init = RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|e| js_error_text(&e))?;
    if method == "POST" {
        headers
            .set("content-type", "application/json")
            .map_err(|e| js_error_text(&e))?;
    }
    if let Some(token) = token {
        headers
            .set("authorization", &format!("Bearer {token}"))
            .map_err(|e| js_error_text(&e))?;
    }
    init.set_headers(&headers);
    Ok(init)
}

/// GETs `url` and reads its JSON answer (`None` for `204 No Content`).
async fn get_json<T: serde::de::DeserializeOwned>(
    url: &str,
    token: Option<&str>,
) -> Result<Option<T>, String> {
    let response = fetch(url, &request_init("GET", token)?).await?;
    if response.status() == 204 {
        return Ok(None);
    }
    let body = text(&response).await?;
    if !response.ok() {
        return Err(format!(
            "{url}: HTTP {}: {}",
            response.status(),
            error_reason(&body)
        ));
    }
    serde_json::from_str(&body)
        .map(Some)
        .map_err(|e| format!("{url}: unexpected answer: {e}"))
}

pub async fn campaign(token: Option<&str>) -> Result<CampaignInfo, String> {
    get_json("/api/campaign", token)
        .await?
        .ok_or_else(|| "/api/campaign: empty answer".to_string())
}

/// The next prompt for this annotator, or `None` when none is left for them.
pub async fn next_prompt(
    token: Option<&str>,
    annotator: &str,
) -> Result<Option<NextPrompt>, String> {
    let url = format!(
        "/api/prompts/next?annotator={}",
        String::from(js_sys::encode_uri_component(annotator))
    );
    get_json(&url, token).await
}

/// The admin dashboard's figures.
pub async fn dashboard(admin_token: &str) -> Result<Dashboard, String> {
    get_json("/api/admin/dashboard", Some(admin_token))
        .await?
        .ok_or_else(|| "/api/admin/dashboard: empty answer".to_string())
}

/// POSTs one pair (its JSON), with the annotator's token when there is one; a network
/// failure is an `Err`, any HTTP answer an `Ok`.
pub async fn post_pair(json: &str, token: Option<&str>) -> Result<Submission, String> {
    let init = request_init("POST", token)?;
    init.set_body(&JsValue::from_str(json));
    let response = fetch("/api/pairs", &init).await?;
    let body = text(&response).await.unwrap_or_default();
    Ok(Submission {
        status: response.status(),
        body,
    })
}

/// The `field: reason` of the server's error body, or the body itself.
pub fn error_reason(body: &str) -> String {
    ApiError::describe(body)
}
