//! The labelling web app end to end, in real headless Chromium on WebGPU (SwiftShader),
//! served by a real `dpo serve` with a real SQLite file:
//!
//! - a tiny generated model: the loader downloads it with a progress bar and verifies it; chat
//!   streams the reply the same engine gives natively; user text with `<script>` and
//!   `<img onerror>` renders as text while Markdown code blocks render as code; compare mode
//!   shows two candidates, keyboard shortcuts vote and submit, and the pair lands in SQLite
//!   with its provenance — each candidate's text is what the engine generates natively from
//!   the recorded sampling settings and seed; a vote cast while the server is down waits in
//!   the browser and is delivered when it is back; Stop ends a reply early; a reload loads
//!   the model from the browser's cache without downloading it again. Screenshots of both
//!   views go to `target/test-artifacts/`.
//! - a model download whose connection drops mid-file resumes with a byte range.
//! - WebGPU switched off: the page says so instead of loading.
//! - one flywheel round: votes cast in the browser on version round-0 train round-1
//!   (`dpo train --data sqlite:…?model_version=round-0`), `dpo export --publish` puts it
//!   beside round-0 with its parent link, the running server lists it, `dpo rounds` shows the
//!   lineage, and the browser loads round-1, generates with it and tags new votes with it.
//! - the real Qwen2.5 0.5B model: greedy "What is the capital of France? Answer in one
//!   word." shows `Paris`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::quantized::GgmlDType;
use flywheel_tests::breaking_proxy::BreakingProxy;
use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{real_model, run_dpo, succeed, web_bundle, workspace_root};
use serde_json::{Value, json};
use shared::generation::{GeneratingSequence, StopHandle, TokenStream};
use shared::wgpu_engine::{GpuContext, Qwen2Sequence, Qwen2Weights};
use shared::{ChatMessage, GgufModel, ModelText, PreferencePair, Role, SamplingParams, Vote};

/// SwiftShader compiles and runs every kernel on the CPU: generous, but a hang still fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);
/// The app with the WebGPU engine whatever the adapter: the headless browser's is a software
/// fallback, on which the app would choose its CPU engine by itself.
const WEBGPU_APP: &str = "/?engine=webgpu";

