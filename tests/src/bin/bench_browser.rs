//! Benchmark (not a test): the web app in headless Chromium on this machine's WebGPU adapter
//! with the real model — load time (download, sha256, cache, upload to the GPU), time to
//! first token and decode tokens/s for a greedy chat reply — and, in a second headless
//! Chromium without WebGPU, our CPU engine (WebAssembly SIMD, one thread) beside
//! `@wllama/wllama` 3.8.1 (llama.cpp in wasm, forced to one thread) on the same GGUF and the
//! same chat-templated prompt, measured in the same run. `cargo xtask bench-browser` builds
//! the size-optimised bundle, fetches wllama from the npm registry (`WLLAMA_DIR`: its
//! package folder) and runs it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::headless_chromium::HeadlessChromium;
use flywheel_tests::page_server::{Page, PageServer};
use flywheel_tests::{real_model, run_dpo, succeed, web_bundle};
use shared::{ChatMessage, GgufModel, ModelText};

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
    // `--cpu-engines-only`: the CPU engines' rows alone (no WebGPU app run).
    if std::env::args().any(|arg| arg == "--cpu-engines-only") {
        println!(
            "| engine (headless Chromium, this machine) | load s | prompt tokens | first token s | decode tok/s |"
        );
        println!("|---|---:|---:|---:|---:|");
        let wllama = std::env::var_os("WLLAMA_DIR").expect("WLLAMA_DIR: wllama's package folder");
        cpu_engines(Path::new(&wllama));
        return;
    }
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
    // The WebGPU engine, though the headless adapter is a software fallback.
    let mut browser = BrowserSession::open(&server.url("/?engine=webgpu"), true);
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
    match std::env::var_os("WLLAMA_DIR") {
        Some(wllama) => cpu_engines(Path::new(&wllama)),
        None => println!(
            "| (CPU engines not measured: set WLLAMA_DIR, as `cargo xtask bench-browser` does) | | | | |"
        ),
    }
}

/// Our CPU engine and wllama, one thread each, in one page of a Chromium without WebGPU:
/// table rows like the app's.
fn cpu_engines(wllama: &Path) {
    let model = std::fs::read(real_model()).unwrap();
    let gguf = GgufModel::read(&mut std::io::Cursor::new(&model), "model.gguf").unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let prompt = text
        .template
        .render(&[ChatMessage::user(PROMPT)], true)
        .unwrap();
    let ids: Vec<String> = text
        .tokenizer
        .encode(&prompt)
        .unwrap()
        .iter()
        .map(u32::to_string)
        .collect();
    let bundle = web_bundle();
    let read =
        |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let page = format!(
        r#"<!doctype html>
<meta charset="utf-8">
<script type="module">
import init, {{ cpuBenchmark }} from "/web_ui.js";
import {{ Wllama }} from "/wllama/index.js";
const report = (result) => fetch("/result", {{ method: "POST", body: JSON.stringify(result) }});
try {{
  await init();
  const bytes = new Uint8Array(await (await fetch("/model.gguf")).arrayBuffer());
  const ours = Array.from(cpuBenchmark(bytes, Uint32Array.from([{ids}]), {NEW_TOKENS}));
  const wllama = new Wllama({{ default: "/wllama/wllama.wasm" }});
  const started = performance.now();
  await wllama.loadModel([new Blob([bytes])], {{ n_threads: 1, n_ctx: 1024 }});
  const load_ms = performance.now() - started;
  const reply = await wllama.createCompletion({{ prompt: {prompt}, max_tokens: {NEW_TOKENS}, temperature: 0 }});
  await report({{ ours, wllama: {{ load_ms, timings: reply.timings }} }});
}} catch (error) {{
  await report({{ error: String((error && error.stack) || error) }});
}}
</script>
"#,
        ids = ids.join(", "),
        prompt = serde_json::to_string(&prompt).unwrap(),
    );
    let pages = HashMap::from([
        ("/".to_string(), Page::new("text/html", page)),
        (
            "/web_ui.js".into(),
            Page::new("text/javascript", read(&bundle.join("web_ui.js"))),
        ),
        (
            "/web_ui_bg.wasm".into(),
            Page::new("application/wasm", read(&bundle.join("web_ui_bg.wasm"))),
        ),
        (
            "/wllama/index.js".into(),
            Page::new("text/javascript", read(&wllama.join("esm/index.js"))),
        ),
        (
            "/wllama/wllama.wasm".into(),
            Page::new(
                "application/wasm",
                read(&wllama.join("esm/wasm/wllama.wasm")),
            ),
        ),
        (
            "/model.gguf".into(),
            Page::new("application/octet-stream", model),
        ),
    ]);
    let server = PageServer::start(pages);
    let _browser = HeadlessChromium::open(&format!("{}/", server.origin), false);
    let body = server
        .next_result(TIMEOUT)
        .expect("the CPU engines page reported nothing in time");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    if let Some(error) = result.get("error") {
        panic!("the CPU engines page failed: {error}");
    }
    let ours: Vec<f64> = serde_json::from_value(result["ours"].clone()).unwrap();
    let [load_ms, prompt_tokens, first_token_ms, decode, generated] = ours[..] else {
        panic!("unexpected CPU engine report {ours:?}");
    };
    println!(
        "| web-ui CPU engine, WebAssembly SIMD, 1 thread (WebGPU off) | {:.1} | {prompt_tokens} | {:.1} | {decode:.2} ({generated} tokens) |",
        load_ms / 1000.0,
        first_token_ms / 1000.0
    );
    let wllama = &result["wllama"];
    let timings = &wllama["timings"];
    let number = |value: &serde_json::Value| value.as_f64().unwrap_or(f64::NAN);
    println!(
        "| @wllama/wllama 3.8.1, llama.cpp wasm, 1 thread (same page) | {:.1} | {} | {:.1} | {:.2} ({} tokens) |",
        number(&wllama["load_ms"]) / 1000.0,
        timings["prompt_n"],
        number(&timings["prompt_ms"]) / 1000.0,
        number(&timings["predicted_per_second"]),
        timings["predicted_n"],
    );
}
