//! The engine in real headless Chromium, on WebGPU's CPU adapter (SwiftShader): the web app's
//! wasm bundle loads tiny generated Qwen2 GGUFs (F32 and Q8_0 matrices), scores the next token
//! like the same engine natively (Vulkan on lavapipe) and generates greedily exactly the tokens
//! it generates natively — the browser's sequence grown mid-prompt (its cached positions
//! copied into larger caches), the native one allocated ahead.
//! With WebGPU switched off, the page gets an error that says so, and the CPU engine
//! (WebAssembly SIMD) gives the scores and greedy tokens it gives natively.

use std::collections::HashMap;
use std::io::Cursor;
use std::time::Duration;

use candle_core::quantized::GgmlDType;
use flywheel_tests::headless_chromium::HeadlessChromium;
use flywheel_tests::page_server::{Page, PageServer};
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::web_bundle;
use shared::generation::{StopHandle, TokenStream};
use shared::wgpu_engine::{GpuContext, Qwen2Sequence, Qwen2Weights};
use shared::{GgufModel, ModelText, SamplingParams};

const PROMPT: [u32; 6] = [72, 101, 108, 108, 111, 44];
const MAX_NEW_TOKENS: u32 = 16;
/// Next-token scores compared between browser and native.
const TOP_SCORES: usize = 8;
/// Largest |browser - native| logit: both are f32 kernels, compiled by different compilers.
const MAX_LOGIT_DIFFERENCE: f32 = 1e-6;
/// SwiftShader compiles and runs every kernel on the CPU: generous, but a hang still fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

/// A page that runs the engine on `/model.gguf` and posts what happened to `/result`.
fn engine_page() -> String {
    let prompt: Vec<String> = PROMPT.iter().map(u32::to_string).collect();
    format!(
        r#"<!doctype html>
<meta charset="utf-8">
<title>engine check</title>
<script type="module">
import init, {{ adapterInfo, greedyTokens, nextTokenScores }} from "/web_ui.js";
const report = (result) => fetch("/result", {{ method: "POST", body: JSON.stringify(result) }});
try {{
  await init();
  const adapter = await adapterInfo();
  const model = new Uint8Array(await (await fetch("/model.gguf")).arrayBuffer());
  const prompt = Uint32Array.from([{}]);
  const runs = [];
  for (const gpuKernels of [false, true]) {{
    const scores = await nextTokenScores(model, prompt, {TOP_SCORES}, gpuKernels);
    const tokens = await greedyTokens(model, prompt, {MAX_NEW_TOKENS}, gpuKernels);
    runs.push({{ scores: Array.from(scores), tokens: Array.from(tokens) }});
  }}
  await report({{ adapter, runs }});
}} catch (error) {{
  await report({{ error: String((error && error.message) || error) }});
}}
</script>
"#,
        prompt.join(", ")
    )
}