/// Publishes `gguf` as version `version` in `dir/models` and returns the models directory
/// and the manifest.
fn publish(dir: &Path, gguf: &Path, version: &str) -> (PathBuf, Value) {
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

fn serve(dir: &Path, models: &Path) -> (DpoServer, String) {
    serve_with(dir, models, &[])
}

/// `serve` with more `dpo serve` flags.
fn serve_with(dir: &Path, models: &Path, extra: &[&str]) -> (DpoServer, String) {
    let db = format!("sqlite:{}", dir.join("pairs.sqlite").display());
    let bundle = web_bundle();
    let mut args = vec!["--web-dir", bundle.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = DpoServer::start(&db, models, &args);
    (server, db)
}

fn artifact(name: &str) -> PathBuf {
    workspace_root()
        .join("target")
        .join("test-artifacts")
        .join(name)
}

/// Generates two candidates for the prompt just typed into the compare view and waits for them;
/// generates again while an answer cannot be stored (the tiny model's byte vocabulary can
/// produce a NUL character, which the app refuses to submit).
fn compare(browser: &mut BrowserSession) {
    for attempt in 0..10 {
        if attempt == 0 {
            // Enter in the prompt box generates, as the keyboard-first labeller expects.
            browser.press_key("Enter");
        } else {
            browser.click("send");
        }
        browser.wait_for(
            "both candidates",
            &format!(
                "{}?.dataset.done === 'true' && {}?.dataset.done === 'true'",
                by_testid("candidate-a"),
                by_testid("candidate-b")
            ),
            BROWSER_TIMEOUT,
        );
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
fn set_field(browser: &mut BrowserSession, testid: &str, value: &str) {
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
fn load_model(browser: &mut BrowserSession) -> String {
    click_load(browser);
    wait_until_ready(browser)
}

/// Waits for the engine and the Load button, and clicks it.
fn click_load(browser: &mut BrowserSession) {
    browser.wait_for_testid("engine-info", BROWSER_TIMEOUT);
    browser.wait_for(
        "the Load button",
        &format!("{}?.disabled === false", by_testid("load-model")),
        BROWSER_TIMEOUT,
    );
    browser.click("load-model");
}

/// How many requests for files under `/models/` the page has made since it was loaded.
fn model_file_requests(browser: &mut BrowserSession) -> u64 {
    browser
        .evaluate("performance.getEntriesByType('resource').filter(e => e.name.includes('/models/')).length")
        .unwrap()
        .as_u64()
        .unwrap()
}

fn wait_until_ready(browser: &mut BrowserSession) -> String {
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
fn chat(browser: &mut BrowserSession, prompt: &str) -> (String, Vec<String>) {
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
fn native_reply(
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
fn reply_on<S: GeneratingSequence>(
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
fn greedy_chat_gives(
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
fn letters(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).collect()
}

fn stored_pairs(db: &str) -> Vec<PreferencePair> {
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

#[test]
fn on_a_tiny_model_the_app_chats_compares_stores_the_vote_and_reloads_from_cache() {
    let dir = tempfile::tempdir().unwrap();
    let model = TinyQwen2::default()
        .with_matrix_type(GgmlDType::Q8_0)
        .to_bytes();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, &model).unwrap();
    let (models, manifest) = publish(dir.path(), &gguf, "tiny-v1");
    let (server, db) = serve(dir.path(), &models);
    let mut browser = BrowserSession::open(&server.url(WEBGPU_APP), true);

    // Loading: downloaded and verified, not from the cache.
    let adapter = browser.wait_for_testid("adapter-info", BROWSER_TIMEOUT);
    assert!(adapter.contains("WebGPU"), "{adapter}");
    assert_eq!(load_model(&mut browser), "false");
    assert!(browser.text("model-ready").contains("tiny-v1"));

    // Chat, greedy: the streamed reply is the native engine's.
    let streamed = greedy_chat_gives(&mut browser, &model, native_reply);
    assert!(
        streamed.len() >= 2,
        "the reply appeared at once, not streamed: {streamed:?}"
    );
    assert!(browser.text("tokens-per-second").contains("tok/s"));

    // Raw HTML in a message is text; Markdown code is code.
    browser.click("new-chat");
    let hostile = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\"> **bold** `inline`\n```\nfn main() {}\n```";
    chat(&mut browser, hostile);
    let shown = browser
        .evaluate("[...document.querySelectorAll('[data-testid=message-user]')].at(-1).innerText")
        .unwrap();
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains("<script>window.__xss = 1</script>"),
        "{shown}"
    );
    assert!(
        shown.contains("<img src=x onerror=\"window.__xss = 2\">"),
        "{shown}"
    );
    let markup = browser
        .evaluate(
            "(() => { const m = [...document.querySelectorAll('[data-testid=message-user]')].at(-1); \
             return { xss: window.__xss ?? null, \
                      injected: document.querySelectorAll('[data-testid=messages] script, [data-testid=messages] img').length, \
                      bold: m.querySelector('strong')?.innerText, inline: m.querySelector('p code')?.innerText, \
                      block: m.querySelector('pre code')?.innerText }; })()",
        )
        .unwrap();
    assert_eq!(
        markup,
        json!({ "xss": null, "injected": 0, "bold": "bold", "inline": "inline", "block": "fn main() {}" })
    );
    browser.screenshot(&artifact("web-app-chat.png"));

    // Stop ends a reply early and says so.
    browser.click("new-chat");
    set_field(&mut browser, "max-new-tokens", "200");
    browser.type_into("prompt-input", "Hello there");
    browser.click("send");
    browser.wait_for(
        "the reply to start streaming",
        "document.querySelector('[data-streaming]')?.innerText.trim()",
        BROWSER_TIMEOUT,
    );
    browser.click("stop");
    browser.wait_for(
        "the stopped reply",
        &format!("{}?.innerText", by_testid("tokens-per-second")),
        BROWSER_TIMEOUT,
    );
    let readout = browser.text("tokens-per-second");
    assert!(readout.contains("stopped"), "{readout}");
    let generated = browser
        .evaluate(&format!(
            "Number({}.dataset.generatedTokens)",
            by_testid("tokens-per-second")
        ))
        .unwrap();
    assert!(generated.as_f64().unwrap() < 200.0, "{readout}");
    set_field(&mut browser, "max-new-tokens", "24");

    // Compare and vote with the keyboard.
    set_field(&mut browser, "temperature", "0.7");
    browser.click("mode-compare");
    browser.wait_for_testid("candidate-a", BROWSER_TIMEOUT);
    browser.type_into("prompt-input", "Which answer is better?");
    compare(&mut browser);
    browser.blur();
    browser.press_key("?");
    browser.wait_for_testid("help-overlay", Duration::from_secs(10));
    browser.press_key("Escape");
    browser.wait_for(
        "the help to close",
        &format!("!{}", by_testid("help-overlay")),
        Duration::from_secs(10),
    );
    browser.press_key("2");
    browser.wait_for(
        "vote B to be selected",
        &format!(
            "{}.getAttribute('aria-pressed') === 'true'",
            by_testid("vote-b")
        ),
        Duration::from_secs(10),
    );
    browser.type_into("ideal-answer", "The ideal answer.");
    browser.blur();
    browser.screenshot(&artifact("web-app-compare.png"));
    browser.press_key("Enter");
    browser.wait_for(
        "the server to acknowledge the vote",
        &format!("{}.innerText === '1'", by_testid("labels-submitted")),
        Duration::from_secs(60),
    );
    assert_eq!(browser.text("votes-pending"), "0");

    let pairs = stored_pairs(&db);
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    let pair = &pairs[0];
    assert_eq!(pair.vote, Vote::B);
    assert_eq!(pair.edited_answer.as_deref(), Some("The ideal answer."));
    assert_eq!(
        pair.conversation,
        vec![ChatMessage::new(Role::User, "Which answer is better?")]
    );
    assert!(
        pair.annotator_id.starts_with("anon-"),
        "{}",
        pair.annotator_id
    );
    assert!(pair.shown_at <= pair.voted_at);
    assert_ne!(pair.candidate_a.seed, pair.candidate_b.seed);
    for candidate in [&pair.candidate_a, &pair.candidate_b] {
        assert_eq!(candidate.model.version, "tiny-v1");
        assert_eq!(
            candidate.model.sha256,
            manifest["gguf"]["sha256"].as_str().unwrap()
        );
        assert_eq!(candidate.sampling.temperature, 0.7);
        assert_eq!(
            candidate.text,
            native_reply(
                &model,
                &pair.conversation,
                candidate.sampling,
                candidate.seed
            ),
            "a stored candidate is not what its recorded settings and seed generate"
        );
    }

    // With the server down a vote waits in the browser, and is delivered once it is back.
    let address = server.address.clone();
    drop(server);
    browser.press_key("n");
    browser.type_into("prompt-input", "A second prompt");
    compare(&mut browser);
    browser.blur();
    browser.press_key("3");
    browser.press_key("Enter");
    browser.wait_for(
        "the vote to wait in the queue",
        &format!("{}.innerText === '1'", by_testid("votes-pending")),
        Duration::from_secs(30),
    );
    browser.wait_for(
        "the queue to say it keeps retrying",
        &format!(
            "{}?.innerText.includes('retrying')",
            by_testid("queue-error")
        ),
        Duration::from_secs(30),
    );
    assert_eq!(stored_pairs(&db).len(), 1);
    let server = DpoServer::start_on(
        &address,
        &db,
        &models,
        &["--web-dir", web_bundle().to_str().unwrap()],
    );
    browser.wait_for(
        "the queued vote to be delivered",
        &format!("{}.innerText === '2'", by_testid("labels-submitted")),
        Duration::from_secs(60),
    );
    assert_eq!(browser.text("votes-pending"), "0");
    let pairs = stored_pairs(&db);
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[1].vote, Vote::Tie);

    // A reload takes the model from the cache: no request for the GGUF.
    browser.reload();
    assert_eq!(wait_until_ready(&mut browser), "true");
    assert_eq!(model_file_requests(&mut browser), 0);

    // "Clear cache" forgets it: after a reload nothing loads by itself, and loading downloads
    // the GGUF again.
    browser.click("clear-cache");
    browser.wait_for(
        "the cache to be cleared",
        &format!(
            "{}.innerText.startsWith('Cleared')",
            by_testid("cache-status")
        ),
        BROWSER_TIMEOUT,
    );
    browser.reload();
    assert_eq!(load_model(&mut browser), "false");
    assert_eq!(model_file_requests(&mut browser), 1);
    drop(server);
}

#[test]
fn a_download_broken_mid_file_resumes_from_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let model = TinyQwen2::default().to_bytes();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, &model).unwrap();
    let (models, _) = publish(dir.path(), &gguf, "tiny-v1");
    let (server, _) = serve(dir.path(), &models);
    let cut_after = model.len() / 3;
    let proxy = BreakingProxy::start(&server.address, "/models/", cut_after);
    let mut browser = BrowserSession::open(&format!("http://{}{WEBGPU_APP}", proxy.address), true);
    assert_eq!(load_model(&mut browser), "false");
    let model_requests: Vec<_> = proxy
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(line, _)| line.contains("/models/"))
        .cloned()
        .collect();
    assert_eq!(model_requests.len(), 2, "{model_requests:?}");
    assert_eq!(model_requests[0].1, None);
    let resumed_at: usize = model_requests[1]
        .1
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("the second request is not a resume: {model_requests:?}"));
    assert!(
        resumed_at > 0 && resumed_at <= cut_after,
        "resumed at {resumed_at}, the first response was cut after {cut_after} bytes"
    );
}

/// Compares two answers to `prompt` in the open compare view and votes A with the keyboard;
/// waits until the server has acknowledged `acknowledged` labels in all.
fn vote_a(browser: &mut BrowserSession, prompt: &str, acknowledged: usize) {
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

#[test]
fn one_round_votes_in_the_browser_train_the_version_the_browser_then_loads() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(
        &gguf,
        TinyQwen2::default()
            .with_matrix_type(GgmlDType::Q8_0)
            .to_bytes(),
    )
    .unwrap();
    let (models, _) = publish(dir.path(), &gguf, "round-0");
    let (server, db) = serve(dir.path(), &models);
    let mut browser = BrowserSession::open(&server.url(WEBGPU_APP), true);
    load_model(&mut browser);
    set_field(&mut browser, "max-new-tokens", "12");
    browser.click("mode-compare");
    browser.wait_for_testid("candidate-a", BROWSER_TIMEOUT);
    for (i, prompt) in ["Name a colour.", "Name a fruit.", "Name a city."]
        .into_iter()
        .enumerate()
    {
        vote_a(&mut browser, prompt, i + 1);
    }

    // The votes on round-0 train round 1, which is published beside it.
    let run = dir.path().join("run");
    let data = format!("{db}?model_version=round-0");
    succeed(
        run_dpo(
            &["train", "--max-steps", "2", "--data", &data],
            &[
                ("--model", &models.join("round-0/model.gguf")),
                ("--output-dir", &run),
            ],
        ),
        "dpo train on the votes",
    );
    let (stdout, _) = succeed(
        run_dpo(
            &[
                "export",
                "--quant",
                "q8_0",
                "--no-hf",
                "--version-id",
                "round-1",
            ],
            &[("--model", &run), ("--publish", &models)],
        ),
        "dpo export --publish",
    );
    let manifest: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(manifest["parent_version"], "round-0");
    assert_eq!(manifest["training"]["global_step"], 2);

    // The running server lists it; `dpo rounds` shows the lineage and the pairs.
    let listed = server.get("/api/models", &[]).json();
    let versions: Vec<&str> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["round-0", "round-1"]);
    let (rounds, _) = succeed(
        run_dpo(
            &["rounds", "--db", &db, "--json"],
            &[("--models-dir", &models)],
        ),
        "dpo rounds",
    );
    let rounds: Vec<Value> = rounds
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rounds[0]["pairs"], 3);
    assert_eq!(rounds[1]["parent_version"], "round-0");
    assert_eq!(rounds[1]["pairs"], 0);

    // The app offers the new version first; loaded, it generates and its votes carry it.
    browser.reload();
    browser.wait_for(
        "round-1 to be offered",
        &format!(
            "{}?.value === 'round-1' && {}?.disabled === false",
            by_testid("model-select"),
            by_testid("load-model")
        ),
        BROWSER_TIMEOUT,
    );
    browser.click("load-model");
    browser.wait_for(
        "round-1 to load",
        &format!(
            "{}?.dataset.version === 'round-1'",
            by_testid("model-ready")
        ),
        BROWSER_TIMEOUT,
    );
    browser.click("mode-compare");
    browser.wait_for_testid("candidate-a", BROWSER_TIMEOUT);
    vote_a(&mut browser, "Name an animal.", 4);
    let pairs = stored_pairs(&db);
    assert_eq!(pairs.len(), 4);
    // With two versions served, half the comparisons are blind battles against round-0: at
    // least one side is round-1, and every round-1 side carries its sha256.
    let sides = [&pairs[3].candidate_a, &pairs[3].candidate_b];
    assert!(
        sides.iter().any(|c| c.model.version == "round-1"),
        "{sides:?}"
    );
    for side in sides {
        match side.model.version.as_str() {
            "round-1" => assert_eq!(
                side.model.sha256,
                manifest["gguf"]["sha256"].as_str().unwrap()
            ),
            other => assert_eq!(other, "round-0"),
        }
    }
}

#[test]
fn asked_for_webgpu_without_it_the_app_explains_instead_of_loading() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, TinyQwen2::default().to_bytes()).unwrap();
    let (models, _) = publish(dir.path(), &gguf, "tiny-v1");
    let (server, _) = serve(dir.path(), &models);
    let mut browser = BrowserSession::open(&server.url(WEBGPU_APP), false);
    let error = browser.wait_for_testid("webgpu-error", BROWSER_TIMEOUT);
    assert!(error.contains("WebGPU"), "{error}");
    assert!(
        browser.text("model-ready").is_empty() && browser.text("model-progress").is_empty(),
        "the page tried to load a model without WebGPU"
    );
}

