//! Prompt leases on an injected clock — the times `PairStore::next_prompt` is given — on a
//! real SQLite file and a real PostgreSQL server, without sleeping: a leased last slot goes to
//! no one else until the lease ends, exactly at its end it is free, and the holder asking again
//! renews it.

use flywheel_tests::postgres_database::fresh_postgres_database;
use native_trainer::store::open_store;
use native_trainer::store::prompt_set::NewPrompt;
use shared::ChatMessage;

/// A lease of two seconds, from an arbitrary start.
const LEASE_MS: i64 = 2_000;
const T0: i64 = 1_764_000_000_000;

fn leases_end_at_their_time(db: &str) {
    let store = open_store(db).unwrap();
    store
        .add_prompts(&[NewPrompt {
            id: "expiry".into(),
            conversation: vec![ChatMessage::user("Leased, then let go.")],
            labels_wanted: 1,
        }])
        .unwrap();
    let next = |annotator: &str, now_ms: i64| {
        store
            .next_prompt(annotator, now_ms, LEASE_MS)
            .unwrap()
            .map(|p| p.id)
    };
    assert_eq!(next("alice", T0).as_deref(), Some("expiry"));
    assert_eq!(next("bob", T0 + 1), None, "alice holds the only slot");
    assert_eq!(
        next("bob", T0 + LEASE_MS - 1),
        None,
        "a millisecond before the end"
    );
    assert_eq!(
        next("bob", T0 + LEASE_MS).as_deref(),
        Some("expiry"),
        "at its end"
    );
    assert_eq!(next("alice", T0 + LEASE_MS + 1), None, "now bob holds it");
    // The holder asking again keeps it, until the renewed lease ends.
    assert_eq!(next("bob", T0 + 3_000).as_deref(), Some("expiry"));
    assert_eq!(next("alice", T0 + 3_000 + LEASE_MS - 1), None);
    assert_eq!(
        next("alice", T0 + 3_000 + LEASE_MS).as_deref(),
        Some("expiry")
    );
}

#[test]
fn leases_end_at_their_time_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    leases_end_at_their_time(&format!("sqlite:{}", dir.path().join("p.db").display()));
}

#[test]
fn leases_end_at_their_time_on_postgresql() {
    leases_end_at_their_time(&fresh_postgres_database());
}
