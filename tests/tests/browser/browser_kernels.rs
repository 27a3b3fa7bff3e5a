//! The matrix kernels in real headless Chromium, on WebGPU's CPU adapter (SwiftShader),
//! against the same CPU reference as the native kernel checks (`matmul_reference`): every
//! block type, in the plan the browser's software adapter gets and in the GPU plan (64-row
//! tiles of 32 tokens, and of 8), for one token and for batches that leave part of a row and
//! token tile, with and without the RMSNorm folded into the product. Plans with f16 tiles run
//! where the adapter has shader-f16 and are otherwise refused with a message that says so.

use std::collections::HashMap;
use std::time::Duration;

use flywheel_tests::headless_chromium::HeadlessChromium;
use flywheel_tests::logit_comparison::noise;
use flywheel_tests::matmul_reference::{
    Added, Case, NORM_EPS, assert_product_within, case, inputs, rms_normed,
};
use flywheel_tests::page_server::{Page, PageServer};
use flywheel_tests::web_bundle;
use shared::gguf::BlockType;
use shared::wgpu_engine::{MatmulLayout, MatmulPlan};

/// SwiftShader compiles every kernel on the CPU: generous, but a hang still fails.
const RESULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Plan names (`shared::wgpu_engine::matmul_plan_name`): what SwiftShader gets, the GPU plan, the
/// GPU plan with 8-token tiles, and with f16 tiles.
const PLANS: [&str; 4] = [
    "browser-cpu",
    "gpu",
    "lanes:16/tiledx8",
    "lanes:16/tiled-f16x32",
];

/// (rows, tokens): one token (the decode kernel); 5 tokens, part of a token tile; 130 rows
/// and 71 tokens, two 64-row tiles and two rows, several token tiles and part of one.
const SHAPES: [(usize, usize); 3] = [(37, 1), (37, 5), (130, 71)];

/// Rows and tokens of the products that normalize their input (where the plan folds norms).
const NORMALIZED_SHAPES: [(usize, usize); 2] = [(70, 1), (70, 37)];

/// One product the page runs, and what it must give.
struct BrowserCase {
    plan: &'static str,
    block_type: BlockType,
    rows: usize,
    cols: usize,
    /// Which served inputs the product reads (`/xs/{name}`).
    xs_name: String,
    norm_weight: Option<Vec<f32>>,
    case: Case,
}

impl BrowserCase {
    fn f16_tiles(&self) -> bool {
        let plan: MatmulPlan = self.plan.parse().unwrap();
        plan.batched == (MatmulLayout::Tiled { f16: true })
    }
}

fn cases_and_inputs() -> (Vec<BrowserCase>, HashMap<String, Vec<f32>>) {
    let mut served_inputs = HashMap::new();
    let mut cases = Vec::new();
    for plan in PLANS {
        let folds_norms = plan.parse::<MatmulPlan>().unwrap().normalize_inputs;
        let shapes = SHAPES.iter().map(|&(rows, tokens)| (rows, tokens, false));
        let normalized = NORMALIZED_SHAPES
            .iter()
            .map(|&(rows, tokens)| (rows, tokens, true));
        let shapes: Vec<_> = shapes.chain(normalized.filter(|_| folds_norms)).collect();
        for block_type in BlockType::ALL {
            // F32 and F16 rows that end inside a 32-column chunk.
            let cols = match block_type {
                BlockType::F32 => 516,
                BlockType::F16 => 520,
                _ => 512,
            };
            for &(rows, tokens, normalized) in &shapes {
                let mut xs = inputs(tokens, cols);
                let norm_weight = normalized.then(|| {
                    noise(cols, 11)
                        .iter()
                        .map(|w| 1.0 + w * 0.5)
                        .collect::<Vec<f32>>()
                });
                // Normalized: token 0 all zero, so eps keeps its norm finite (and it gives 0);
                // the reference multiplies the normalized inputs.
                let reference_xs = match &norm_weight {
                    Some(weight) => {
                        xs[0].fill(0.0);
                        xs.iter().map(|x| rms_normed(x, weight)).collect()
                    }
                    None => xs.clone(),
                };
                let xs_name = format!(
                    "{tokens}x{cols}{}",
                    if normalized { "-first-zero" } else { "" }
                );
                cases.push(BrowserCase {
                    plan,
                    block_type,
                    rows,
                    cols,
                    xs_name: xs_name.clone(),
                    norm_weight,
                    case: case(block_type, rows, cols, &reference_xs),
                });
                served_inputs.insert(xs_name, xs.concat());
            }
        }
    }
    (cases, served_inputs)
}