#[test]
fn the_real_model_answers_paris_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (models, _) = publish(dir.path(), &real_model(), "qwen2.5-0.5b");
    let (server, _) = serve(dir.path(), &models);
    let mut browser = BrowserSession::open(&server.url(WEBGPU_APP), true);
    assert_eq!(load_model(&mut browser), "false");
    // The weights live on the GPU: the worker's wasm memory holds the token embedding (kept
    // on the CPU, 94 MB here), the tokenizer, and has held a piece of rows at a time on its
    // way to the GPU, never a whole matrix (the output head is 145 MB) or the whole file.
    let model_bytes = std::fs::metadata(real_model()).unwrap().len();
    let engine_memory = engine_memory_bytes(&mut browser);
    eprintln!(
        "the WebGPU engine's worker holds {engine_memory} bytes for a {model_bytes}-byte model"
    );
    assert!(
        engine_memory < model_bytes / 2,
        "the WebGPU engine's worker holds {engine_memory} bytes for a {model_bytes}-byte model"
    );
    assert_page_holds_no_model_copy(&mut browser, model_bytes, "downloaded");
    set_field(&mut browser, "temperature", "0");
    set_field(&mut browser, "max-new-tokens", "8");
    let (reply, _) = chat(
        &mut browser,
        "What is the capital of France? Answer in one word.",
    );
    eprintln!("reply: {reply:?}; {}", browser.text("tokens-per-second"));
    assert!(reply.contains("Paris"), "{reply:?}");
    // The README's picture of the app (copy it to docs/images/app.png to refresh it).
    browser.screenshot(&artifact("web-app-real-model.png"));
}

