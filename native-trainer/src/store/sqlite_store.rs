//! The default pair store: one SQLite file in WAL mode with `synchronous = FULL` (a commit is on
//! disk before it is acknowledged), the schema brought up to date by `migrations` on open.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use shared::PreferencePair;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::annotator_records::{AnnotatorRecord, TokenCheck};
use super::migrations::{MIGRATIONS, VERSIONS_TABLE};
use super::pair_store::{InsertOutcome, PairStore, PromptRefusal, stats_from_counts};
use shared::api::{PairStats, PromptProgress};

use super::prompt_set::{NewPrompt, PromptImport, ServedPrompt, conversation_key};
use super::version_events::{NewVersionChange, event};
use shared::api::VersionChange;

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

/// Whether the prompt a pair names lets it be stored (checked inside the pair's transaction).
fn prompt_refusal(
    transaction: &rusqlite::Transaction,
    pair: &PreferencePair,
    prompt_id: &str,
) -> Result<Option<PromptRefusal>> {
    let prompt: Option<(String, i64, i64)> = transaction
        .prepare_cached(
            "SELECT conversation_json, labels, labels_wanted FROM prompts WHERE id = ?1",
        )?
        .query_row(params![prompt_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((conversation, labels, wanted)) = prompt else {
        return Ok(Some(PromptRefusal::UnknownPrompt));
    };
    if conversation != serde_json::to_string(&pair.conversation)? {
        return Ok(Some(PromptRefusal::OtherConversation));
    }
    let labelled: bool = transaction
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM pairs WHERE prompt_id = ?1 AND annotator_id = ?2)",
        )?
        .query_row(params![prompt_id, pair.annotator_id], |row| row.get(0))?;
    Ok(if labelled {
        Some(PromptRefusal::AlreadyLabelled)
    } else if labels >= wanted {
        Some(PromptRefusal::Complete)
    } else {
        None
    })
}

