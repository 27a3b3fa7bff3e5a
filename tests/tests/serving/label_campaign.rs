//! A label campaign as a team runs it, against a real SQLite file and a real PostgreSQL
//! server (there with two `dpo serve` processes, the annotators spread over both): a prompt set imported with `dpo prompts import --labels-per-prompt 2`, three
//! annotators invited with `dpo annotators add`, each asking `GET /api/prompts/next` and
//! voting until `204` on a `dpo serve --access invite` — exactly two labels per prompt, never
//! one annotator twice, the annotator taken from the token and not the body; the last open
//! slot of a prompt handed to one of several concurrent callers only (lease expiry itself is
//! `prompt_leases.rs`, on an injected clock), a late vote on a full prompt refused; requests without a token or with a
//! revoked one refused with nothing stored. Then the figures a lead reads, as the commands
//! print them: Bradley–Terry ratings and win rates (`dpo rounds`), Cohen's and Fleiss' kappa
//! and agreement with the majority (`dpo pairs quality`) — the values themselves are checked
//! by hand in `native-trainer/src/label_analytics/`'s unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::http_client::{HttpResponse, request};
use flywheel_tests::postgres_database::fresh_postgres_database;
use flywheel_tests::served_versions::export_tiny_version;
use flywheel_tests::{fixture, run_dpo, succeed};
use native_trainer::store::open_store;
use serde_json::{Value, json};
use shared::{Candidate, ChatMessage, ModelRef, PreferencePair, SamplingParams, Vote};

const PROMPTS: &str = r#"{"prompt": "Name a prime number.", "id": "prime"}
{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of Peru?"}]}

{"messages": [{"role": "user", "content": "Write a haiku about rain."}], "extra": "ignored"}
{"prompt": "  Name a   prime number. "}
"#;

fn invite(db: &str, name: &str) -> String {
    let (stdout, _) = succeed(
        run_dpo(
            &[
                "annotators",
                "add",
                name,
                "--db",
                db,
                "--server-url",
                "http://labels.example",
            ],
            &[],
        ),
        "dpo annotators add",
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let token = lines.last().unwrap().to_string();
    assert_eq!(
        token.len(),
        64,
        "the token alone is the last line: {stdout}"
    );
    assert!(
        lines[0].ends_with(&format!("http://labels.example/#invite={token}")),
        "{stdout}"
    );
    token
}

fn get_next(server: &DpoServer, token: Option<&str>) -> HttpResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    request(&server.address, "GET", "/api/prompts/next", &headers, b"").unwrap()
}

fn post(server: &DpoServer, token: Option<&str>, pair: &PreferencePair) -> HttpResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    request(
        &server.address,
        "POST",
        "/api/pairs",
        &headers,
        &serde_json::to_vec(pair).unwrap(),
    )
    .unwrap()
}

/// A vote on a served prompt (`served` is the `/api/prompts/next` answer).
fn label(served: &Value, model: &ModelRef, key: &str, claimed_annotator: &str) -> PreferencePair {
    let seeds = served["seeds"].as_array().unwrap();
    let candidate = |text: &str, seed: &Value| Candidate {
        text: text.into(),
        model: model.clone(),
        sampling: SamplingParams::default(),
        seed: seed.as_u64().unwrap(),
    };
    PreferencePair {
        schema_version: 2,
        idempotency_key: key.into(),
        annotator_id: claimed_annotator.into(),
        prompt_id: Some(served["id"].as_str().unwrap().into()),
        conversation: serde_json::from_value(served["conversation"].clone()).unwrap(),
        candidate_a: candidate("First answer.", &seeds[0]),
        candidate_b: candidate("Second answer.", &seeds[1]),
        vote: Vote::A,
        edited_answer: None,
        shown_at: time::macros::datetime!(2026-12-02 10:00 UTC),
        voted_at: time::macros::datetime!(2026-12-02 10:01 UTC),
    }
}

#[test]
fn a_campaign_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("pairs.db").display());
    three_invited_annotators_label_a_prompt_set_to_exactly_two_labels_each(dir.path(), &db, 1);
}