/// A published GGUF whose bytes were damaged after publishing (its manifest rewritten to
/// match, so the download's sha256 check passes): the page names the offset and loads nothing.
#[test]
fn a_damaged_gguf_is_refused_in_the_page_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, TinyQwen2::default().to_bytes()).unwrap();
    let (models, mut manifest) = publish(dir.path(), &gguf, "damaged");
    let served = models.join("damaged").join("model.gguf");
    let mut bytes = std::fs::read(&gguf).unwrap();
    // The tensor count becomes 2^63.
    bytes[8..16].copy_from_slice(&(1u64 << 63).to_le_bytes());
    std::fs::remove_file(&served).unwrap();
    std::fs::write(&served, &bytes).unwrap();
    manifest["gguf"]["sha256"] = flywheel_tests::sha256_hex(&bytes).into();
    manifest["gguf"]["size"] = bytes.len().into();
    std::fs::write(
        models.join("damaged").join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let (server, _) = serve(dir.path(), &models);
    let mut browser = BrowserSession::open(&server.url(WEBGPU_APP), true);
    click_load(&mut browser);
    let error = browser.wait_for_testid("model-error", BROWSER_TIMEOUT);
    assert!(
        error.contains("offset 8") && error.contains("9223372036854775808 tensors"),
        "{error}"
    );
    assert!(
        browser.text("model-ready").is_empty(),
        "a damaged model loaded"
    );
}

