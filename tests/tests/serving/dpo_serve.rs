//! `dpo serve` over real HTTP with a real SQLite file and a real PostgreSQL server (started on
//! loopback by `cargo xtask test`): the pair API's contract (201 once
//! durably stored, retries answered with the stored id, reused keys refused, every error naming
//! its field, security headers everywhere), model versions and their files (ETag, Range),
//! stats and the TRL export (HTTP and `dpo pairs export`); 1,000+ malformed requests that store
//! nothing and never get a 5xx; and 10,000 pairs from 64 concurrent clients, acknowledged while
//! the server is SIGKILLed and restarted three times, each stored exactly once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flywheel_tests::dpo_server::DpoServer as Server;
use flywheel_tests::http_client::{HttpResponse, request};
use flywheel_tests::postgres_database::fresh_postgres_database;
use flywheel_tests::served_versions::export_tiny_version;
use flywheel_tests::{run_dpo, sha256_hex, succeed};
use native_trainer::train::preference_file::read_preference_file;
use serde_json::{Value, json};
use shared::{Candidate, ChatMessage, ModelRef, PreferencePair, SamplingParams, Vote};

const ADMIN_TOKEN: &str = "test-admin-token-1234";

/// `dpo serve` with the admin token the export tests use.
fn start_server(db: &str, models: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--admin-token", ADMIN_TOKEN];
    args.extend_from_slice(extra);
    Server::start(db, models, &args)
}

/// A models directory with one exported version of the tiny model.
fn models_dir(dir: &Path) -> (PathBuf, ModelRef) {
    let models = dir.join("models");
    let model = export_tiny_version(&models, "v1", "q8_0", None);
    (models, model)
}

fn pair(key: &str, model: &ModelRef, vote: Vote) -> PreferencePair {
    let candidate = |text: &str, seed| Candidate {
        text: text.into(),
        model: model.clone(),
        sampling: SamplingParams::default(),
        seed,
    };
    PreferencePair {
        schema_version: 1,
        idempotency_key: key.into(),
        annotator_id: "annotator-1".into(),
        prompt_id: None,
        conversation: vec![ChatMessage::user("Which colour is the sky?")],
        candidate_a: candidate("Blue.", 1),
        candidate_b: candidate("Green.", 2),
        vote,
        edited_answer: None,
        shown_at: time::macros::datetime!(2026-11-26 12:00 UTC),
        voted_at: time::macros::datetime!(2026-11-26 12:01 UTC),
    }
}

fn body(pair: &PreferencePair) -> Vec<u8> {
    serde_json::to_vec(pair).unwrap()
}

fn error_field(response: &HttpResponse) -> String {
    response.json()["error"]["field"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sqlite_database(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("pairs.db").display())
}

#[test]
fn the_pair_api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    the_pair_api_stores_once_names_bad_fields_and_serves_models_stats_and_exports(
        dir.path(),
        &sqlite_database(dir.path()),
    );
}

#[test]
fn the_pair_api_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    the_pair_api_stores_once_names_bad_fields_and_serves_models_stats_and_exports(
        dir.path(),
        &fresh_postgres_database(),
    );
}