/// Two servers on one PostgreSQL database, the annotators spread over both: the same
/// guarantees as one server (no prompt over-filled, no vote lost or stored twice, one lease
/// holder for the last slot).
#[test]
fn a_campaign_on_postgresql_across_two_servers() {
    let dir = tempfile::tempdir().unwrap();
    three_invited_annotators_label_a_prompt_set_to_exactly_two_labels_each(
        dir.path(),
        &fresh_postgres_database(),
        2,
    );
}

/// The campaign's servers: invited annotators only, short prompt leases, no rate limit.
const INVITE_ONLY: [&str; 6] = [
    "--access",
    "invite",
    "--prompt-lease-secs",
    "2",
    "--annotator-rate",
    "0",
];

fn three_invited_annotators_label_a_prompt_set_to_exactly_two_labels_each(
    dir: &Path,
    db: &str,
    server_count: usize,
) {
    let models = dir.join("models");
    let model = export_tiny_version(&models, "v1", "q8_0", None);
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let imported = import_file(db, &prompts, 2);
    assert_eq!(
        imported,
        json!({ "added": 3, "duplicates": 1 }),
        "the spaced prime prompt is a duplicate"
    );
    assert_eq!(
        import_file(db, &prompts, 2),
        json!({ "added": 0, "duplicates": 4 })
    );

    let tokens: Vec<(String, String)> = ["alice", "bob", "carol"]
        .iter()
        .map(|name| (name.to_string(), invite(db, name)))
        .collect();
    let revoked = invite(db, "dave");
    succeed(
        run_dpo(&["annotators", "revoke", "dave", "--db", db], &[]),
        "revoke",
    );
    let taken = run_dpo(&["annotators", "add", "alice", "--db", db], &[]);
    assert!(!taken.status.success(), "a name is invited once");

    let server = DpoServer::start(db, &models, &INVITE_ONLY);
    let served = get_next(&server, Some(&tokens[0].1));
    assert_eq!(served.status, 200);
    let example = label(&served.json(), &model, "refused-0001", "alice");

    // Without a valid token nothing is handed out or stored.
    for (token, status) in [
        (None, 401),
        (Some("0".repeat(64)), 401),
        (Some(revoked.clone()), 403),
    ] {
        assert_eq!(get_next(&server, token.as_deref()).status, status);
        let refused = post(&server, token.as_deref(), &example);
        assert_eq!(
            refused.status,
            status,
            "{}",
            String::from_utf8_lossy(&refused.body)
        );
        assert_eq!(refused.json()["error"]["field"], "authorization");
    }
    assert_eq!(server.get("/api/stats", &[]).json()["total"], 0);

    // Each annotator asks and votes until nothing is left for them, all at once, each on
    // one of the servers.
    let server = Arc::new(server);
    let mut servers = vec![server.clone()];
    for _ in 1..server_count {
        servers.push(Arc::new(DpoServer::start(db, &models, &INVITE_ONLY)));
    }
    let workers: Vec<_> = tokens
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, (name, token))| {
            let server = servers[i % servers.len()].clone();
            let model = model.clone();
            std::thread::spawn(move || {
                let mut labelled = Vec::new();
                loop {
                    let next = get_next(&server, Some(&token));
                    if next.status == 204 {
                        return labelled;
                    }
                    assert_eq!(next.status, 200, "{}", String::from_utf8_lossy(&next.body));
                    let served = next.json();
                    let key = format!("campaign-{name}-{}", labelled.len());
                    // The body claims another annotator; the token decides.
                    let pair = label(&served, &model, &key, "mallory");
                    let stored = post(&server, Some(&token), &pair);
                    assert_eq!(
                        stored.status,
                        201,
                        "{}",
                        String::from_utf8_lossy(&stored.body)
                    );
                    assert_eq!(
                        post(&server, Some(&token), &pair).status,
                        200,
                        "a retry replays"
                    );
                    labelled.push(served["id"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    let mut per_annotator = BTreeMap::new();
    for (worker, (name, _)) in workers.into_iter().zip(&tokens) {
        per_annotator.insert(name.clone(), worker.join().unwrap());
    }
    let stored = open_store(db).unwrap().all_pairs().unwrap();
    assert_eq!(
        stored.len(),
        6,
        "three prompts × two labels: {per_annotator:?}"
    );
    let mut by_prompt: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for pair in &stored {
        assert!(
            by_prompt
                .entry(pair.prompt_id.clone().unwrap())
                .or_default()
                .insert(pair.annotator_id.clone()),
            "{} labelled a prompt twice",
            pair.annotator_id
        );
    }
    assert_eq!(by_prompt.len(), 3);
    for annotators in by_prompt.values() {
        assert_eq!(annotators.len(), 2);
        assert!(
            annotators
                .iter()
                .all(|a| ["alice", "bob", "carol"].contains(&a.as_str()))
        );
    }
    assert!(by_prompt.contains_key("prime"));

    // The last open slot goes to one of several concurrent callers.
    let race = dir.join("race.jsonl");
    std::fs::write(
        &race,
        "{\"prompt\": \"One slot only.\", \"id\": \"race\"}\n",
    )
    .unwrap();
    assert_eq!(import_file(db, &race, 1)["added"], 1);
    let answers: Vec<(String, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .flat_map(|t| [t.clone(), t.clone()])
            .enumerate()
            .map(|(i, (name, token))| {
                let server = servers[i % servers.len()].clone();
                scope.spawn(move || {
                    let answer = get_next(&server, Some(&token));
                    let body = if answer.status == 200 {
                        answer.json()
                    } else {
                        Value::Null
                    };
                    (name, answer.status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: BTreeSet<&str> = answers
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .map(|(name, _, _)| name.as_str())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "one annotator holds the lease: {answers:?}"
    );
    let (winner, served) = answers
        .iter()
        .find(|(_, status, _)| *status == 200)
        .map(|(name, _, body)| (name.clone(), body.clone()))
        .unwrap();
    let loser = tokens.iter().find(|(name, _)| *name != winner).unwrap();
    let winner_token = &tokens.iter().find(|(name, _)| *name == winner).unwrap().1;
    // The vote may reach another server than the one that handed the prompt out.
    assert_eq!(
        post(
            servers.last().unwrap(),
            Some(winner_token),
            &label(&served, &model, "race-winner", "x")
        )
        .status,
        201
    );
    // A vote on the full prompt without the lease is refused, not stored.
    let late = post(
        &server,
        Some(&loser.1),
        &label(&served, &model, "race-late-1", "x"),
    );
    assert_eq!(late.status, 409);
    assert_eq!(late.json()["error"]["field"], "prompt_id");
    // A vote whose conversation is not the prompt's is refused.
    let mut other = label(&served, &model, "race-other", "x");
    other.prompt_id = Some("prime".into());
    assert_eq!(post(&server, Some(&loser.1), &other).status, 409);
    // Without a prompt set entry (own prompt) the server refuses: it serves a prompt set.
    let mut own = label(&served, &model, "own-prompt-1", "x");
    own.prompt_id = None;
    assert_eq!(post(&server, Some(&loser.1), &own).status, 422);

    let stats = server.get("/api/stats", &[]).json();
    assert_eq!(stats["total"], 7);
    assert_eq!(
        stats["prompts"],
        json!({"prompts": 4, "complete": 4, "labels": 7, "labels_wanted": 7})
    );
    let campaign = request(
        &server.address,
        "GET",
        "/api/campaign",
        &[("Authorization", &format!("Bearer {}", tokens[2].1))],
        b"",
    )
    .unwrap()
    .json();
    assert_eq!(campaign["access"], "invite");
    assert_eq!(
        campaign["annotator"],
        json!({"name": "carol", "status": "valid"})
    );
    assert_eq!(campaign["own_prompts"], false);

    let (listing, _) = succeed(run_dpo(&["annotators", "list", "--db", db], &[]), "list");
    assert!(listing.contains("| dave | revoked "), "{listing}");
    let alice = listing
        .lines()
        .find(|l| l.starts_with("| alice |"))
        .unwrap();
    assert!(
        alice.contains("| active |") && alice.contains("2026-12-02T10:01:00Z"),
        "{listing}"
    );
}

/// `dpo prompts import --db DB FILE --labels-per-prompt N`'s summary line.
fn import_file(db: &str, file: &Path, labels: u32) -> Value {
    let output = flywheel_tests::dpo()
        .args([
            "prompts",
            "import",
            "--db",
            db,
            "--labels-per-prompt",
            &labels.to_string(),
        ])
        .arg(file)
        .output()
        .unwrap();
    let (stdout, _) = succeed(output, "dpo prompts import");
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn a_malformed_prompt_file_names_its_line_and_field_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("pairs.db").display());
    for (content, place) in [
        (
            "{\"prompt\": \"fine\"}\n{\"prompt\": 5}\n",
            ":2: field `prompt`",
        ),
        (
            "{\"prompt\": \"fine\"}\n\n{\"messages\": [{\"role\": \"assistant\", \"content\": \"hi\"}]}\n",
            ":3: field `messages`: must end with a user turn",
        ),
        (
            "{\"prompt\": [{\"role\": \"user\", \"content\": 7}]}\n",
            ":1: field `prompt[0]`",
        ),
        (
            "{\"prompt\": \"fine\", \"id\": \"no spaces allowed\"}\n",
            ":1: field `id`",
        ),
        ("not json\n", ":1: not valid JSON"),
    ] {
        let file = dir.path().join("prompts.jsonl");
        std::fs::write(&file, content).unwrap();
        let output = flywheel_tests::dpo()
            .args(["prompts", "import", "--db", &db])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains(&format!("{}{place}", file.display())),
            "expected `{place}` in: {stderr}"
        );
    }
    assert_eq!(
        open_store(&db).unwrap().prompt_progress().unwrap().prompts,
        0
    );

    // Parquet rows in TRL's shapes (here a conversational preference file's `prompt` column).
    let parquet = dir.path().join("prompts.parquet");
    let rows: Vec<shared::TrlRow> = ["Why is the sea salty?", "How far is the Moon?"]
        .iter()
        .map(|q| shared::TrlRow::Conversational {
            prompt: vec![ChatMessage::user(*q)],
            chosen: vec![ChatMessage::assistant("a")],
            rejected: vec![ChatMessage::assistant("b")],
        })
        .collect();
    native_trainer::serve::trl_row_file::write_rows(
        &parquet,
        &rows,
        native_trainer::serve::trl_row_file::RowFormat::Parquet,
    )
    .unwrap();
    assert_eq!(
        import_file(&db, &parquet, 3),
        json!({ "added": 2, "duplicates": 0 })
    );
    let progress = open_store(&db).unwrap().prompt_progress().unwrap();
    assert_eq!((progress.prompts, progress.labels_wanted), (2, 6));
}

/// `annotator`'s `vote` on `prompt` between answers `a` and `b` (text, version).
pub(super) fn vote(
    prompt: &str,
    a: (&str, &ModelRef),
    b: (&str, &ModelRef),
    annotator: &str,
    vote: Vote,
) -> PreferencePair {
    let candidate = |(text, model): (&str, &ModelRef), seed| Candidate {
        text: text.into(),
        model: model.clone(),
        sampling: SamplingParams::default(),
        seed,
    };
    PreferencePair {
        schema_version: 2,
        idempotency_key: format!("{annotator}-{prompt}-{}-{}", a.0, vote.as_str())
            .replace(' ', "_")
            .replace('?', ""),
        annotator_id: annotator.into(),
        prompt_id: None,
        conversation: vec![ChatMessage::user(prompt)],
        candidate_a: candidate(a, 1),
        candidate_b: candidate(b, 2),
        vote,
        edited_answer: None,
        shown_at: time::macros::datetime!(2026-12-02 10:00 UTC),
        voted_at: time::macros::datetime!(2026-12-02 10:01 UTC),
    }
}

fn model(version: &str) -> ModelRef {
    ModelRef {
        version: version.into(),
        sha256: "0".repeat(64),
    }
}

/// `dpo rounds` on a real store and models directory prints the ratings scipy computes for the
/// same record (`tests/fixtures/make_rating_fixtures.py`) and the win rate with its exact
/// interval.
#[test]
fn dpo_rounds_prints_ratings_and_win_rates_computed_by_hand() {
    let (v1, v2) = (model("v1"), model("v2"));
    // v2 (trained from v1) wins 3 battles, loses 1, ties 1, on both sides of the screen.
    let pairs = [
        vote("q1", ("x", &v2), ("y", &v1), "alice", Vote::A),
        vote("q2", ("x", &v1), ("y", &v2), "alice", Vote::B),
        vote("q3", ("x", &v1), ("y", &v2), "bob", Vote::B),
        vote("q4", ("x", &v1), ("y", &v2), "bob", Vote::A),
        vote("q5", ("x", &v2), ("y", &v1), "carol", Vote::Tie),
        // Not a battle: both answers from v1.
        vote("q6", ("x", &v1), ("y", &v1), "carol", Vote::A),
    ];
    let reference = fixture("version_ratings.json");
    let expected = &reference["ratings"]["three_wins_one_loss_one_tie"]["expected"]["v2"];
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let served_v1 = export_tiny_version(&models, "v1", "q8_0", None);
    let served_v2 = export_tiny_version(&models, "v2", "q4_0", Some("v1"));
    let db = format!("sqlite:{}", dir.path().join("pairs.db").display());
    let store = open_store(&db).unwrap();
    let served: Vec<(PreferencePair, String)> = pairs
        .iter()
        .map(|pair| {
            let mut pair = pair.clone();
            for candidate in [&mut pair.candidate_a, &mut pair.candidate_b] {
                candidate.model = if candidate.model.version == "v1" {
                    served_v1.clone()
                } else {
                    served_v2.clone()
                };
            }
            let json = serde_json::to_string(&pair).unwrap();
            (pair, json)
        })
        .collect();
    store.insert_batch(&served).unwrap();
    let (stdout, _) = succeed(
        run_dpo(
            &["rounds", "--json", "--db", &db],
            &[("--models-dir", &models)],
        ),
        "dpo rounds --json",
    );
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[1]["version"], "v2");
    for key in ["rating", "low", "high"] {
        let column = if key == "rating" {
            "rating".to_string()
        } else {
            format!("rating_{key}")
        };
        let (got, want) = (
            rows[1][&column].as_f64().unwrap(),
            expected[key].as_f64().unwrap(),
        );
        assert!((got - want).abs() < 0.05, "{column}: {got} vs {want}");
    }
    assert_eq!(rows[1]["win_rate_vs_parent"], 0.7);
    assert_eq!(rows[1]["battles_vs_parent"], 5);
    // Five battles decide nothing under the promotion rule.
    assert_eq!(rows[1]["verdict"], "keep_battling");
    assert_eq!(
        rows[0]["win_rate_vs_parent"],
        Value::Null,
        "v1 has no parent"
    );
    let (table, _) = succeed(
        run_dpo(&["rounds", "--db", &db], &[("--models-dir", &models)]),
        "dpo rounds",
    );
    // Clopper–Pearson for 3.5 of 5 (scipy): [0.209, 0.977].
    assert!(
        table.contains("| 0.700 [0.209, 0.977] (5 battles) |"),
        "{table}"
    );
}

/// `dpo pairs quality` prints the kappas and majority agreement the unit tests of
/// `label_analytics::annotator_agreement` check by hand.
#[test]
fn dpo_pairs_quality_prints_kappas_computed_by_hand() {
    let v1 = model("v1");
    let (alpha, beta) = (("Alpha", &v1), ("Beta", &v1));
    // Categories: first text (Alpha) better, second (Beta) better, tie — sides vary.
    let pairs = vec![
        vote("c1", alpha, beta, "r1", Vote::A), // first
        vote("c1", beta, alpha, "r2", Vote::B), // first
        vote("c2", alpha, beta, "r1", Vote::A), // first
        vote("c2", alpha, beta, "r2", Vote::B), // second
        vote("c2", beta, alpha, "r3", Vote::A), // second
        vote("c3", alpha, beta, "r1", Vote::Tie),
        vote("c3", beta, alpha, "r2", Vote::Tie),
        vote("c4", beta, alpha, "r1", Vote::A), // second
        vote("c4", alpha, beta, "r2", Vote::B), // second
        vote("c5", alpha, beta, "r3", Vote::A), // labelled once: not compared
    ];
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("pairs.db").display());
    let rows: Vec<(PreferencePair, String)> = pairs
        .iter()
        .map(|p| (p.clone(), serde_json::to_string(p).unwrap()))
        .collect();
    open_store(&db).unwrap().insert_batch(&rows).unwrap();
    let (quality, _) = succeed(run_dpo(&["pairs", "quality", "--db", &db], &[]), "quality");
    assert!(
        quality.contains(&format!("with several labels: {:.3}", 231.0 / 312.0)),
        "{quality}"
    );
    assert!(
        quality.contains(&format!("| r1 · r2 | 4 | {:.3} |", 7.0 / 11.0)),
        "{quality}"
    );
    assert!(quality.contains("| r1 | 4 | 0.750 |"), "{quality}");
}