/// Generates the two answers to the served prompt and waits for them.
fn compare_served(browser: &mut BrowserSession) {
    browser.click("send");
    browser.wait_for(
        "both candidates",
        &format!(
            "{}?.dataset.done === 'true' && {}?.dataset.done === 'true'",
            by_testid("candidate-a"),
            by_testid("candidate-b")
        ),
        BROWSER_TIMEOUT,
    );
    let error = browser.text("compare-error");
    assert!(error.is_empty(), "the comparison failed: {error}");
}

#[test]
fn an_invited_annotator_follows_the_guidelines_labels_served_prompts_in_blind_battles_and_the_lead_reads_the_dashboard()
 {
    let dir = tempfile::tempdir().unwrap();
    let model = TinyQwen2::default()
        .with_matrix_type(GgmlDType::Q8_0)
        .to_bytes();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, &model).unwrap();
    let (models, _) = publish(dir.path(), &gguf, "v1");
    // v2: one DPO round on two rows, exported beside v1 with its training curves.
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(
        &rows,
        "{\"prompt\": \"Say hi.\", \"chosen\": \"Hi!\", \"rejected\": \"No.\"}\n\
         {\"prompt\": \"Count to two.\", \"chosen\": \"1, 2\", \"rejected\": \"3\"}\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    succeed(
        run_dpo(
            &[
                "train",
                "--max-steps",
                "3",
                "--set",
                "logging_steps=1",
                "--set",
                "per_device_train_batch_size=1",
            ],
            &[
                ("--model", &gguf),
                ("--data", &rows),
                ("--output-dir", &run),
            ],
        ),
        "dpo train",
    );
    succeed(
        run_dpo(
            &[
                "export",
                "--quant",
                "q8_0",
                "--no-hf",
                "--version-id",
                "v2",
                "--parent-version",
                "v1",
            ],
            &[("--model", &run), ("--publish", &models)],
        ),
        "dpo export --publish",
    );
    let db = format!("sqlite:{}", dir.path().join("pairs.sqlite").display());
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"id\": \"greeting\", \"prompt\": \"Greet the team.\"}\n\
         {\"id\": \"colour\", \"prompt\": [{\"role\": \"system\", \"content\": \"Answer in one word.\"}, {\"role\": \"user\", \"content\": \"Name a colour.\"}]}\n",
    )
    .unwrap();
    succeed(
        run_dpo(
            &["prompts", "import", "--db", &db, prompts.to_str().unwrap()],
            &[],
        ),
        "dpo prompts import",
    );
    let (invite, _) = succeed(
        run_dpo(&["annotators", "add", "alice", "--db", &db], &[]),
        "dpo annotators add",
    );
    let token = invite.lines().last().unwrap().to_string();
    let guidelines = dir.path().join("guidelines.md");
    std::fs::write(
        &guidelines,
        "# How to judge\n\n- Prefer the **correct** answer.\n- A tie when both are equally good.\n",
    )
    .unwrap();
    let bundle = web_bundle();
    let server = DpoServer::start(
        &db,
        &models,
        &[
            "--web-dir",
            bundle.to_str().unwrap(),
            "--access",
            "invite",
            "--guidelines",
            guidelines.to_str().unwrap(),
            "--battle-share",
            "1",
            "--admin-token",
            "lead-secret-token",
        ],
    );

    // The invite link signs the browser in and leaves the address bar at once.
    let mut browser =
        BrowserSession::open(&server.url(&format!("{WEBGPU_APP}#invite={token}")), true);
    browser.wait_for_testid("signed-in-as", BROWSER_TIMEOUT);
    assert_eq!(browser.text("signed-in-as"), "Signed in as alice");
    let address = browser.evaluate("location.href").unwrap();
    assert!(!address.as_str().unwrap().contains(&token), "{address}");
    assert_eq!(
        browser
            .evaluate("localStorage.getItem('dpo.annotator-token')")
            .unwrap(),
        json!(token)
    );
    // The newest version (v2) loads; battles bring in v1 beside it.
    load_model(&mut browser);
    assert!(browser.text("model-ready").contains("v2"));
    set_field(&mut browser, "max-new-tokens", "12");

    // The guidelines come before the first vote; then the served prompt.
    browser.click("mode-compare");
    let shown = browser.wait_for_testid("guidelines", BROWSER_TIMEOUT);
    assert!(
        shown.contains("How to judge") && shown.contains("Prefer the correct answer"),
        "{shown}"
    );
    browser.screenshot(&artifact("campaign-guidelines.png"));
    browser.click("guidelines-accept");
    let mut labelled = Vec::new();
    for round in 0..2 {
        browser.wait_for(
            "a served prompt",
            &format!(
                "{e}?.dataset.promptId && !{labelled:?}.includes({e}.dataset.promptId)",
                e = by_testid("served-prompt"),
                labelled = labelled
            ),
            BROWSER_TIMEOUT,
        );
        let id = browser
            .evaluate(&format!("{}.dataset.promptId", by_testid("served-prompt")))
            .unwrap();
        labelled.push(id.as_str().unwrap().to_string());
        assert_eq!(
            browser
                .evaluate(&format!("{}.hidden", by_testid("prompt-input")))
                .unwrap(),
            json!(true),
            "a campaign without --allow-own-prompts offers no prompt box"
        );
        compare_served(&mut browser);
        if round == 0 {
            browser.screenshot(&artifact("campaign-compare.png"));
        }
        browser.press_key("1");
        browser.press_key("Enter");
        browser.wait_for(
            "the server to acknowledge the vote",
            &format!(
                "{}.innerText === '{}'",
                by_testid("labels-submitted"),
                round + 1
            ),
            Duration::from_secs(60),
        );
    }
    browser.wait_for_testid("no-prompts-left", BROWSER_TIMEOUT);
    browser.press_key("?");
    let help = browser.wait_for_testid("help-guidelines", BROWSER_TIMEOUT);
    assert!(help.contains("How to judge"), "{help}");
    browser.press_key("Escape");

    // Two pairs, by alice (from the token), one per served prompt, each a blind battle.
    let pairs = stored_pairs(&db);
    assert_eq!(pairs.len(), 2);
    let mut ids: Vec<&str> = pairs
        .iter()
        .map(|p| p.prompt_id.as_deref().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["colour", "greeting"]);
    for pair in &pairs {
        assert_eq!(pair.annotator_id, "alice");
        let mut versions = [
            pair.candidate_a.model.version.as_str(),
            pair.candidate_b.model.version.as_str(),
        ];
        versions.sort();
        assert_eq!(versions, ["v1", "v2"], "a battle draws the two versions");
        if pair.prompt_id.as_deref() == Some("colour") {
            assert_eq!(pair.conversation[0].role, Role::System);
        }
    }

    // The lead's dashboard, behind the admin token, drawn as SVG.
    browser.click("mode-dashboard");
    browser.type_into("admin-token", "lead-secret-token");
    browser.click("open-dashboard");
    browser.wait_for_testid("dashboard-summary", BROWSER_TIMEOUT);
    let plots = browser
        .evaluate(
            "(() => Object.fromEntries(['plot-labels-per-day', 'plot-labels-per-annotator', 'plot-agreement', \
             'plot-ratings', 'plot-training-loss', 'plot-training-accuracies'].map(id => { \
               const svg = document.querySelector(`[data-testid=${id}]`); \
               return [id, svg ? { tag: svg.tagName, marks: svg.querySelectorAll('rect, circle, polyline').length, \
                                   text: svg.textContent } : null]; })))()",
        )
        .unwrap();
    for id in [
        "plot-labels-per-day",
        "plot-labels-per-annotator",
        "plot-ratings",
        "plot-training-loss",
    ] {
        assert_eq!(plots[id]["tag"], "svg", "{id}: {plots}");
        assert!(
            plots[id]["marks"].as_u64().unwrap() >= 1,
            "{id} draws nothing: {plots}"
        );
    }
    assert!(
        plots["plot-labels-per-annotator"]["text"]
            .as_str()
            .unwrap()
            .contains("alice")
    );
    assert!(
        plots["plot-ratings"]["text"]
            .as_str()
            .unwrap()
            .contains("v2")
    );
    assert!(
        plots["plot-training-loss"]["text"]
            .as_str()
            .unwrap()
            .contains("v2")
    );
    assert!(browser.text("dashboard-summary").starts_with("2 labels"));
    let resources = browser
        .evaluate("performance.getEntriesByType('resource').map(e => e.name).filter(u => !u.startsWith(location.origin))")
        .unwrap();
    assert_eq!(resources, json!([]), "nothing from another origin");
    browser.screenshot(&artifact("campaign-dashboard.png"));

    // Without the admin token the dashboard stays shut.
    let refused = server.get("/api/admin/dashboard", &[]);
    assert_eq!(refused.status, 401);
}

