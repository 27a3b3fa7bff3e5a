//! The app's calls to `dpo serve`, on the page's own origin: the model versions it offers
//! (`GET /api/models`) and pair submissions (`POST /api/pairs`).

use js_sys::Promise;
use serde::Deserialize;
use shared::ModelManifest;
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

#[derive(Deserialize)]
struct ModelList {
    versions: Vec<ModelManifest>,
}

/// The versions the server offers, oldest first.
pub async fn model_versions() -> Result<Vec<ModelManifest>, String> {
    let init = RequestInit::new();
    init.set_method("GET");
    let response = fetch("/api/models", &init).await?;
    let body = text(&response).await?;
    if !response.ok() {
        return Err(format!("/api/models: HTTP {}: {body}", response.status()));
    }
    serde_json::from_str::<ModelList>(&body)
        .map(|list| list.versions)
        .map_err(|e| format!("/api/models: unexpected answer: {e}"))
}

/// What the server said to a pair submission.
pub struct Submission {
    pub status: u16,
    pub body: String,
}

/// POSTs one pair (its JSON); a network failure is an `Err`, any HTTP answer an `Ok`.
pub async fn post_pair(json: &str) -> Result<Submission, String> {
    let init = RequestInit::new();
    init.set_method("POST");
    let headers = web_sys::Headers::new().map_err(|e| js_error_text(&e))?;
    headers
        .set("content-type", "application/json")
        .map_err(|e| js_error_text(&e))?;
    init.set_headers(&headers);
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
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let error = v.get("error")?;
            Some(format!(
                "{}: {}",
                error.get("field")?.as_str()?,
                error.get("reason")?.as_str()?
            ))
        })
        .unwrap_or_else(|| body.to_string())
}
