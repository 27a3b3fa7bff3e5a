//! The app end to end on a tiny generated model, in headless Chromium on WebGPU (SwiftShader)
//! behind a real `dpo serve` with a real SQLite file: the loader downloads and verifies the
//! model; chat streams the reply the same engine gives natively; user text with `<script>`
//! and `<img onerror>` renders as text while Markdown code renders as code; compare mode
//! votes by keyboard and the pair lands in SQLite with its provenance (each candidate is
//! what the engine generates natively from the recorded settings and seed); a vote cast
//! while the server is down is delivered when it is back; Stop ends a reply; a reload loads
//! from the browser's cache; a download broken mid-file resumes with a byte range; WebGPU
//! switched off is said, not loaded; a damaged GGUF is refused with its offset. Screenshots go
//! to `target/test-artifacts/`.

use std::time::Duration;

use candle_core::quantized::GgmlDType;
use flywheel_tests::breaking_proxy::BreakingProxy;
use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::web_bundle;
use serde_json::json;
use shared::{ChatMessage, Role, Vote};

use super::app_fixture::{
    BROWSER_TIMEOUT, WEBGPU_APP, artifact, chat, click_load, compare, greedy_chat_gives,
    load_model, model_file_requests, native_reply, publish, serve, set_field, stored_pairs,
    wait_until_ready,
};

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
