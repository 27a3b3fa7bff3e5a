//! Downloading a model version's GGUF from the server: streamed with progress (bytes,
//! percent, speed), hashed while it arrives, resumed with a byte range (`Range` +
//! `If-Range` on the file's ETag, its sha256) when the connection breaks mid-file, and
//! checked against the manifest's size and sha256 before anyone uses it. The file goes into
//! a JavaScript `Uint8Array`, never into the page's wasm memory (which would keep its size
//! for good): only one network chunk at a time passes through wasm to be hashed.

use js_sys::{Reflect, Uint8Array};
use sha2::{Digest, Sha256};
use shared::ManifestFile;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, RequestInit};

use crate::browser_storage::now_ms;
use crate::server_api::{fetch, js_error_text};

/// How often a broken download is resumed before the loader reports the failure.
const MAX_RESUMES: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DownloadProgress {
    pub received: u64,
    pub total: u64,
    pub bytes_per_second: f64,
}

/// Bytes of a JavaScript array hashed per copy into wasm memory.
const HASH_SLICE_BYTES: u32 = 1 << 20;

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex sha256 of a JavaScript byte array, copied into wasm a slice at a time.
pub fn sha256_hex_of_js(bytes: &Uint8Array) -> String {
    let mut hasher = Sha256::new();
    let mut scratch = Vec::new();
    let mut start = 0;
    while start < bytes.length() {
        let end = bytes.length().min(start + HASH_SLICE_BYTES);
        hash_js_bytes(&mut hasher, &bytes.subarray(start, end), &mut scratch);
        start = end;
    }
    hex(&hasher.finalize())
}

/// Adds a JavaScript byte array to `hasher` through `scratch`, a wasm copy of it.
fn hash_js_bytes(hasher: &mut Sha256, bytes: &Uint8Array, scratch: &mut Vec<u8>) {
    scratch.resize(bytes.length() as usize, 0);
    bytes.copy_to(scratch);
    hasher.update(&*scratch);
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

struct Download {
    /// The whole file's room; `received` bytes of it have arrived.
    bytes: Uint8Array,
    received: u32,
    hasher: Sha256,
    /// The chunk being hashed, in wasm memory.
    chunk: Vec<u8>,
    started_ms: f64,
    last_report_ms: f64,
}

/// The verified bytes of `file`, served at `url`. `on_progress` is called as bytes arrive.
pub async fn download(
    url: &str,
    file: &ManifestFile,
    on_progress: &dyn Fn(DownloadProgress),
) -> Result<Uint8Array, String> {
    let size = u32::try_from(file.size).map_err(|_| {
        format!(
            "{url} is {} bytes, more than a browser array holds",
            file.size
        )
    })?;
    let mut download = Download {
        bytes: Uint8Array::new_with_length(size),
        received: 0,
        hasher: Sha256::new(),
        chunk: Vec::new(),
        started_ms: now_ms(),
        last_report_ms: 0.0,
    };
    let mut resumes = 0;
    loop {
        match download.fetch_rest(url, file, on_progress).await {
            Ok(()) => break,
            Err(error) if resumes < MAX_RESUMES => {
                resumes += 1;
                web_sys::console::warn_1(&JsValue::from_str(&format!(
                    "model download interrupted at {} of {} bytes ({error}); resuming ({resumes}/{MAX_RESUMES})",
                    download.received, file.size
                )));
            }
            Err(error) => {
                return Err(format!(
                    "downloading {url} failed at {} of {} bytes after {MAX_RESUMES} resumes: {error}",
                    download.received, file.size
                ));
            }
        }
    }
    if u64::from(download.received) != file.size {
        return Err(format!(
            "{url}: received {} bytes, the manifest says {}",
            download.received, file.size
        ));
    }
    on_progress(download.progress(file.size));
    let sha256 = hex(&download.hasher.finalize());
    if sha256 != file.sha256 {
        return Err(format!(
            "{url}: the downloaded file's sha256 is {sha256}, the manifest says {}; the file \
             on the server changed or is corrupt",
            file.sha256
        ));
    }
    Ok(download.bytes)
}

impl Download {
    fn progress(&self, total: u64) -> DownloadProgress {
        let seconds = ((now_ms() - self.started_ms) / 1000.0).max(1e-3);
        DownloadProgress {
            received: u64::from(self.received),
            total,
            bytes_per_second: f64::from(self.received) / seconds,
        }
    }

    /// Fetches what is still missing (all of it, or a range after what arrived) and
    /// appends it; an error leaves what arrived in place for the next attempt.
    async fn fetch_rest(
        &mut self,
        url: &str,
        file: &ManifestFile,
        on_progress: &dyn Fn(DownloadProgress),
    ) -> Result<(), String> {
        let init = RequestInit::new();
        init.set_method("GET");
        // The browser's HTTP cache would keep a second copy of a large file.
        init.set_cache(web_sys::RequestCache::NoStore);
        let resuming = self.received > 0;
        if resuming {
            let headers = web_sys::Headers::new().map_err(|e| js_error_text(&e))?;
            let range = format!("bytes={}-", self.received);
            headers
                .set("range", &range)
                .map_err(|e| js_error_text(&e))?;
            headers
                .set("if-range", &format!("\"{}\"", file.sha256))
                .map_err(|e| js_error_text(&e))?;
            init.set_headers(&headers);
        }
        let response = fetch(url, &init).await?;
        match response.status() {
            206 if resuming => {}
            200 => {
                // A whole file: start over (the server's file changed, or no range support).
                self.received = 0;
                self.hasher = Sha256::new();
            }
            status => return Err(format!("HTTP {status}")),
        }
        let body = response.body().ok_or("the response has no body")?;
        let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
        loop {
            let chunk = JsFuture::from(reader.read())
                .await
                .map_err(|e| js_error_text(&e))?;
            let done = Reflect::get(&chunk, &JsValue::from_str("done"))
                .map(|d| d.is_truthy())
                .unwrap_or(true);
            if done {
                return Ok(());
            }
            let value =
                Reflect::get(&chunk, &JsValue::from_str("value")).map_err(|e| js_error_text(&e))?;
            let piece: Uint8Array = value.unchecked_into();
            let start = self.received;
            if u64::from(start) + u64::from(piece.length()) > file.size {
                return Err(format!(
                    "the server sent more than the manifest's {} bytes",
                    file.size
                ));
            }
            hash_js_bytes(&mut self.hasher, &piece, &mut self.chunk);
            self.bytes.set(&piece, start);
            self.received = start + piece.length();
            let now = now_ms();
            if now - self.last_report_ms > 100.0 {
                self.last_report_ms = now;
                on_progress(self.progress(file.size));
            }
        }
    }
}
