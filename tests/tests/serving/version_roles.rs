//! The versions' roles through `dpo versions` and `GET /api/models`, on SQLite and on one
//! PostgreSQL database shared by two servers: the newest version is the default until roles
//! are recorded; a candidate leaves the default where it was; a promotion moves it, on every
//! server at once; the default cannot be retired; an unknown version is refused with the
//! served ones named; `dpo versions list` shows roles, records and the history.

use std::path::Path;

use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::postgres_database::fresh_postgres_database;
use flywheel_tests::served_versions::export_tiny_version;
use flywheel_tests::{run_dpo, succeed};
use serde_json::{Value, json};

/// The roles every server reports: (default, candidates).
fn roles(servers: &[&DpoServer]) -> Value {
    let answers: Vec<Value> = servers
        .iter()
        .map(|server| {
            let response = server.get("/api/models", &[]);
            assert_eq!(response.status, 200);
            let list = response.json();
            json!([list["default_version"], list["candidates"]])
        })
        .collect();
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "servers on one store disagree: {answers:?}"
    );
    answers[0].clone()
}

fn versions(db: &str, models: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["versions"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--db", db]);
    run_dpo(&all, &[("--models-dir", models)])
}

fn roles_follow_the_recorded_changes(dir: &Path, db: &str, servers: usize) {
    let models = dir.join("models");
    export_tiny_version(&models, "v1", "q8_0", None);
    export_tiny_version(&models, "v2", "q4_0", Some("v1"));
    let running: Vec<DpoServer> = (0..servers)
        .map(|_| DpoServer::start(db, &models, &[]))
        .collect();
    let servers: Vec<&DpoServer> = running.iter().collect();
    assert_eq!(
        roles(&servers),
        json!(["v2", []]),
        "newest by default, as before"
    );

    succeed(
        versions(db, &models, &["candidate", "v2"]),
        "versions candidate",
    );
    assert_eq!(roles(&servers), json!(["v1", ["v2"]]));

    // v1 is the only version that can be the default now.
    for change in ["retire", "candidate"] {
        let refused = versions(db, &models, &[change, "v1"]);
        assert!(!refused.status.success());
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(
            message.contains("`v1` is the default and no other"),
            "{message}"
        );
    }

    let unknown = versions(db, &models, &["promote", "v9"]);
    assert!(!unknown.status.success());
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        message.contains("`v9` is not served") && message.contains("v1, v2"),
        "{message}"
    );

    succeed(
        run_dpo(
            &[
                "versions",
                "promote",
                "v2",
                "--reason",
                "won 30 of 40",
                "--db",
                db,
            ],
            &[("--models-dir", &models)],
        ),
        "versions promote",
    );
    assert_eq!(roles(&servers), json!(["v2", []]));

    let (listing, _) = succeed(versions(db, &models, &["list"]), "versions list");
    assert!(
        listing.contains("| v2 | v1 | default | - | - |"),
        "{listing}"
    );
    assert!(listing.contains("v2 candidate: by hand"), "{listing}");
    assert!(listing.contains("v2 promoted: won 30 of 40"), "{listing}");
    // The refused changes recorded nothing.
    assert!(
        !listing.contains(" v1 retired") && !listing.contains(" v1 candidate"),
        "{listing}"
    );
}

#[test]
fn roles_follow_the_recorded_changes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("pairs.db").display());
    roles_follow_the_recorded_changes(dir.path(), &db, 1);
}

#[test]
fn two_servers_on_one_postgresql_report_the_same_roles() {
    let dir = tempfile::tempdir().unwrap();
    roles_follow_the_recorded_changes(dir.path(), &fresh_postgres_database(), 2);
}
