//! The real Qwen2.5 0.5B model in the browser: greedy "What is the capital of France? Answer
//! in one word." gives `Paris` on WebGPU and on the CPU engine, whose page stays responsive.

use std::time::Duration;

use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::real_model;

use super::app_fixture::{
    BROWSER_TIMEOUT, WEBGPU_APP, artifact, assert_page_holds_no_model_copy, chat,
    engine_memory_bytes, load_model, publish, serve, set_field, wait_until_ready,
};

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
