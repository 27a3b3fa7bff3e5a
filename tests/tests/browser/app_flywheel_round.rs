//! One flywheel round through the browser: votes cast in the app on version round-0 train
//! round-1 (`dpo train --data sqlite:…?model_version=round-0`), `dpo export --publish` puts it
//! beside round-0 with its parent link, the running server lists it, `dpo rounds` shows the
//! lineage, and the browser loads round-1, generates with it and tags new votes with it.

use candle_core::quantized::GgmlDType;
use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{run_dpo, succeed};
use serde_json::Value;

use super::app_fixture::{
    BROWSER_TIMEOUT, WEBGPU_APP, load_model, publish, serve, set_field, stored_pairs, vote_a,
};

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
