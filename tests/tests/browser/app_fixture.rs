//! What the browser tests of the app share: publishing a model version, a `dpo serve` for
//! the app, driving the page (load, chat, compare, vote), the reply the same engine gives
//! natively, and what the store and the page hold.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::{run_dpo, succeed, web_bundle, workspace_root};
use serde_json::{Value, json};
use shared::generation::{GeneratingSequence, StopHandle, TokenStream};
use shared::wgpu_engine::{GpuContext, Qwen2Sequence, Qwen2Weights};
use shared::{ChatMessage, GgufModel, ModelText, PreferencePair, Role, SamplingParams};

/// SwiftShader compiles and runs every kernel on the CPU: generous, but a hang still fails.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

/// The app with the WebGPU engine whatever the adapter: the headless browser's is a software
/// fallback, on which the app would choose its CPU engine by itself.
pub const WEBGPU_APP: &str = "/?engine=webgpu";

/// Publishes `gguf` as version `version` in `dir/models` and returns the models directory
/// and the manifest.
pub fn publish(dir: &Path, gguf: &Path, version: &str) -> (PathBuf, Value) {
    let models = dir.join("models");
    let (stdout, _) = succeed(
        run_dpo(
            &["publish", "--version-id", version],
            &[("--model", gguf), ("--models-dir", &models)],
        ),
        "dpo publish",
    );
    let manifest: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    (models, manifest)
}

pub fn serve(dir: &Path, models: &Path) -> (DpoServer, String) {
    serve_with(dir, models, &[])
}

