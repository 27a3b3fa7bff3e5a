//! The browser's copy of downloaded models: Cache Storage entries keyed by the GGUF's
//! sha256, so a reload (or another tab) loads a model without the network, and the
//! loader's "clear cache" action. Only verified bytes are ever put here.

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, CacheStorage, Response};

use crate::server_api::js_error_text;

const CACHE_NAME: &str = "dpo-flywheel-models";

/// The entry's key: a same-origin URL no server route answers, named by the hash.
fn key(sha256: &str) -> String {
    format!("/model-cache/{sha256}.gguf")
}

fn storage() -> Result<CacheStorage, String> {
    web_sys::window().ok_or("no window")?.caches().map_err(|e| {
        format!(
            "Cache Storage is unavailable (it needs https or localhost): {}",
            js_error_text(&e)
        )
    })
}

async fn open() -> Result<Cache, String> {
    let cache = JsFuture::from(storage()?.open(CACHE_NAME))
        .await
        .map_err(|e| js_error_text(&e))?;
    Ok(cache.unchecked_into())
}

/// The cached bytes for `sha256`, if any, as a JavaScript array (not verified here: the
/// caller hashes them).
pub async fn get(sha256: &str) -> Result<Option<Uint8Array>, String> {
    let cache = open().await?;
    let found = JsFuture::from(cache.match_with_str(&key(sha256)))
        .await
        .map_err(|e| js_error_text(&e))?;
    if found.is_undefined() || found.is_null() {
        return Ok(None);
    }
    let response: Response = found.unchecked_into();
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| js_error_text(&e))?)
        .await
        .map_err(|e| format!("reading the cached model: {}", js_error_text(&e)))?;
    let buffer: ArrayBuffer = buffer.unchecked_into();
    Ok(Some(Uint8Array::new(&buffer)))
}

/// Keeps verified `bytes` under their `sha256`.
pub async fn put(sha256: &str, bytes: &Uint8Array) -> Result<(), String> {
    let cache = open().await?;
    // The length goes into a header so `get_size` can check an entry without reading it.
    let headers = web_sys::Headers::new().map_err(|e| js_error_text(&e))?;
    headers
        .set("content-length", &bytes.length().to_string())
        .map_err(|e| js_error_text(&e))?;
    headers
        .set("content-type", "application/octet-stream")
        .map_err(|e| js_error_text(&e))?;
    let init = web_sys::ResponseInit::new();
    init.set_headers(&headers);
    let response = Response::new_with_opt_js_u8_array_and_init(Some(bytes), &init)
        .map_err(|e| js_error_text(&e))?;
    JsFuture::from(cache.put_with_str(&key(sha256), &response))
        .await
        .map_err(|e| format!("the browser did not keep the model: {}", js_error_text(&e)))?;
    Ok(())
}

/// Drops one entry (a copy that failed verification).
pub async fn remove(sha256: &str) -> Result<(), String> {
    let cache = open().await?;
    JsFuture::from(cache.delete_with_str(&key(sha256)))
        .await
        .map_err(|e| js_error_text(&e))?;
    Ok(())
}

/// Drops every cached model.
pub async fn clear() -> Result<(), String> {
    JsFuture::from(storage()?.delete(CACHE_NAME))
        .await
        .map_err(|e| js_error_text(&e))?;
    Ok(())
}

/// The size of the cached entry for `sha256`, read from its headers without its body.
pub async fn get_size(sha256: &str) -> Option<u64> {
    let cache = open().await.ok()?;
    let found = JsFuture::from(cache.match_with_str(&key(sha256)))
        .await
        .ok()?;
    if found.is_undefined() || found.is_null() {
        return None;
    }
    let response: Response = found.unchecked_into();
    response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
}
