//! The pair store's schema, as numbered migrations both databases apply in order, each once:
//! the same versions and the same tables, written in each database's SQL.

/// One schema change: its version and its SQL for each database.
pub struct Migration {
    pub version: i64,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sqlite: "CREATE TABLE pairs (
            id INTEGER PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            annotator_id TEXT NOT NULL,
            model_a TEXT NOT NULL,
            model_b TEXT NOT NULL,
            vote TEXT NOT NULL,
            pair_json TEXT NOT NULL,
            received_at TEXT NOT NULL
        );
        CREATE INDEX pairs_annotator ON pairs (annotator_id);",
    postgres: "CREATE TABLE pairs (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            annotator_id TEXT NOT NULL,
            model_a TEXT NOT NULL,
            model_b TEXT NOT NULL,
            vote TEXT NOT NULL,
            pair_json TEXT NOT NULL,
            received_at TEXT NOT NULL
        );
        CREATE INDEX pairs_annotator ON pairs (annotator_id);",
}];

/// The table both databases keep applied versions in.
pub const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)";