fn serve(model: Vec<u8>, page: String) -> PageServer {
    let bundle = web_bundle();
    let read = |name: &str| {
        std::fs::read(bundle.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", bundle.join(name).display()))
    };
    let pages = HashMap::from([
        ("/".to_string(), Page::new("text/html", page)),
        (
            "/web_ui.js".to_string(),
            Page::new("text/javascript", read("web_ui.js")),
        ),
        (
            "/web_ui_bg.wasm".to_string(),
            Page::new("application/wasm", read("web_ui_bg.wasm")),
        ),
        (
            "/model.gguf".to_string(),
            Page::new("application/octet-stream", model),
        ),
    ]);
    PageServer::start(pages)
}

/// What the page computed: with the kernels its adapter gets, then with the GPU kernels.
struct BrowserRun {
    adapter: String,
    runs: Vec<KernelRun>,
}

struct KernelRun {
    /// (token, logit) pairs, best first.
    scores: Vec<(u32, f32)>,
    tokens: Vec<u32>,
}

/// What the page reported, or its error message.
fn run_in_browser(model: Vec<u8>, webgpu: bool) -> Result<BrowserRun, String> {
    let server = serve(model, engine_page());
    let _browser = HeadlessChromium::open(&format!("{}/", server.origin), webgpu);
    let body = server
        .next_result(BROWSER_TIMEOUT)
        .expect("the page reported nothing in time");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    if let Some(error) = result.get("error") {
        return Err(error.as_str().unwrap_or(&body).to_string());
    }
    let runs = result["runs"]
        .as_array()
        .expect("the page reports its runs")
        .iter()
        .map(|run| {
            let flat: Vec<f32> = serde_json::from_value(run["scores"].clone()).unwrap();
            KernelRun {
                scores: flat
                    .chunks_exact(2)
                    .map(|pair| (pair[0] as u32, pair[1]))
                    .collect(),
                tokens: serde_json::from_value(run["tokens"].clone()).unwrap(),
            }
        })
        .collect();
    Ok(BrowserRun {
        adapter: result["adapter"].as_str().unwrap_or_default().to_string(),
        runs,
    })
}

/// The same engine natively: the next-token scores after the prompt, then the greedy reply.
fn native_run(model: &[u8]) -> (Vec<(u32, f32)>, Vec<u32>) {
    let mut reader = Cursor::new(model);
    let gguf = GgufModel::read(&mut reader, "tiny.gguf").unwrap();
    let stop_tokens = ModelText::from_gguf(&gguf).unwrap().stop_tokens();
    let ctx = pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe in CI)");
    let weights = Qwen2Weights::load(&ctx, &gguf, &mut reader).unwrap();
    let mut sequence = Qwen2Sequence::new(&weights, 64).unwrap();
    sequence.feed(&PROMPT).unwrap();
    let scores = pollster::block_on(sequence.next_token_scores(TOP_SCORES, &[], 1.0))
        .unwrap()
        .iter()
        .map(|s| (s.token, s.logit))
        .collect();
    sequence.truncate(0);
    let sampling = SamplingParams {
        max_new_tokens: MAX_NEW_TOKENS,
        ..SamplingParams::default()
    };
    let mut stream = pollster::block_on(TokenStream::start(
        &mut sequence,
        &PROMPT,
        sampling,
        0,
        stop_tokens,
        StopHandle::new(),
    ))
    .unwrap();
    let mut tokens = Vec::new();
    while let Some(token) = pollster::block_on(stream.next_token()).unwrap() {
        tokens.push(token);
    }
    (scores, tokens)
}

#[test]
fn the_browser_engine_generates_the_native_tokens() {
    for matrix_type in [GgmlDType::F32, GgmlDType::Q8_0] {
        let model = TinyQwen2::default()
            .with_matrix_type(matrix_type)
            .to_bytes();
        let (native_scores, native_tokens) = native_run(&model);
        assert!(
            native_tokens.len() >= 4,
            "{matrix_type:?}: too short a reply to compare: {native_tokens:?}"
        );
        let browser = run_in_browser(model, true)
            .unwrap_or_else(|error| panic!("{matrix_type:?}: the page failed: {error}"));
        assert_eq!(browser.runs.len(), 2);
        for (run, kernels) in browser.runs.iter().zip(["the adapter's", "the GPU"]) {
            eprintln!(
                "{matrix_type:?} on {} with {kernels} kernels:\n  native  {native_scores:?}\n  browser {:?}\n  native reply  {native_tokens:?}\n  browser reply {:?}",
                browser.adapter, run.scores, run.tokens
            );
            assert_eq!(run.scores.len(), TOP_SCORES);
            for (&(native_token, native_logit), &(token, logit)) in
                native_scores.iter().zip(&run.scores)
            {
                assert_eq!(
                    token, native_token,
                    "{matrix_type:?}, {kernels} kernels: the ranking differs"
                );
                assert!(
                    (logit - native_logit).abs() <= MAX_LOGIT_DIFFERENCE,
                    "{matrix_type:?}, {kernels} kernels: token {token}: browser {logit}, native {native_logit}"
                );
            }
            assert_eq!(
                run.tokens, native_tokens,
                "{matrix_type:?}, {kernels} kernels: browser and native replies differ"
            );
        }
    }
}

#[test]
fn without_webgpu_the_page_reports_a_clear_error() {
    let model = TinyQwen2::default().to_bytes();
    let Err(error) = run_in_browser(model, false) else {
        panic!("generated without WebGPU");
    };
    eprintln!("error shown: {error}");
    assert!(error.contains("WebGPU"), "{error}");
}