/// `serve` with more `dpo serve` flags.
pub fn serve_with(dir: &Path, models: &Path, extra: &[&str]) -> (DpoServer, String) {
    let db = format!("sqlite:{}", dir.join("pairs.sqlite").display());
    let bundle = web_bundle();
    let mut args = vec!["--web-dir", bundle.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = DpoServer::start(&db, models, &args);
    (server, db)
}

pub fn artifact(name: &str) -> PathBuf {
    workspace_root()
        .join("target")
        .join("test-artifacts")
        .join(name)
}

/// Generates two candidates for the prompt just typed into the compare view and waits for them;
/// generates again while an answer cannot be stored (the tiny model's byte vocabulary can
/// produce a NUL character, which the app refuses to submit).
pub fn compare(browser: &mut BrowserSession) {
    for attempt in 0..10 {
        if attempt == 0 {
            // Enter in the prompt box generates, as the keyboard-first labeller expects.
            browser.press_key("Enter");
        } else {
            browser.click("send");
        }
        wait_for_both_candidates(browser);
        let votable = browser
            .evaluate(&format!("{}.disabled === false", by_testid("vote-a")))
            .unwrap();
        if votable == json!(true) {
            return;
        }
        let error = browser.text("compare-error");
        assert!(error.contains("NUL"), "compare failed: {error}");
    }
    panic!("ten comparisons in a row had an answer that cannot be stored");
}

/// Opens the settings and sets a number or text field the way a user does: select, type,
/// leave the field.
pub fn set_field(browser: &mut BrowserSession, testid: &str, value: &str) {
    browser
        .evaluate(&format!(
            "(() => {{ {settings}.open = true; const e = {field}; e.focus(); e.select(); }})()",
            settings = by_testid("settings"),
            field = by_testid(testid)
        ))
        .unwrap();
    browser.type_into(testid, value);
    browser.blur();
}

/// Clicks "Load" and waits for the model to be on the GPU; returns the ready line's
/// `data-from-cache`.
pub fn load_model(browser: &mut BrowserSession) -> String {
    click_load(browser);
    wait_until_ready(browser)
}

/// Waits for the engine and the Load button, and clicks it.
pub fn click_load(browser: &mut BrowserSession) {
    browser.wait_for_testid("engine-info", BROWSER_TIMEOUT);
    browser.wait_for(
        "the Load button",
        &format!("{}?.disabled === false", by_testid("load-model")),
        BROWSER_TIMEOUT,
    );
    browser.click("load-model");
}

/// How many requests for files under `/models/` the page has made since it was loaded.
pub fn model_file_requests(browser: &mut BrowserSession) -> u64 {
    browser
        .evaluate("performance.getEntriesByType('resource').filter(e => e.name.includes('/models/')).length")
        .unwrap()
        .as_u64()
        .unwrap()
}

pub fn wait_until_ready(browser: &mut BrowserSession) -> String {
    browser.wait_for(
        "the model to load",
        &format!(
            "{ready}?.dataset.fromCache ?? ({error} ? 'error' : null)",
            ready = by_testid("model-ready"),
            error = by_testid("model-error")
        ),
        BROWSER_TIMEOUT,
    );
    let error = browser.text("model-error");
    assert!(error.is_empty(), "the model failed to load: {error}");
    browser
        .evaluate(&format!("{}.dataset.fromCache", by_testid("model-ready")))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// Records every text the streaming reply shows (a MutationObserver), sends `prompt` in
/// chat, waits for the finished reply and returns (its text, the streamed texts seen).
pub fn chat(browser: &mut BrowserSession, prompt: &str) -> (String, Vec<String>) {
    let replies_before = browser
        .evaluate("document.querySelectorAll('[data-testid=message-assistant]').length")
        .unwrap();
    browser
        .evaluate(
            "window.__streamed = []; \
             new MutationObserver(() => { \
               const s = document.querySelector('[data-streaming]'); \
               if (s && s.innerText.trim() && window.__streamed.at(-1) !== s.innerText) window.__streamed.push(s.innerText); \
             }).observe(document.querySelector('[data-testid=messages]'), { subtree: true, childList: true, characterData: true })",
        )
        .unwrap();
    browser.type_into("prompt-input", prompt);
    browser.click("send");
    let finished = format!(
        "document.querySelectorAll('[data-testid=message-assistant]:not([data-streaming])').length > {replies_before} && !document.querySelector('[data-streaming]')"
    );
    browser.wait_for("the reply", &finished, BROWSER_TIMEOUT);
    let error = browser.text("chat-error");
    assert!(error.is_empty(), "chat failed: {error}");
    let reply = browser
        .evaluate(
            "[...document.querySelectorAll('[data-testid=message-assistant]')].at(-1).innerText",
        )
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let streamed: Vec<String> =
        serde_json::from_value(browser.evaluate("window.__streamed").unwrap()).unwrap();
    (reply.trim_end_matches("Copy").trim().to_string(), streamed)
}

/// The reply the same engine gives natively (Vulkan; lavapipe in CI) to `conversation`.
pub fn native_reply(
    model: &[u8],
    conversation: &[ChatMessage],
    sampling: SamplingParams,
    seed: u64,
) -> String {
    reply_on(model, conversation, sampling, seed, |gguf, reader| {
        let ctx = pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe in CI)");
        let weights = Qwen2Weights::load(&ctx, gguf, reader).unwrap();
        Qwen2Sequence::new(&weights, 512).unwrap()
    })
}

/// The reply of the sequence `open` makes on the model in `model` to `conversation`.
pub fn reply_on<S: GeneratingSequence>(
    model: &[u8],
    conversation: &[ChatMessage],
    sampling: SamplingParams,
    seed: u64,
    open: impl FnOnce(&GgufModel, &mut Cursor<&[u8]>) -> S,
) -> String {
    let mut reader = Cursor::new(model);
    let gguf = GgufModel::read(&mut reader, "model.gguf").unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let prompt = text
        .tokenizer
        .encode(&text.template.render(conversation, true).unwrap())
        .unwrap();
    let mut sequence = open(&gguf, &mut reader);
    let mut stream = pollster::block_on(TokenStream::start(
        &mut sequence,
        &prompt,
        sampling,
        seed,
        text.stop_tokens(),
        StopHandle::new(),
    ))
    .unwrap();
    let mut tokens = Vec::new();
    while let Some(token) = pollster::block_on(stream.next_token()).unwrap() {
        tokens.push(token);
    }
    text.tokenizer.decode(&tokens).unwrap()
}

/// An engine's reply to a conversation natively, as `native_reply` and `native_cpu_reply`.
type NativeReply = fn(&[u8], &[ChatMessage], SamplingParams, u64) -> String;

/// Chats "Hello there" greedily (24 new tokens) and checks that the page's reply is what
/// `native` gives for the app's default sampling with those two fields; returns the texts
/// seen while the reply streamed.
pub fn greedy_chat_gives(
    browser: &mut BrowserSession,
    model: &[u8],
    native: NativeReply,
) -> Vec<String> {
    set_field(browser, "temperature", "0");
    set_field(browser, "max-new-tokens", "24");
    let (reply, streamed) = chat(browser, "Hello there");
    // The app's defaults (Qwen2.5-Instruct's generation_config) with the two fields set above.
    let greedy = SamplingParams {
        temperature: 0.0,
        top_p: 0.8,
        top_k: 20,
        repeat_penalty: 1.05,
        repeat_last_n: 64,
        max_new_tokens: 24,
    };
    let expected = native(
        model,
        &[ChatMessage::new(Role::User, "Hello there")],
        greedy,
        0,
    );
    assert!(!letters(&expected).is_empty(), "native reply {expected:?}");
    assert_eq!(
        letters(&reply),
        letters(&expected),
        "page {reply:?}, native {expected:?}"
    );
    streamed
}

/// Letters and digits only: what survives Markdown rendering and `innerText` unchanged.
pub fn letters(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).collect()
}

