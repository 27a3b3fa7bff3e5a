//! The page's small persistent state in `localStorage`: the labeller's pseudonymous id and
//! the vote queue. Storage that is unavailable (private mode, disabled) degrades to
//! "nothing stored" rather than breaking the page. Also the clock and the event-loop turns
//! the page and the engine's worker wait on.

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

pub fn get(key: &str) -> Option<String> {
    storage()?.get_item(key).ok()?
}

/// Stores `value`; the error says why it could not be kept (quota, storage disabled).
pub fn set(key: &str, value: &str) -> Result<(), String> {
    let storage = storage().ok_or("this browser offers no localStorage")?;
    storage
        .set_item(key, value)
        .map_err(|e| format!("localStorage refused `{key}`: {e:?}"))
}

/// A random id (`crypto.randomUUID`), for idempotency keys and the annotator id.
pub fn random_id() -> String {
    web_sys::window()
        .and_then(|w| w.crypto().ok())
        .map(|c| c.random_uuid())
        .unwrap_or_else(|| {
            // Outside a secure context randomUUID is missing; Math.random is enough for a key.
            format!("{:016x}{:016x}", random_u64(), random_u64())
        })
}

/// 64 random bits (seeds, side assignment).
pub fn random_u64() -> u64 {
    let high = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    let low = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    (high << 32) | low
}

const ANNOTATOR_KEY: &str = "dpo.annotator-id";

/// This browser's pseudonymous labeller id: made once, kept in localStorage, never a name.
pub fn annotator_id() -> String {
    if let Some(id) = get(ANNOTATOR_KEY).filter(|id| !id.is_empty()) {
        return id;
    }
    let id = format!("anon-{}", random_id());
    let _ = set(ANNOTATOR_KEY, &id);
    id
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Resolves after the event loop has had a turn: the page can paint and handle input, a
/// worker can read its messages (a zero-delay timeout).
pub async fn next_frame() {
    pause_ms(0).await
}

/// Resolves after `ms` milliseconds, on the page or in a worker (`setTimeout` of whichever
/// global runs this).
pub async fn pause_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        if let Ok(set_timeout) = js_sys::Reflect::get(&global, &"setTimeout".into()) {
            let set_timeout: js_sys::Function = wasm_bindgen::JsCast::unchecked_into(set_timeout);
            let _ = set_timeout.call2(&global, &resolve, &ms.into());
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
