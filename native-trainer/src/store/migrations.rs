//! The pair store's schema, as numbered migrations both databases apply in order, each once:
//! the same versions and the same tables, written in each database's SQL.

/// One schema change: its version and its SQL for each database.
pub struct Migration {
    pub version: i64,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    // Label campaigns: prompt sets with the labels each prompt wants, leases on handed-out
    // prompts, invited annotators (only a hash of their token), and the prompt a pair labels.
    Migration {
        version: 2,
        sqlite: "CREATE TABLE prompts (
            id TEXT PRIMARY KEY,
            conversation_key TEXT NOT NULL UNIQUE,
            conversation_json TEXT NOT NULL,
            labels_wanted INTEGER NOT NULL,
            labels INTEGER NOT NULL DEFAULT 0,
            imported_at TEXT NOT NULL
        );
        CREATE TABLE prompt_leases (
            prompt_id TEXT NOT NULL REFERENCES prompts (id),
            annotator_id TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL,
            PRIMARY KEY (prompt_id, annotator_id)
        );
        CREATE TABLE annotators (
            name TEXT PRIMARY KEY,
            token_sha256 TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        ALTER TABLE pairs ADD COLUMN prompt_id TEXT;
        CREATE UNIQUE INDEX pairs_prompt_annotator ON pairs (prompt_id, annotator_id)
            WHERE prompt_id IS NOT NULL;",
        postgres: "CREATE TABLE prompts (
            id TEXT PRIMARY KEY,
            conversation_key TEXT NOT NULL UNIQUE,
            conversation_json TEXT NOT NULL,
            labels_wanted BIGINT NOT NULL,
            labels BIGINT NOT NULL DEFAULT 0,
            imported_at TEXT NOT NULL
        );
        CREATE TABLE prompt_leases (
            prompt_id TEXT NOT NULL REFERENCES prompts (id),
            annotator_id TEXT NOT NULL,
            expires_at_ms BIGINT NOT NULL,
            PRIMARY KEY (prompt_id, annotator_id)
        );
        CREATE TABLE annotators (
            name TEXT PRIMARY KEY,
            token_sha256 TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        ALTER TABLE pairs ADD COLUMN prompt_id TEXT;
        CREATE UNIQUE INDEX pairs_prompt_annotator ON pairs (prompt_id, annotator_id)
            WHERE prompt_id IS NOT NULL;",
    },
    // The flywheel: one row per change of a version (round started or failed, candidate,
    // promoted, retired), and the lease one `dpo flywheel` holds while it works.
    Migration {
        version: 3,
        sqlite: "CREATE TABLE version_events (
            id INTEGER PRIMARY KEY,
            version TEXT NOT NULL,
            kind TEXT NOT NULL,
            parent_version TEXT,
            reason TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL
        );",
        postgres: "CREATE TABLE version_events (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            version TEXT NOT NULL,
            kind TEXT NOT NULL,
            parent_version TEXT,
            reason TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at_ms BIGINT NOT NULL
        );",
    },
];

/// The table both databases keep applied versions in.
pub const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)";