pub fn stored_pairs(db: &str) -> Vec<PreferencePair> {
    let path = db.strip_prefix("sqlite:").unwrap();
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection
        .prepare("SELECT pair_json FROM pairs ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|json| serde_json::from_str(&json.unwrap()).unwrap())
        .collect()
}

/// Compares two answers to `prompt` in the open compare view and votes A with the keyboard;
/// waits until the server has acknowledged `acknowledged` labels in all.
pub fn vote_a(browser: &mut BrowserSession, prompt: &str, acknowledged: usize) {
    browser.press_key("n");
    browser.type_into("prompt-input", prompt);
    compare(browser);
    browser.blur();
    browser.press_key("1");
    browser.press_key("Enter");
    browser.wait_for(
        "the server to acknowledge the vote",
        &format!(
            "{}.innerText === '{acknowledged}'",
            by_testid("labels-submitted")
        ),
        Duration::from_secs(60),
    );
}

/// Waits until both candidates of the compare view are generated.
fn wait_for_both_candidates(browser: &mut BrowserSession) {
    browser.wait_for(
        "both candidates",
        &format!(
            "{}?.dataset.done === 'true' && {}?.dataset.done === 'true'",
            by_testid("candidate-a"),
            by_testid("candidate-b")
        ),
        BROWSER_TIMEOUT,
    );
}

/// Generates the two answers to the served prompt and waits for them.
pub fn compare_served(browser: &mut BrowserSession) {
    browser.click("send");
    wait_for_both_candidates(browser);
    let error = browser.text("compare-error");
    assert!(error.is_empty(), "the comparison failed: {error}");
}

/// The reply the CPU engine gives natively to `conversation`.
pub fn native_cpu_reply(
    model: &[u8],
    conversation: &[ChatMessage],
    sampling: SamplingParams,
    seed: u64,
) -> String {
    use shared::cpu_engine::{CpuQwen2Weights, CpuSequence};
    reply_on(model, conversation, sampling, seed, |gguf, reader| {
        CpuSequence::new(&CpuQwen2Weights::load(gguf, reader).unwrap(), 512)
    })
}

/// What the loaded model's worker holds in wasm memory, as the ready line reports it.
pub fn engine_memory_bytes(browser: &mut BrowserSession) -> u64 {
    browser
        .evaluate(&format!(
            "Number({}.dataset.engineMemoryBytes)",
            by_testid("model-ready")
        ))
        .unwrap()
        .as_u64()
        .expect("the ready line reports the engine's memory")
}

/// The page's own wasm memory stayed far below the model's size while it downloaded (or
/// read from the cache), verified and handed over the GGUF: the bytes stay in JavaScript
/// until they move to the engine's worker, so the page never keeps a copy of the model in a
/// wasm memory that cannot shrink.
pub fn assert_page_holds_no_model_copy(browser: &mut BrowserSession, model_bytes: u64, how: &str) {
    let memories = browser.page_wasm_memory_bytes();
    eprintln!("{how}: the page's wasm memories: {memories:?} bytes; the model: {model_bytes}");
    assert!(!memories.is_empty(), "the page runs no wasm?");
    assert!(
        memories.iter().sum::<u64>() < model_bytes / 4,
        "{how}: the page's wasm memory grew to {memories:?} bytes for a {model_bytes}-byte model"
    );
}