/// The reply the CPU engine gives natively to `conversation`.
fn native_cpu_reply(
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

#[test]
fn without_webgpu_the_app_runs_the_cpu_engine_chats_and_stores_a_blind_battle_vote() {
    let dir = tempfile::tempdir().unwrap();
    // Two served versions in different block types; every comparison is a blind battle, so
    // the CPU engine holds both (each in its own worker).
    let older = TinyQwen2::default()
        .with_matrix_type(GgmlDType::Q8_0)
        .to_bytes();
    let newer = TinyQwen2::default()
        .with_matrix_type(GgmlDType::Q4_0)
        .to_bytes();
    for (version, bytes) in [("tiny-v1", &older), ("tiny-v2", &newer)] {
        let gguf = dir.path().join(format!("{version}.gguf"));
        std::fs::write(&gguf, bytes).unwrap();
        publish(dir.path(), &gguf, version);
    }
    let (server, db) = serve_with(
        dir.path(),
        &dir.path().join("models"),
        &["--battle-share", "1"],
    );
    let mut browser = BrowserSession::open(&server.url("/"), false);

    // The loader says which engine runs and why.
    let engine = browser.wait_for_testid("engine-info", BROWSER_TIMEOUT);
    assert!(
        engine.contains("CPU engine") && engine.contains("no WebGPU"),
        "{engine}"
    );
    assert_eq!(load_model(&mut browser), "false");
    assert!(browser.text("model-ready").contains("tiny-v2"));

    // Chat, greedy: the reply is the native CPU engine's on the loaded (newest) version.
    greedy_chat_gives(&mut browser, &newer, native_cpu_reply);

    // Compare and vote: the pair is stored, each answer the native CPU engine's on its
    // version.
    set_field(&mut browser, "temperature", "0.7");
    browser.click("mode-compare");
    browser.wait_for_testid("candidate-a", BROWSER_TIMEOUT);
    browser.type_into("prompt-input", "Which answer is better?");
    compare(&mut browser);
    browser.blur();
    browser.press_key("1");
    browser.wait_for(
        "vote A to be selected",
        &format!(
            "{}.getAttribute('aria-pressed') === 'true'",
            by_testid("vote-a")
        ),
        Duration::from_secs(10),
    );
    browser.press_key("Enter");
    browser.wait_for(
        "the server to acknowledge the vote",
        &format!("{}.innerText === '1'", by_testid("labels-submitted")),
        Duration::from_secs(60),
    );
    let pairs = stored_pairs(&db);
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    let mut versions = Vec::new();
    for candidate in [&pairs[0].candidate_a, &pairs[0].candidate_b] {
        versions.push(candidate.model.version.as_str());
        let model = match candidate.model.version.as_str() {
            "tiny-v1" => &older,
            _ => &newer,
        };
        assert_eq!(
            candidate.text,
            native_cpu_reply(
                model,
                &pairs[0].conversation,
                candidate.sampling,
                candidate.seed
            ),
            "the answer of {}",
            candidate.model.version
        );
    }
    versions.sort();
    assert_eq!(
        versions,
        ["tiny-v1", "tiny-v2"],
        "a battle draws the two versions"
    );
}

/// What the loaded model's worker holds in wasm memory, as the ready line reports it.
fn engine_memory_bytes(browser: &mut BrowserSession) -> u64 {
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
fn assert_page_holds_no_model_copy(browser: &mut BrowserSession, model_bytes: u64, how: &str) {
    let memories = browser.page_wasm_memory_bytes();
    eprintln!("{how}: the page's wasm memories: {memories:?} bytes; the model: {model_bytes}");
    assert!(!memories.is_empty(), "the page runs no wasm?");
    assert!(
        memories.iter().sum::<u64>() < model_bytes / 4,
        "{how}: the page's wasm memory grew to {memories:?} bytes for a {model_bytes}-byte model"
    );
}

#[test]
fn without_webgpu_the_real_model_answers_paris_on_the_cpu_engine_and_the_page_stays_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let (models, _) = publish(dir.path(), &real_model(), "qwen2.5-0.5b");
    let (server, _) = serve(dir.path(), &models);
    let mut browser = BrowserSession::open(&server.url("/"), false);
    let engine = browser.wait_for_testid("engine-info", BROWSER_TIMEOUT);
    assert!(engine.contains("CPU engine"), "{engine}");
    assert_eq!(load_model(&mut browser), "false");
    let model_bytes = std::fs::metadata(real_model()).unwrap().len();
    assert_page_holds_no_model_copy(&mut browser, model_bytes, "downloaded");
    // The CPU engine keeps the weights in their blocks: the worker holds about the model's
    // size, not a second copy of the file it read them from.
    let engine_memory = engine_memory_bytes(&mut browser);
    eprintln!("the CPU engine's worker holds {engine_memory} bytes for a {model_bytes}-byte model");
    assert!(
        engine_memory < model_bytes * 5 / 4,
        "the CPU engine's worker holds {engine_memory} bytes for a {model_bytes}-byte model"
    );
    set_field(&mut browser, "temperature", "0");
    set_field(&mut browser, "max-new-tokens", "8");
    let (reply, _) = chat(
        &mut browser,
        "What is the capital of France? Answer in one word.",
    );
    eprintln!("reply: {reply:?}; {}", browser.text("tokens-per-second"));
    assert!(reply.contains("Paris"), "{reply:?}");
    browser.screenshot(&artifact("web-app-cpu-engine.png"));
    // From the cache after a reload: verified there too, still without a copy on the page.
    browser.reload();
    assert_eq!(wait_until_ready(&mut browser), "true");
    assert_page_holds_no_model_copy(&mut browser, model_bytes, "cached");

    // While the CPU engine works through a prompt and a long reply, the page answers input:
    // its timers run on time, key presses in the prompt box are handled at once, and Stop
    // ends the reply.
    set_field(&mut browser, "max-new-tokens", "200");
    browser
        .evaluate(
            "window.__lag = { worst: 0, samples: 0 }; window.__keyDelays = []; \
             (function tick() { const due = performance.now() + 10; setTimeout(() => { \
               window.__lag.worst = Math.max(window.__lag.worst, performance.now() - due); \
               window.__lag.samples++; if (!window.__lagDone) tick(); }, 10); })(); \
             document.addEventListener('keydown', (e) => \
               window.__keyDelays.push(performance.now() - e.timeStamp), true);",
        )
        .unwrap();
    browser.type_into(
        "prompt-input",
        "Write a long story about a lighthouse keeper and the sea, with many details.",
    );
    browser.click("send");
    let started = std::time::Instant::now();
    for _ in 0..12 {
        browser.type_into("prompt-input", "");
        browser.press_key("x");
        std::thread::sleep(Duration::from_millis(250));
    }
    let typed = browser
        .evaluate(&format!("{}.value", by_testid("prompt-input")))
        .unwrap();
    assert_eq!(
        typed, "xxxxxxxxxxxx",
        "key presses during generation were lost"
    );
    assert!(
        browser
            .evaluate("!!document.querySelector('[data-streaming]')")
            .unwrap()
            .as_bool()
            .unwrap(),
        "the reply ended before the input could be measured during it"
    );
    browser.click("stop");
    browser.wait_for(
        "Stop to end the reply",
        "!document.querySelector('[data-streaming]')",
        Duration::from_secs(30),
    );
    let stop_took = started.elapsed();
    let readout = browser.text("tokens-per-second");
    assert!(readout.contains("stopped"), "{readout}");
    let measured = browser
        .evaluate("window.__lagDone = true; ({ lag: window.__lag, keys: window.__keyDelays })")
        .unwrap();
    eprintln!("while generating ({readout}; {stop_took:?} to stop): {measured}");
    let worst_timer_lag = measured["lag"]["worst"].as_f64().unwrap();
    let timer_samples = measured["lag"]["samples"].as_u64().unwrap();
    let key_delays: Vec<f64> = serde_json::from_value(measured["keys"].clone()).unwrap();
    assert!(timer_samples >= 100, "{measured}");
    assert!(
        worst_timer_lag < 100.0,
        "a timer ran {worst_timer_lag:.0} ms late while the engine worked: {measured}"
    );
    assert_eq!(key_delays.len(), 12, "{measured}");
    assert!(
        key_delays.iter().all(|delay| (0.0..100.0).contains(delay)),
        "a key press waited 100 ms or more for the page: {measured}"
    );
}
