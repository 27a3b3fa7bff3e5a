//! A label campaign in the browser: an invited annotator signs in by the invite link, reads
//! the guidelines before the first vote, labels served prompts in blind battles between two
//! versions, and the lead reads the dashboard behind the admin token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::quantized::GgmlDType;
use flywheel_tests::browser_session::{BrowserSession, by_testid};
use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{run_dpo, succeed, web_bundle};
use serde_json::json;
use shared::Role;

use super::app_fixture::{
    BROWSER_TIMEOUT, WEBGPU_APP, artifact, compare_served, load_model, publish, set_field,
    stored_pairs,
};

/// v1, the tiny model, and v2, one DPO round on two rows exported beside it with its
/// training curves; returns the models directory.
fn v2_trained_from_v1(dir: &Path) -> PathBuf {
    let model = TinyQwen2::default()
        .with_matrix_type(GgmlDType::Q8_0)
        .to_bytes();
    let gguf = dir.join("tiny.gguf");
    std::fs::write(&gguf, &model).unwrap();
    let (models, _) = publish(dir, &gguf, "v1");
    let rows = dir.join("rows.jsonl");
    std::fs::write(
        &rows,
        "{\"prompt\": \"Say hi.\", \"chosen\": \"Hi!\", \"rejected\": \"No.\"}\n\
         {\"prompt\": \"Count to two.\", \"chosen\": \"1, 2\", \"rejected\": \"3\"}\n",
    )
    .unwrap();
    let run = dir.join("run");
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
    models
}

/// A campaign's store: two prompts to label and alice invited; returns the database, alice's
/// token and the guidelines file.
fn campaign_with_alice(dir: &Path) -> (String, String, PathBuf) {
    let db = format!("sqlite:{}", dir.join("pairs.sqlite").display());
    let prompts = dir.join("prompts.jsonl");
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
    let guidelines = dir.join("guidelines.md");
    std::fs::write(
        &guidelines,
        "# How to judge\n\n- Prefer the **correct** answer.\n- A tie when both are equally good.\n",
    )
    .unwrap();
    (db, token, guidelines)
}

/// The invite link signs the browser in as alice and leaves the address bar at once.
fn signed_in_by_the_invite_link(browser: &mut BrowserSession, token: &str) {
    browser.wait_for_testid("signed-in-as", BROWSER_TIMEOUT);
    assert_eq!(browser.text("signed-in-as"), "Signed in as alice");
    let address = browser.evaluate("location.href").unwrap();
    assert!(!address.as_str().unwrap().contains(token), "{address}");
    assert_eq!(
        browser
            .evaluate("localStorage.getItem('dpo.annotator-token')")
            .unwrap(),
        json!(token)
    );
}

/// The guidelines come before the first vote; then each served prompt is labelled, A better,
/// until none is left; `?` shows the guidelines again.
fn label_every_served_prompt(browser: &mut BrowserSession) {
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
        compare_served(browser);
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
}

/// Two pairs, by alice (from the token), one per served prompt, each a blind battle.
fn two_battles_by_alice_are_stored(db: &str) {
    let pairs = stored_pairs(db);
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
}

/// The lead's dashboard, behind the admin token, drawn as SVG from this origin alone.
fn the_lead_reads_the_dashboard(browser: &mut BrowserSession) {
    browser.click("mode-dashboard");
    browser.type_into("admin-token", "lead-secret-token");
    browser.click("open-dashboard");
    browser.wait_for_testid("dashboard-summary", BROWSER_TIMEOUT);
    // The versions' history: v2 made a candidate by hand before the campaign.
    let history = browser.text("version-history");
    assert!(
        history.contains("v2") && history.contains("candidate") && history.contains("by hand"),
        "{history}"
    );
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
}

#[test]
fn an_invited_annotator_follows_the_guidelines_labels_served_prompts_in_blind_battles_and_the_lead_reads_the_dashboard()
 {
    let dir = tempfile::tempdir().unwrap();
    let models = v2_trained_from_v1(dir.path());
    let (db, token, guidelines) = campaign_with_alice(dir.path());
    // v2 battles as a candidate: the app loads the default, v1.
    succeed(
        run_dpo(
            &["versions", "candidate", "v2", "--db", &db],
            &[("--models-dir", &models)],
        ),
        "dpo versions candidate",
    );
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

    let mut browser =
        BrowserSession::open(&server.url(&format!("{WEBGPU_APP}#invite={token}")), true);
    signed_in_by_the_invite_link(&mut browser, &token);
    // The default (v1) loads, not the newer candidate; battles bring in v2 beside it.
    load_model(&mut browser);
    assert!(browser.text("model-ready").contains("v1"));
    set_field(&mut browser, "max-new-tokens", "12");
    label_every_served_prompt(&mut browser);
    two_battles_by_alice_are_stored(&db);
    the_lead_reads_the_dashboard(&mut browser);

    // Without the admin token the dashboard stays shut.
    let refused = server.get("/api/admin/dashboard", &[]);
    assert_eq!(refused.status, 401);
}