fn the_pair_api_stores_once_names_bad_fields_and_serves_models_stats_and_exports(
    dir: &Path,
    db: &str,
) {
    let (models, model) = models_dir(dir);
    let web = dir.join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>labels</title>",
    )
    .unwrap();
    let script = "console.log('label');\n".repeat(200);
    std::fs::write(web.join("app.js"), &script).unwrap();
    let web_arg = web.display().to_string();
    let server = start_server(
        db,
        &models,
        &["--max-body-bytes", "65536", "--web-dir", &web_arg],
    );

    // The web app: its files, gzip when accepted, nothing outside its directory.
    let page = server.get("/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(page.body, b"<!doctype html><title>labels</title>");
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("'wasm-unsafe-eval'")
    );
    let zipped = server.get("/app.js", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert!(
        zipped.body.len() < script.len() / 10,
        "{} bytes gzipped",
        zipped.body.len()
    );
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(zipped.body.as_slice()),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, script);
    let plain = server.get("/app.js", &[]);
    assert_eq!(
        (plain.header("content-encoding"), plain.body.as_slice()),
        (None, script.as_bytes())
    );
    assert_eq!(server.get("/../pairs.db", &[]).status, 404);
    assert_eq!(server.get("/missing.js", &[]).status, 404);

    let listed = server.get("/api/models", &[]);
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["versions"][0]["version"], "v1");

    let first = pair("key-0000-0001", &model, Vote::A);
    let created = server.post_pair(&body(&first));
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let id = created.json()["id"].clone();
    for header in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
    ] {
        assert!(created.header(header).is_some(), "no {header}");
    }
    assert!(
        created
            .header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );

    // A retry (even re-serialized differently) is answered with the stored id.
    let pretty = serde_json::to_vec_pretty(&first).unwrap();
    let retried = server.post_pair(&pretty);
    assert_eq!(retried.status, 200);
    assert_eq!(retried.json()["id"], id);
    assert_eq!(retried.json()["replayed"], true);
    let reused = server.post_pair(&body(&pair("key-0000-0001", &model, Vote::B)));
    assert_eq!(reused.status, 409);
    assert_eq!(error_field(&reused), "idempotency_key");

    let mut unknown = pair("key-0000-0002", &model, Vote::A);
    unknown.candidate_a.model.version = "v9".into();
    let refused = server.post_pair(&body(&unknown));
    assert_eq!(
        (refused.status, error_field(&refused).as_str()),
        (422, "candidate_a.model.version")
    );
    let mut wrong_sha = pair("key-0000-0003", &model, Vote::A);
    wrong_sha.candidate_b.model.sha256 = "0".repeat(64);
    let refused = server.post_pair(&body(&wrong_sha));
    assert_eq!(
        (refused.status, error_field(&refused).as_str()),
        (422, "candidate_b.model.sha256")
    );
    let mut empty = pair("key-0000-0004", &model, Vote::A);
    empty.conversation.clear();
    let refused = server.post_pair(&body(&empty));
    assert_eq!(
        (refused.status, error_field(&refused).as_str()),
        (422, "conversation")
    );
    let oversize = server.post_pair(&vec![b' '; 70_000]);
    assert_eq!(oversize.status, 413);
    assert!(
        oversize.json()["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("65536")
    );
    let not_utf8 = server.post_pair(b"{\"schema_version\": \xff}");
    assert_eq!(not_utf8.status, 400);
    assert!(
        not_utf8.json()["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );

    let stats = server.get("/api/stats", &[]).json();
    assert_eq!(stats["total"], 1);
    assert_eq!(stats["by_vote"]["a"], 1);
    assert_eq!(stats["by_model_version"]["v1"]["a"], 1);

    // The TRL export: admin only, and the same rows as `dpo pairs export`.
    assert_eq!(server.get("/api/export", &[]).status, 401);
    let wrong = server.get("/api/export", &[("Authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let exported = server.get(
        "/api/export?style=conversational",
        &[("Authorization", &bearer)],
    );
    assert_eq!(exported.status, 200);
    let rows: Vec<Value> = String::from_utf8(exported.body.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        vec![json!({
            "prompt": [{"role": "user", "content": "Which colour is the sky?"}],
            "chosen": [{"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "assistant", "content": "Green."}],
        })]
    );
    let standard = server.get("/api/export?style=standard", &[("Authorization", &bearer)]);
    assert_eq!(standard.status, 200);
    let out = dir.join("rows.jsonl");
    succeed(
        run_dpo(
            &["pairs", "export", "--style", "conversational", "--db", db],
            &[("--out", &out)],
        ),
        "dpo pairs export",
    );
    assert_eq!(std::fs::read(&out).unwrap(), exported.body);
    // Parquet holds the same rows as JSON Lines, in either style, as `dpo train` reads them.
    let gguf_path = models.join("v1/model.gguf");
    for style in ["conversational", "standard"] {
        let mut files = Vec::new();
        for format in ["jsonl", "parquet"] {
            let file = dir.join(format!("{style}.{format}"));
            succeed(
                run_dpo(
                    &[
                        "pairs", "export", "--db", db, "--style", style, "--format", format,
                    ],
                    &[("--model", &gguf_path), ("--out", &file)],
                ),
                "dpo pairs export",
            );
            files.push(read_preference_file(&file, false).unwrap().rows);
        }
        assert_eq!(files[0].len(), 1, "{style}");
        assert_eq!(
            files[0], files[1],
            "{style}: Parquet rows differ from JSON Lines"
        );
    }

    // Model files: only what a manifest lists, with ETag = sha256 and byte ranges.
    let gguf = std::fs::read(models.join("v1/model.gguf")).unwrap();
    let whole = server.get("/models/v1/model.gguf", &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(sha256_hex(&whole.body), model.sha256);
    assert_eq!(
        whole.header("etag").unwrap(),
        format!("\"{}\"", model.sha256)
    );
    assert!(whole.header("cache-control").unwrap().contains("immutable"));
    let part = server.get("/models/v1/model.gguf", &[("Range", "bytes=100-199")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, gguf[100..200]);
    assert_eq!(
        part.header("content-range").unwrap(),
        format!("bytes 100-199/{}", gguf.len())
    );
    let tail = server.get("/models/v1/model.gguf", &[("Range", "bytes=-16")]);
    assert_eq!(tail.body, gguf[gguf.len() - 16..]);
    let beyond = format!("bytes={}-", gguf.len());
    assert_eq!(
        server
            .get("/models/v1/model.gguf", &[("Range", &beyond)])
            .status,
        416
    );
    let etag = format!("\"{}\"", model.sha256);
    assert_eq!(
        server
            .get("/models/v1/model.gguf", &[("If-None-Match", &etag)])
            .status,
        304
    );
    assert_eq!(server.get("/models/v1/pairs.db", &[]).status, 404);
    assert_eq!(server.get("/models/v1/..%2f..%2fpairs.db", &[]).status, 404);
    assert_eq!(server.get("/models/v2/model.gguf", &[]).status, 404);

    // A version exported while the server runs is served without a restart.
    let copy = models.join("v2");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(models.join("v1/model.gguf"), copy.join("model.gguf")).unwrap();
    let manifest = std::fs::read_to_string(models.join("v1/manifest.json"))
        .unwrap()
        .replace("\"version\": \"v1\"", "\"version\": \"v2\"");
    std::fs::write(copy.join("manifest.json"), manifest).unwrap();
    let versions: Vec<String> = server.get("/api/models", &[]).json()["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_string())
        .collect();
    assert!(versions.contains(&"v2".to_string()), "{versions:?}");
    assert_eq!(server.get("/models/v2/model.gguf", &[]).status, 200);
}

/// Invalid documents of every kind, built from a valid one.
fn malformed_bodies(valid: &PreferencePair) -> Vec<Vec<u8>> {
    let text = serde_json::to_string(valid).unwrap();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    // Every strict prefix of the document is invalid JSON.
    let step = (text.len() / 600).max(1);
    for end in (0..text.len()).step_by(step) {
        bodies.push(text.as_bytes()[..end].to_vec());
    }
    // A byte that is never valid UTF-8, at many places.
    for at in (0..text.len()).step_by((text.len() / 400).max(1)) {
        let mut bytes = text.clone().into_bytes();
        bytes[at] = 0xFF;
        bodies.push(bytes);
    }
    // Every field with values of the wrong type, removed, or unknown fields added.
    let document: Value = serde_json::to_value(valid).unwrap();
    let mut paths = Vec::new();
    collect_paths(&document, String::new(), &mut paths);
    let wrong_values = [
        json!(null),
        json!(12.5),
        json!(-1),
        json!([1]),
        json!({"x": 1}),
        json!(true),
    ];
    for path in &paths {
        let current = pointer(&document, path).clone();
        for wrong in &wrong_values {
            let same_kind = std::mem::discriminant(&current) == std::mem::discriminant(wrong);
            // Numbers stay numbers only where they are still wrong (negative or fractional seeds).
            if same_kind && !current.is_number() {
                continue;
            }
            if current.is_number() && wrong.is_number() && current.is_f64() {
                continue;
            }
            let mut changed = document.clone();
            *pointer_mut(&mut changed, path) = wrong.clone();
            bodies.push(serde_json::to_vec(&changed).unwrap());
        }
        if let Some((parent, key)) = path.rsplit_once('/')
            && !key.chars().all(|c| c.is_ascii_digit())
            && key != "edited_answer"
        {
            let mut removed = document.clone();
            pointer_mut(&mut removed, parent)
                .as_object_mut()
                .map(|o| o.remove(key));
            bodies.push(serde_json::to_vec(&removed).unwrap());
            let mut extra = document.clone();
            if let Some(object) = pointer_mut(&mut extra, parent).as_object_mut() {
                object.insert("unexpected_field".into(), json!(1));
            }
            bodies.push(serde_json::to_vec(&extra).unwrap());
        }
    }
    for vote in ["c", "A", "", "maybe", "both-bad"] {
        let mut changed = document.clone();
        changed["vote"] = json!(vote);
        bodies.push(serde_json::to_vec(&changed).unwrap());
    }
    for role in ["robot", "USER", ""] {
        let mut changed = document.clone();
        changed["conversation"][0]["role"] = json!(role);
        bodies.push(serde_json::to_vec(&changed).unwrap());
    }
    let mut long = document.clone();
    long["candidate_a"]["text"] = json!("x".repeat(40_000));
    bodies.push(serde_json::to_vec(&long).unwrap());
    bodies.push(vec![b'{'; 5000]);
    bodies.push(b"[]".to_vec());
    bodies.push(b"null".to_vec());
    bodies
}

fn collect_paths(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                let child_path = format!("{path}/{key}");
                out.push(child_path.clone());
                collect_paths(child, child_path, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let child_path = format!("{path}/{i}");
                out.push(child_path.clone());
                collect_paths(child, child_path, out);
            }
        }
        _ => {}
    }
}

fn pointer<'a>(value: &'a Value, path: &str) -> &'a Value {
    value.pointer(path).unwrap_or_else(|| panic!("no {path}"))
}

fn pointer_mut<'a>(value: &'a mut Value, path: &str) -> &'a mut Value {
    if path.is_empty() {
        return value;
    }
    value
        .pointer_mut(path)
        .unwrap_or_else(|| panic!("no {path}"))
}

#[test]
fn a_thousand_malformed_requests_store_nothing_and_never_get_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let (models, model) = models_dir(dir.path());
    let server = start_server(
        &sqlite_database(dir.path()),
        &models,
        &[
            "--ip-rate",
            "0",
            "--annotator-rate",
            "0",
            "--max-body-bytes",
            "65536",
        ],
    );
    let bodies = malformed_bodies(&pair("key-malformed-1", &model, Vote::A));
    assert!(
        bodies.len() >= 1000,
        "only {} malformed bodies",
        bodies.len()
    );
    for (i, body) in bodies.iter().enumerate() {
        let response = server.post_pair(body);
        assert!(
            (400..500).contains(&response.status),
            "body {i} got {}: {}\n{}",
            response.status,
            String::from_utf8_lossy(&response.body),
            String::from_utf8_lossy(body)
        );
        let error = response.json();
        assert!(error["error"]["field"].is_string() && error["error"]["reason"].is_string());
    }
    assert_eq!(
        server.get("/api/stats", &[]).json()["total"],
        0,
        "a malformed pair was stored"
    );
}

#[test]
fn pairs_acknowledged_across_three_sigkills_are_stored_exactly_once_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    pairs_acknowledged_across_three_sigkills_are_stored_exactly_once(
        dir.path(),
        &sqlite_database(dir.path()),
    );
}

#[test]
fn pairs_acknowledged_across_three_sigkills_are_stored_exactly_once_in_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    pairs_acknowledged_across_three_sigkills_are_stored_exactly_once(
        dir.path(),
        &fresh_postgres_database(),
    );
}