/// A page that runs the CPU engine on `/model.gguf` and posts its scores and reply.
fn cpu_engine_page() -> String {
    let prompt: Vec<String> = PROMPT.iter().map(u32::to_string).collect();
    format!(
        r#"<!doctype html>
<meta charset="utf-8">
<title>CPU engine check</title>
<script type="module">
import init, {{ cpuGreedyTokens, cpuNextTokenScores }} from "/web_ui.js";
const report = (result) => fetch("/result", {{ method: "POST", body: JSON.stringify(result) }});
try {{
  await init();
  const webgpu = Boolean(navigator.gpu);
  const model = new Uint8Array(await (await fetch("/model.gguf")).arrayBuffer());
  const prompt = Uint32Array.from([{}]);
  const scores = cpuNextTokenScores(model, prompt, {TOP_SCORES});
  const tokens = cpuGreedyTokens(model, prompt, {MAX_NEW_TOKENS});
  await report({{ webgpu, scores: Array.from(scores), tokens: Array.from(tokens) }});
}} catch (error) {{
  await report({{ error: String((error && error.message) || error) }});
}}
</script>
"#,
        prompt.join(", ")
    )
}

#[test]
fn without_webgpu_the_cpu_engine_gives_the_native_scores_and_reply() {
    use shared::cpu_engine::{CpuQwen2Weights, CpuSequence};
    // Tiny models in Q8_0, Q4_0 and Q5_0 (the browser's SIMD kernels) and F32 (the float
    // ones), and one block of Qwen2.5-1.5B's shapes in Q4_K_M's types (Q4_K and Q6_K).
    let models = [
        GgmlDType::Q8_0,
        GgmlDType::Q4_0,
        GgmlDType::Q5_0,
        GgmlDType::F32,
    ]
    .map(|matrix_type| {
        let model = TinyQwen2::default()
            .with_matrix_type(matrix_type)
            .to_bytes();
        (format!("tiny {matrix_type:?}"), model)
    })
    .into_iter()
    .chain([(
        "1.5B-shaped, Q4_K_M types".to_string(),
        flywheel_tests::shaped_gguf::qwen2_with_shape(flywheel_tests::shaped_gguf::QWEN2_5_1_5B, 1),
    )]);
    for (matrix_type, model) in models {
        let mut reader = Cursor::new(&model);
        let gguf = GgufModel::read(&mut reader, "model.gguf").unwrap();
        let stop_tokens = ModelText::from_gguf(&gguf)
            .map(|text| text.stop_tokens())
            .unwrap_or_default();
        let weights = CpuQwen2Weights::load(&gguf, &mut reader).unwrap();
        let mut sequence = CpuSequence::new(&weights, 64);
        sequence.feed(&PROMPT).unwrap();
        let native_scores: Vec<(u32, f32)> = sequence
            .next_token_scores(TOP_SCORES, &[], 1.0)
            .iter()
            .map(|s| (s.token, s.logit))
            .collect();
        let mut native_tokens = Vec::new();
        while native_tokens.len() < MAX_NEW_TOKENS as usize {
            let next = sequence.next_token_scores(1, &[], 1.0)[0].token;
            if stop_tokens.contains(&next) {
                break;
            }
            native_tokens.push(next);
            sequence.feed(&[next]).unwrap();
        }

        let server = serve(model, cpu_engine_page());
        let _browser = HeadlessChromium::open(&format!("{}/", server.origin), false);
        let body = server
            .next_result(BROWSER_TIMEOUT)
            .expect("the page reported nothing in time");
        let result: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(result.get("error").is_none(), "{matrix_type}: {body}");
        eprintln!("navigator.gpu present: {}", result["webgpu"]);
        let flat: Vec<f32> = serde_json::from_value(result["scores"].clone()).unwrap();
        let tokens: Vec<u32> = serde_json::from_value(result["tokens"].clone()).unwrap();
        eprintln!(
            "{matrix_type}:\n  native  {native_scores:?}\n  browser {flat:?}\n  native reply  {native_tokens:?}\n  browser reply {tokens:?}"
        );
        for (&(native_token, native_logit), pair) in native_scores.iter().zip(flat.chunks_exact(2))
        {
            assert_eq!(
                pair[0] as u32, native_token,
                "{matrix_type}: the ranking differs"
            );
            assert!(
                (pair[1] - native_logit).abs() <= 1e-4,
                "{matrix_type}: token {native_token}: browser {}, native {native_logit}",
                pair[1]
            );
        }
        assert_eq!(
            tokens, native_tokens,
            "{matrix_type}: browser and native replies differ"
        );
    }
}
