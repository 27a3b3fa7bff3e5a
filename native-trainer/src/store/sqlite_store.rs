//! The default pair store: one SQLite file in WAL mode with `synchronous = FULL` (a commit is on
//! disk before it is acknowledged), the schema brought up to date by `migrations` on open.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use shared::PreferencePair;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::migrations::{MIGRATIONS, VERSIONS_TABLE};
use super::pair_store::{InsertOutcome, PairStats, PairStore, stats_from_counts};

pub struct SqlitePairStore {
    connection: Mutex<Connection>,
}

impl SqlitePairStore {
    pub fn open(path: &Path) -> Result<Self> {
        let mut connection =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| connection.pragma_update(None, "synchronous", "FULL"))
            .and_then(|_| connection.busy_timeout(std::time::Duration::from_secs(10)))
            .with_context(|| format!("{}: setting WAL mode", path.display()))?;
        migrate(&mut connection).with_context(|| format!("{}: migrating", path.display()))?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }
}

fn migrate(connection: &mut Connection) -> Result<()> {
    connection.execute_batch(VERSIONS_TABLE)?;
    let applied: i64 = connection.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration.sqlite)?;
        transaction.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![
                migration.version,
                OffsetDateTime::now_utc().format(&Rfc3339)?
            ],
        )?;
        transaction.commit()?;
        tracing::info!("applied pair-store migration {}", migration.version);
    }
    Ok(())
}

impl PairStore for SqlitePairStore {
    fn insert_batch(&self, pairs: &[(PreferencePair, String)]) -> Result<Vec<InsertOutcome>> {
        let mut connection = self.connection.lock().expect("store lock");
        let transaction = connection.transaction()?;
        let received_at = OffsetDateTime::now_utc().format(&Rfc3339)?;
        let mut outcomes = Vec::with_capacity(pairs.len());
        {
            let mut find = transaction
                .prepare_cached("SELECT id, pair_json FROM pairs WHERE idempotency_key = ?1")?;
            let mut insert = transaction.prepare_cached(
                "INSERT INTO pairs (idempotency_key, annotator_id, model_a, model_b, vote, pair_json, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (pair, json) in pairs {
                let existing: Option<(i64, String)> = find
                    .query_row(params![pair.idempotency_key], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                let outcome = match existing {
                    Some((id, stored)) if stored == *json => InsertOutcome::Replayed(id),
                    Some((id, _)) => InsertOutcome::KeyReused(id),
                    None => {
                        insert.execute(params![
                            pair.idempotency_key,
                            pair.annotator_id,
                            pair.candidate_a.model.version,
                            pair.candidate_b.model.version,
                            pair.vote.as_str(),
                            json,
                            received_at,
                        ])?;
                        InsertOutcome::Created(transaction.last_insert_rowid())
                    }
                };
                outcomes.push(outcome);
            }
        }
        transaction.commit()?;
        Ok(outcomes)
    }

    fn stats(&self) -> Result<PairStats> {
        let connection = self.connection.lock().expect("store lock");
        let mut query = connection
            .prepare("SELECT model_a, model_b, vote, COUNT(*) FROM pairs GROUP BY 1, 2, 3")?;
        let counts = query
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)? as u64,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(stats_from_counts(counts))
    }

    fn all_pairs(&self) -> Result<Vec<PreferencePair>> {
        let connection = self.connection.lock().expect("store lock");
        let mut query = connection.prepare("SELECT id, pair_json FROM pairs ORDER BY id")?;
        let rows = query.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (id, json) = row?;
            serde_json::from_str(&json).with_context(|| format!("stored pair {id} is not a pair"))
        })
        .collect()
    }
}