fn pairs_acknowledged_across_three_sigkills_are_stored_exactly_once(dir: &Path, db: &str) {
    let (models, model) = models_dir(dir);
    const PAIRS: usize = 10_000;
    const CLIENTS: usize = 64;
    let server = Arc::new(Mutex::new(start_server(
        db,
        &models,
        &["--ip-rate", "0", "--annotator-rate", "0"],
    )));
    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (server, next, acknowledged, model) = (
                server.clone(),
                next.clone(),
                acknowledged.clone(),
                model.clone(),
            );
            std::thread::spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= PAIRS {
                        return;
                    }
                    let key = format!("load-key-{index:06}");
                    let mut document =
                        pair(&key, &model, if index % 2 == 0 { Vote::A } else { Vote::B });
                    document.annotator_id = format!("annotator-{}", index % 50);
                    let bytes = body(&document);
                    // Retry with the same key until the server acknowledges it.
                    loop {
                        let address = server.lock().unwrap().address.clone();
                        match request(&address, "POST", "/api/pairs", &[], &bytes) {
                            Ok(r) if r.status == 201 || r.status == 200 => {
                                acknowledged.lock().unwrap().insert(key.clone());
                                break;
                            }
                            Ok(r) => assert!(
                                r.status >= 500,
                                "refused: {} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ),
                            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                        }
                    }
                }
            })
        })
        .collect();
    let mut acknowledged_at_kills = Vec::new();
    for kill in 1..=3 {
        while acknowledged.lock().unwrap().len() < kill * PAIRS / 4 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut guard = server.lock().unwrap();
        acknowledged_at_kills.push(acknowledged.lock().unwrap().len());
        guard.child.kill().unwrap(); // SIGKILL
        guard.child.wait().unwrap();
        *guard = start_server(db, &models, &["--ip-rate", "0", "--annotator-rate", "0"]);
    }
    for client in clients {
        client.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), PAIRS);
    assert!(
        acknowledged_at_kills.iter().all(|&n| n < PAIRS),
        "a kill came after the last pair ({acknowledged_at_kills:?}): nothing was interrupted"
    );
    drop(server);

    let out = dir.join("all.jsonl");
    let (stdout, _) = succeed(
        run_dpo(&["pairs", "export", "--db", db], &[("--out", &out)]),
        "dpo pairs export",
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["pairs"], PAIRS, "stored pairs ≠ acknowledged pairs");
    // Stored exactly once: the keys in the database are the acknowledged ones, no duplicates.
    let connection_keys = stored_keys(db);
    assert_eq!(
        connection_keys.len(),
        PAIRS,
        "a key is stored twice or missing"
    );
    assert_eq!(
        connection_keys.into_iter().collect::<HashSet<_>>(),
        acknowledged
    );
}