/// The page: reports the adapter, then runs every case of `/cases.json` in order with one
/// `MatmulProbe` per plan and reports each y (or the error) as it comes.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>kernel check</title>
<script type="module">
import init, { adapterInfo, MatmulProbe } from "/web_ui.js";
const report = (result) => fetch("/result", { method: "POST", body: JSON.stringify(result) });
const message = (error) => String((error && error.message) || error);
const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
try {
  await init();
  await report({ adapter: await adapterInfo() });
  const cases = await (await fetch("/cases.json")).json();
  let probe = null, plan = null, refused = null;
  for (const [index, c] of cases.entries()) {
    if (c.plan !== plan) {
      if (probe) probe.free();
      [probe, plan, refused] = [null, c.plan, null];
      try { probe = await MatmulProbe.forPlan(plan); } catch (error) { refused = message(error); }
    }
    if (!probe) { await report({ index, error: refused }); continue; }
    try {
      const xs = new Float32Array((await bytes(c.xs)).buffer);
      const y = await probe.product(c.blockType, c.rows, c.cols, await bytes(c.blocks), xs,
        Float32Array.from(c.normWeight), c.normEps);
      await report({ index, y: Array.from(y) });
    } catch (error) {
      await report({ index, error: message(error) });
    }
  }
} catch (error) {
  await report({ error: message(error) });
}
</script>
"#;

fn serve(cases: &[BrowserCase], served_inputs: &HashMap<String, Vec<f32>>) -> PageServer {
    let bundle = web_bundle();
    let read = |name: &str| {
        std::fs::read(bundle.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", bundle.join(name).display()))
    };
    let mut pages = HashMap::from([
        ("/".to_string(), Page::new("text/html", PAGE)),
        (
            "/web_ui.js".to_string(),
            Page::new("text/javascript", read("web_ui.js")),
        ),
        (
            "/web_ui_bg.wasm".to_string(),
            Page::new("application/wasm", read("web_ui_bg.wasm")),
        ),
    ]);
    for (name, xs) in served_inputs {
        pages.insert(
            format!("/xs/{name}"),
            Page::new(
                "application/octet-stream",
                bytemuck::cast_slice(xs).to_vec(),
            ),
        );
    }
    let mut listed = Vec::new();
    for (index, c) in cases.iter().enumerate() {
        let blocks = format!("/blocks/{index}");
        pages.insert(
            blocks.clone(),
            Page::new("application/octet-stream", c.case.blocks()),
        );
        listed.push(serde_json::json!({
            "plan": c.plan,
            "blockType": format!("{:?}", c.block_type),
            "rows": c.rows,
            "cols": c.cols,
            "blocks": blocks,
            "xs": format!("/xs/{}", c.xs_name),
            "normWeight": c.norm_weight.clone().unwrap_or_default(),
            "normEps": NORM_EPS,
        }));
    }
    pages.insert(
        "/cases.json".to_string(),
        Page::new("application/json", serde_json::to_vec(&listed).unwrap()),
    );
    PageServer::start(pages)
}

fn next_report(server: &PageServer) -> serde_json::Value {
    let body = server
        .next_result(RESULT_TIMEOUT)
        .expect("the page reported nothing in time");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        report.get("index").is_some() || report.get("error").is_none(),
        "the page failed: {body}"
    );
    report
}

#[test]
fn every_block_type_matches_the_cpu_reference_in_the_browser_in_both_plans() {
    let (cases, served_inputs) = cases_and_inputs();
    let server = serve(&cases, &served_inputs);
    let _browser = HeadlessChromium::open(&format!("{}/", server.origin), true);
    let adapter = next_report(&server)["adapter"]
        .as_str()
        .expect("the page reports its adapter first")
        .to_string();
    eprintln!("adapter: {adapter}");
    let has_shader_f16 = adapter.contains("shader-f16: true");
    let (mut checked, mut refused) = (HashMap::<&str, usize>::new(), 0);
    for (index, c) in cases.iter().enumerate() {
        let what = format!(
            "{} {:?} {} × {}, {} token(s){}",
            c.plan,
            c.block_type,
            c.rows,
            c.cols,
            c.case.reference.len(),
            if c.norm_weight.is_some() {
                ", input normalized"
            } else {
                ""
            }
        );
        let report = next_report(&server);
        assert_eq!(report["index"], index, "{what}: reports out of order");
        if let Some(error) = report.get("error") {
            let error = error.as_str().unwrap_or_default();
            assert!(
                c.f16_tiles() && !has_shader_f16 && error.contains("shader-f16"),
                "{what}: {error}"
            );
            refused += 1;
            continue;
        }
        // JSON has no NaN: a null is one.
        let y: Vec<Option<f32>> = serde_json::from_value(report["y"].clone()).unwrap();
        let y: Vec<f32> = y.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect();
        assert_eq!(y.len(), c.rows * c.case.reference.len(), "{what}: outputs");
        let y: Vec<Vec<f32>> = y.chunks(c.rows).map(<[f32]>::to_vec).collect();
        // f16 tiles round weights and activations to 11 significant bits.
        let relative = if c.f16_tiles() { 2e-3 } else { 1e-5 };
        assert_product_within(&what, &y, &c.case, Added::default(), relative);
        assert!(
            y.iter().all(|token_y| token_y[0] == 0.0),
            "{what}: an all-zero row must give exactly 0"
        );
        if c.norm_weight.is_some() {
            assert!(
                y[0].iter().all(|&v| v == 0.0),
                "{what}: an all-zero input gives 0"
            );
        }
        *checked.entry(c.plan).or_default() += 1;
    }
    eprintln!("products checked per plan: {checked:?}; refused (no shader-f16): {refused}");
    for plan in ["browser-cpu", "gpu", "lanes:16/tiledx8"] {
        assert!(
            checked.get(plan).is_some_and(|&n| n > 0),
            "{plan}: nothing checked"
        );
    }
}
