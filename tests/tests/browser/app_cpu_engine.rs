//! The app without WebGPU: the CPU engine (WebAssembly SIMD) chats and stores a blind-battle
//! vote, and the page holds no copy of the model.

use std::time::Duration;

use candle_core::quantized::GgmlDType;
use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::tiny_gguf::TinyQwen2;

use super::app_fixture::{
    BROWSER_TIMEOUT, compare, greedy_chat_gives, load_model, native_cpu_reply, publish, serve_with,
    set_field, stored_pairs,
};

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