/// The idempotency keys in the database, as stored (duplicates kept).
fn stored_keys(db: &str) -> Vec<String> {
    native_trainer::store::open_store(db)
        .unwrap()
        .all_pairs()
        .unwrap()
        .into_iter()
        .map(|p| p.idempotency_key)
        .collect()
}

#[test]
fn cors_is_off_unless_an_origin_is_configured_and_sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (models, model) = models_dir(dir.path());
    let db = sqlite_database(dir.path());
    let preflight = |server: &Server, origin: &str| {
        request(
            &server.address,
            "OPTIONS",
            "/api/pairs",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
            ],
            b"",
        )
        .unwrap()
    };

    let closed = start_server(&db, &models, &[]);
    assert_eq!(preflight(&closed, "https://labels.example").status, 403);
    let listed = closed.get("/api/models", &[("Origin", "https://labels.example")]);
    assert_eq!(listed.status, 200);
    assert_eq!(listed.header("access-control-allow-origin"), None);
    drop(closed);

    let mut open = start_server(&db, &models, &["--cors-origin", "https://labels.example"]);
    let allowed = preflight(&open, "https://labels.example");
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://labels.example")
    );
    assert!(
        allowed
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(preflight(&open, "https://other.example").status, 403);
    let created = request(
        &open.address,
        "POST",
        "/api/pairs",
        &[("Origin", "https://labels.example")],
        &body(&pair("key-cors-0001", &model, Vote::B)),
    )
    .unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(
        created.header("access-control-allow-origin"),
        Some("https://labels.example")
    );
    let other = open.get("/api/stats", &[("Origin", "https://other.example")]);
    assert_eq!(other.header("access-control-allow-origin"), None);

    // SIGTERM: the server finishes and exits cleanly; what it acknowledged is kept.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &open.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = open.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    let again = start_server(&db, &models, &[]);
    assert_eq!(again.get("/api/stats", &[]).json()["total"], 1);
}