impl PairStore for SqlitePairStore {
    fn insert_batch(&self, pairs: &[(PreferencePair, String)]) -> Result<Vec<InsertOutcome>> {
        let mut connection = self.connection.lock().expect("store lock");
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let received_at = OffsetDateTime::now_utc().format(&Rfc3339)?;
        let mut outcomes = Vec::with_capacity(pairs.len());
        {
            let mut find = transaction
                .prepare_cached("SELECT id, pair_json FROM pairs WHERE idempotency_key = ?1")?;
            let mut insert = transaction.prepare_cached(
                "INSERT INTO pairs (idempotency_key, annotator_id, model_a, model_b, vote, pair_json, received_at, prompt_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (pair, json) in pairs {
                let existing: Option<(i64, String)> = find
                    .query_row(params![pair.idempotency_key], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                let refusal = match (&existing, &pair.prompt_id) {
                    (None, Some(prompt_id)) => prompt_refusal(&transaction, pair, prompt_id)?,
                    _ => None,
                };
                let outcome = match (existing, refusal) {
                    (Some((id, stored)), _) if stored == *json => InsertOutcome::Replayed(id),
                    (Some((id, _)), _) => InsertOutcome::KeyReused(id),
                    (None, Some(refusal)) => InsertOutcome::Refused(refusal),
                    (None, None) => {
                        insert.execute(params![
                            pair.idempotency_key,
                            pair.annotator_id,
                            pair.candidate_a.model.version,
                            pair.candidate_b.model.version,
                            pair.vote.as_str(),
                            json,
                            received_at,
                            pair.prompt_id,
                        ])?;
                        let id = transaction.last_insert_rowid();
                        if let Some(prompt_id) = &pair.prompt_id {
                            transaction.execute(
                                "UPDATE prompts SET labels = labels + 1 WHERE id = ?1",
                                params![prompt_id],
                            )?;
                            transaction.execute(
                                "DELETE FROM prompt_leases WHERE prompt_id = ?1 AND annotator_id = ?2",
                                params![prompt_id, pair.annotator_id],
                            )?;
                        }
                        InsertOutcome::Created(id)
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

    fn add_prompts(&self, prompts: &[NewPrompt]) -> Result<PromptImport> {
        let mut connection = self.connection.lock().expect("store lock");
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let imported_at = OffsetDateTime::now_utc().format(&Rfc3339)?;
        let mut import = PromptImport::default();
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO prompts (id, conversation_key, conversation_json, labels_wanted, imported_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            )?;
            for prompt in prompts {
                let inserted = insert.execute(params![
                    prompt.id,
                    conversation_key(&prompt.conversation),
                    serde_json::to_string(&prompt.conversation)?,
                    prompt.labels_wanted,
                    imported_at,
                ])?;
                if inserted == 1 {
                    import.added += 1;
                } else {
                    import.duplicates += 1;
                }
            }
        }
        transaction.commit()?;
        Ok(import)
    }

    fn next_prompt(
        &self,
        annotator: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ServedPrompt>> {
        let mut connection = self.connection.lock().expect("store lock");
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute(
            "DELETE FROM prompt_leases WHERE expires_at_ms <= ?1",
            params![now_ms],
        )?;
        let chosen: Option<(String, String)> = transaction
            .query_row(
                "SELECT p.id, p.conversation_json FROM prompts p
                 WHERE NOT EXISTS (SELECT 1 FROM pairs q WHERE q.prompt_id = p.id AND q.annotator_id = ?1)
                   AND p.labels + (SELECT COUNT(*) FROM prompt_leases l
                                   WHERE l.prompt_id = p.id AND l.annotator_id <> ?1) < p.labels_wanted
                 ORDER BY EXISTS (SELECT 1 FROM prompt_leases l
                                  WHERE l.prompt_id = p.id AND l.annotator_id = ?1) DESC,
                          p.labels + (SELECT COUNT(*) FROM prompt_leases l WHERE l.prompt_id = p.id),
                          random()
                 LIMIT 1",
                params![annotator],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((id, conversation)) = chosen else {
            return Ok(None);
        };
        transaction.execute(
            "INSERT INTO prompt_leases (prompt_id, annotator_id, expires_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (prompt_id, annotator_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
            params![id, annotator, now_ms + lease_ms],
        )?;
        transaction.commit()?;
        Ok(Some(ServedPrompt {
            conversation: serde_json::from_str(&conversation)
                .with_context(|| format!("stored prompt {id} is not a conversation"))?,
            id,
        }))
    }

    fn prompt_progress(&self) -> Result<PromptProgress> {
        let connection = self.connection.lock().expect("store lock");
        Ok(connection.query_row(
            "SELECT COUNT(*), COALESCE(SUM(labels >= labels_wanted), 0), COALESCE(SUM(labels), 0),
                    COALESCE(SUM(labels_wanted), 0) FROM prompts",
            [],
            |row| {
                Ok(PromptProgress {
                    prompts: row.get::<_, i64>(0)? as u64,
                    complete: row.get::<_, i64>(1)? as u64,
                    labels: row.get::<_, i64>(2)? as u64,
                    labels_wanted: row.get::<_, i64>(3)? as u64,
                })
            },
        )?)
    }

    fn add_annotator(&self, name: &str, token_sha256: &str) -> Result<()> {
        let connection = self.connection.lock().expect("store lock");
        let inserted = connection.execute(
            "INSERT INTO annotators (name, token_sha256, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![
                name,
                token_sha256,
                OffsetDateTime::now_utc().format(&Rfc3339)?
            ],
        )?;
        anyhow::ensure!(inserted == 1, "an annotator named `{name}` exists already");
        Ok(())
    }

    fn annotators(&self) -> Result<Vec<AnnotatorRecord>> {
        let connection = self.connection.lock().expect("store lock");
        let mut query = connection
            .prepare("SELECT name, created_at, revoked_at FROM annotators ORDER BY rowid")?;
        let rows = query.query_map([], |row| {
            Ok(AnnotatorRecord {
                name: row.get(0)?,
                created_at: row.get(1)?,
                revoked_at: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_annotator(&self, name: &str) -> Result<bool> {
        let connection = self.connection.lock().expect("store lock");
        let found = connection.execute(
            "UPDATE annotators SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
            params![name, OffsetDateTime::now_utc().format(&Rfc3339)?],
        )?;
        Ok(found == 1)
    }

    fn check_token(&self, token_sha256: &str) -> Result<TokenCheck> {
        let connection = self.connection.lock().expect("store lock");
        let found: Option<(String, Option<String>)> = connection
            .query_row(
                "SELECT name, revoked_at FROM annotators WHERE token_sha256 = ?1",
                params![token_sha256],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        Ok(match found {
            Some((name, None)) => TokenCheck::Valid(name),
            Some((name, Some(_))) => TokenCheck::Revoked(name),
            None => TokenCheck::Unknown,
        })
    }

    fn record_version_event(&self, event: NewVersionChange<'_>) -> Result<()> {
        let connection = self.connection.lock().expect("store lock");
        connection.execute(
            "INSERT INTO version_events (version, kind, parent_version, reason, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                event.version,
                event.kind.as_str(),
                event.parent_version,
                event.reason,
                OffsetDateTime::now_utc().format(&Rfc3339)?
            ],
        )?;
        Ok(())
    }

    fn version_events(&self) -> Result<Vec<VersionChange>> {
        let connection = self.connection.lock().expect("store lock");
        let mut query = connection.prepare(
            "SELECT version, kind, parent_version, reason, recorded_at FROM version_events
             ORDER BY id",
        )?;
        let rows = query.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (version, kind, parent, reason, recorded_at) = row?;
            event(version, &kind, parent, reason, recorded_at)
        })
        .collect()
    }

    fn try_lease(&self, name: &str, owner: &str, now_ms: i64, lease_ms: i64) -> Result<bool> {
        let connection = self.connection.lock().expect("store lock");
        let taken = connection.execute(
            "INSERT INTO leases (name, owner, expires_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
                 expires_at_ms = excluded.expires_at_ms
             WHERE leases.owner = excluded.owner OR leases.expires_at_ms <= ?4",
            params![name, owner, now_ms + lease_ms, now_ms],
        )?;
        Ok(taken == 1)
    }

    fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        let connection = self.connection.lock().expect("store lock");
        connection.execute(
            "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
            params![name, owner],
        )?;
        Ok(())
    }
}
