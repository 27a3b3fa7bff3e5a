//! Benchmark (not a test): the web app in headless Chromium on this machine's WebGPU adapter
//! with the real model — load time (download, sha256, cache, upload to the GPU), time to
//! first token and decode tokens/s for a greedy chat reply — beside the in-browser anchor the
//! web-ui issue measured here: `@wllama/wllama` 3.8.1 (llama.cpp in wasm, on the CPU) on the
//! same GGUF. `cargo xtask bench-browser` builds the size-optimised bundle and runs it.

use std::time::Duration;

use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::{real_model, run_dpo, succeed, web_bundle};

const TIMEOUT: Duration = Duration::from_secs(1800);
const PROMPT: &str =
    "Write a short paragraph about why the sky is blue, in simple words for a child.";
const NEW_TOKENS: &str = "64";

fn number(browser: &mut BrowserSession, testid: &str, attribute: &str) -> f64 {
    browser
        .evaluate(&format!(
            "Number({}.dataset.{attribute})",
            by_testid(testid)
        ))
        .unwrap()
        .as_f64()
        .unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    succeed(
        run_dpo(
            &["publish", "--version-id", "bench"],
            &[("--model", &real_model()), ("--models-dir", &models)],
        ),
        "dpo publish",
    );
    let db = format!("sqlite:{}", dir.path().join("pairs.sqlite").display());
    let bundle = web_bundle();
    let server = DpoServer::start(&db, &models, &["--web-dir", bundle.to_str().unwrap()]);
    let mut browser = BrowserSession::open(&server.url("/"), true);
    let adapter = browser.wait_for_testid("adapter-info", TIMEOUT);
    browser.wait_for(
        "the Load button",
        &format!("{}?.disabled === false", by_testid("load-model")),
        TIMEOUT,
    );
    browser.click("load-model");
    browser.wait_for(
        "the model",
        &format!(
            "{} ?? {}",
            by_testid("model-ready"),
            by_testid("model-error")
        ),
        TIMEOUT,
    );
    let error = browser.text("model-error");
    assert!(error.is_empty(), "{error}");
    let load_seconds = number(&mut browser, "model-ready", "seconds");

    browser
        .evaluate(&format!(
            "(() => {{ {}.open = true; }})()",
            by_testid("settings")
        ))
        .unwrap();
    for (field, value) in [("temperature", "0"), ("max-new-tokens", NEW_TOKENS)] {
        browser
            .evaluate(&format!("{}.select()", by_testid(field)))
            .unwrap();
        browser.type_into(field, value);
        browser.blur();
    }
    browser.type_into("prompt-input", PROMPT);
    browser.click("send");
    browser.wait_for(
        "the reply",
        &format!(
            "{} ?? {}",
            by_testid("tokens-per-second"),
            by_testid("chat-error")
        ),
        TIMEOUT,
    );
    let error = browser.text("chat-error");
    assert!(error.is_empty(), "{error}");
    let prompt_tokens = number(&mut browser, "tokens-per-second", "promptTokens");
    let generated = number(&mut browser, "tokens-per-second", "generatedTokens");
    let first_token_s = number(&mut browser, "tokens-per-second", "firstTokenMs") / 1000.0;
    let decode = number(&mut browser, "tokens-per-second", "decodeTokensPerSecond");

    println!("{adapter}");
    println!(
        "model: {} ({:.0} MB)",
        real_model().display(),
        std::fs::metadata(real_model()).unwrap().len() as f64 / 1e6
    );
    println!();
    println!(
        "| engine (headless Chromium, this machine) | load s | prompt tokens | first token s | decode tok/s |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| web-ui, wgpu on WebGPU (SwiftShader) | {load_seconds:.1} | {prompt_tokens} | {first_token_s:.1} | {decode:.2} ({generated} tokens) |"
    );
    println!(
        "| @wllama/wllama 3.8.1, llama.cpp wasm on the CPU (the issue's anchor) | 6.0 | 39 | 2.0 | 6.4 |"
    );
}
