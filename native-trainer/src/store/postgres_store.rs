//! The pair store on a PostgreSQL server (`--db postgres://…`): the same migrations and the
//! same guarantees as SQLite — a batch is one transaction, acknowledged after COMMIT (with
//! PostgreSQL's default `synchronous_commit = on`, on disk), each idempotency key stored once
//! even with several servers on one database (`ON CONFLICT DO NOTHING`). Plain TCP, no TLS:
//! for a database on the same host or a private network.

use std::sync::Mutex;

use anyhow::{Context, Result};
use postgres::{Client, NoTls};
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

/// The advisory lock that serialises handing out prompts across servers on one database.
const PROMPT_LEASE_LOCK: i64 = 0x6470_6f5f_6c65_6173;

pub struct PostgresPairStore {
    client: Mutex<Client>,
}

impl PostgresPairStore {
    pub fn connect(url: &str) -> Result<Self> {
        let mut client = Client::connect(url, NoTls)
            .with_context(|| format!("connecting to {}", redact_password(url)))?;
        migrate(&mut client).context("migrating the PostgreSQL pair store")?;
        Ok(Self {
            client: Mutex::new(client),
        })
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn migrate(client: &mut Client) -> Result<()> {
    client.batch_execute(VERSIONS_TABLE)?;
    let mut transaction = client.transaction()?;
    // One migrating server at a time.
    transaction.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")?;
    let applied: i64 = transaction
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
        transaction.batch_execute(migration.postgres)?;
        transaction.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[
                &migration.version,
                &OffsetDateTime::now_utc().format(&Rfc3339)?,
            ],
        )?;
        tracing::info!("applied pair-store migration {}", migration.version);
    }
    transaction.commit()?;
    Ok(())
}

/// Whether the prompt a pair names lets it be stored; locks the prompt's row until the
/// pair's transaction ends, so that two servers cannot both fill its last slot.
fn prompt_refusal(
    transaction: &mut postgres::Transaction,
    pair: &PreferencePair,
    prompt_id: &str,
) -> Result<Option<PromptRefusal>> {
    let Some(row) = transaction.query_opt(
        "SELECT conversation_json, labels, labels_wanted FROM prompts WHERE id = $1 FOR UPDATE",
        &[&prompt_id],
    )?
    else {
        return Ok(Some(PromptRefusal::UnknownPrompt));
    };
    let (conversation, labels, wanted): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if conversation != serde_json::to_string(&pair.conversation)? {
        return Ok(Some(PromptRefusal::OtherConversation));
    }
    let labelled: bool = transaction
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pairs WHERE prompt_id = $1 AND annotator_id = $2)",
            &[&prompt_id, &pair.annotator_id],
        )?
        .get(0);
    Ok(if labelled {
        Some(PromptRefusal::AlreadyLabelled)
    } else if labels >= wanted {
        Some(PromptRefusal::Complete)
    } else {
        None
    })
}

impl PairStore for PostgresPairStore {
    fn insert_batch(&self, pairs: &[(PreferencePair, String)]) -> Result<Vec<InsertOutcome>> {
        let mut client = self.client.lock().expect("store lock");
        let mut transaction = client.transaction()?;
        let received_at = OffsetDateTime::now_utc().format(&Rfc3339)?;
        let insert = transaction.prepare(
            "INSERT INTO pairs (idempotency_key, annotator_id, model_a, model_b, vote, pair_json, received_at, prompt_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )?;
        let find =
            transaction.prepare("SELECT id, pair_json FROM pairs WHERE idempotency_key = $1")?;
        let mut outcomes = Vec::with_capacity(pairs.len());
        for (pair, json) in pairs {
            let refusal = match &pair.prompt_id {
                Some(prompt_id) => prompt_refusal(&mut transaction, pair, prompt_id)?,
                None => None,
            };
            let inserted = match refusal {
                // A retry of a stored pair is answered below, refused or not.
                Some(_) => None,
                None => transaction.query_opt(
                    &insert,
                    &[
                        &pair.idempotency_key,
                        &pair.annotator_id,
                        &pair.candidate_a.model.version,
                        &pair.candidate_b.model.version,
                        &pair.vote.as_str(),
                        json,
                        &received_at,
                        &pair.prompt_id,
                    ],
                )?,
            };
            let outcome = match inserted {
                Some(row) => {
                    if let Some(prompt_id) = &pair.prompt_id {
                        transaction.execute(
                            "UPDATE prompts SET labels = labels + 1 WHERE id = $1",
                            &[prompt_id],
                        )?;
                        transaction.execute(
                            "DELETE FROM prompt_leases WHERE prompt_id = $1 AND annotator_id = $2",
                            &[prompt_id, &pair.annotator_id],
                        )?;
                    }
                    InsertOutcome::Created(row.get(0))
                }
                None => match transaction.query_opt(&find, &[&pair.idempotency_key])? {
                    Some(row) => {
                        let (id, stored): (i64, String) = (row.get(0), row.get(1));
                        if stored == *json {
                            InsertOutcome::Replayed(id)
                        } else {
                            InsertOutcome::KeyReused(id)
                        }
                    }
                    None => InsertOutcome::Refused(
                        refusal.expect("a pair not inserted is stored or refused"),
                    ),
                },
            };
            outcomes.push(outcome);
        }
        transaction.commit()?;
        Ok(outcomes)
    }

    fn stats(&self) -> Result<PairStats> {
        let mut client = self.client.lock().expect("store lock");
        let rows = client.query(
            "SELECT model_a, model_b, vote, COUNT(*) FROM pairs GROUP BY 1, 2, 3",
            &[],
        )?;
        Ok(stats_from_counts(
            rows.iter()
                .map(|row| {
                    (
                        row.get(0),
                        row.get(1),
                        row.get(2),
                        row.get::<_, i64>(3) as u64,
                    )
                })
                .collect(),
        ))
    }

    fn all_pairs(&self) -> Result<Vec<PreferencePair>> {
        let mut client = self.client.lock().expect("store lock");
        client
            .query("SELECT id, pair_json FROM pairs ORDER BY id", &[])?
            .iter()
            .map(|row| {
                let (id, json): (i64, String) = (row.get(0), row.get(1));
                serde_json::from_str(&json)
                    .with_context(|| format!("stored pair {id} is not a pair"))
            })
            .collect()
    }

    fn add_prompts(&self, prompts: &[NewPrompt]) -> Result<PromptImport> {
        let mut client = self.client.lock().expect("store lock");
        let mut transaction = client.transaction()?;
        let imported_at = OffsetDateTime::now_utc().format(&Rfc3339)?;
        let insert = transaction.prepare(
            "INSERT INTO prompts (id, conversation_key, conversation_json, labels_wanted, imported_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )?;
        let mut import = PromptImport::default();
        for prompt in prompts {
            let inserted = transaction.execute(
                &insert,
                &[
                    &prompt.id,
                    &conversation_key(&prompt.conversation),
                    &serde_json::to_string(&prompt.conversation)?,
                    &i64::from(prompt.labels_wanted),
                    &imported_at,
                ],
            )?;
            if inserted == 1 {
                import.added += 1;
            } else {
                import.duplicates += 1;
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
        let mut client = self.client.lock().expect("store lock");
        let mut transaction = client.transaction()?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&PROMPT_LEASE_LOCK])?;
        transaction.execute(
            "DELETE FROM prompt_leases WHERE expires_at_ms <= $1",
            &[&now_ms],
        )?;
        let chosen = transaction.query_opt(
            "SELECT p.id, p.conversation_json FROM prompts p
             WHERE NOT EXISTS (SELECT 1 FROM pairs q WHERE q.prompt_id = p.id AND q.annotator_id = $1)
               AND p.labels + (SELECT COUNT(*) FROM prompt_leases l
                               WHERE l.prompt_id = p.id AND l.annotator_id <> $1) < p.labels_wanted
             ORDER BY EXISTS (SELECT 1 FROM prompt_leases l
                              WHERE l.prompt_id = p.id AND l.annotator_id = $1) DESC,
                      p.labels + (SELECT COUNT(*) FROM prompt_leases l WHERE l.prompt_id = p.id),
                      random()
             LIMIT 1",
            &[&annotator],
        )?;
        let Some(row) = chosen else {
            transaction.commit()?;
            return Ok(None);
        };
        let (id, conversation): (String, String) = (row.get(0), row.get(1));
        transaction.execute(
            "INSERT INTO prompt_leases (prompt_id, annotator_id, expires_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (prompt_id, annotator_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
            &[&id, &annotator, &(now_ms + lease_ms)],
        )?;
        transaction.commit()?;
        Ok(Some(ServedPrompt {
            conversation: serde_json::from_str(&conversation)
                .with_context(|| format!("stored prompt {id} is not a conversation"))?,
            id,
        }))
    }

    fn prompt_progress(&self) -> Result<PromptProgress> {
        let mut client = self.client.lock().expect("store lock");
        let row = client.query_one(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE labels >= labels_wanted),
                    COALESCE(SUM(labels), 0)::BIGINT, COALESCE(SUM(labels_wanted), 0)::BIGINT
             FROM prompts",
            &[],
        )?;
        Ok(PromptProgress {
            prompts: row.get::<_, i64>(0) as u64,
            complete: row.get::<_, i64>(1) as u64,
            labels: row.get::<_, i64>(2) as u64,
            labels_wanted: row.get::<_, i64>(3) as u64,
        })
    }

    fn add_annotator(&self, name: &str, token_sha256: &str) -> Result<()> {
        let mut client = self.client.lock().expect("store lock");
        let inserted = client.execute(
            "INSERT INTO annotators (name, token_sha256, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[
                &name,
                &token_sha256,
                &OffsetDateTime::now_utc().format(&Rfc3339)?,
            ],
        )?;
        anyhow::ensure!(inserted == 1, "an annotator named `{name}` exists already");
        Ok(())
    }

    fn annotators(&self) -> Result<Vec<AnnotatorRecord>> {
        let mut client = self.client.lock().expect("store lock");
        Ok(client
            .query(
                "SELECT name, created_at, revoked_at FROM annotators ORDER BY created_at, name",
                &[],
            )?
            .iter()
            .map(|row| AnnotatorRecord {
                name: row.get(0),
                created_at: row.get(1),
                revoked_at: row.get(2),
            })
            .collect())
    }

    fn revoke_annotator(&self, name: &str) -> Result<bool> {
        let mut client = self.client.lock().expect("store lock");
        let found = client.execute(
            "UPDATE annotators SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1",
            &[&name, &OffsetDateTime::now_utc().format(&Rfc3339)?],
        )?;
        Ok(found == 1)
    }

    fn check_token(&self, token_sha256: &str) -> Result<TokenCheck> {
        let mut client = self.client.lock().expect("store lock");
        let found = client.query_opt(
            "SELECT name, revoked_at FROM annotators WHERE token_sha256 = $1",
            &[&token_sha256],
        )?;
        Ok(match found {
            Some(row) => match row.get::<_, Option<String>>(1) {
                None => TokenCheck::Valid(row.get(0)),
                Some(_) => TokenCheck::Revoked(row.get(0)),
            },
            None => TokenCheck::Unknown,
        })
    }

    fn record_version_event(&self, event: NewVersionChange<'_>) -> Result<()> {
        let mut client = self.client.lock().expect("store lock");
        client.execute(
            "INSERT INTO version_events (version, kind, parent_version, reason, recorded_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &event.version,
                &event.kind.as_str(),
                &event.parent_version,
                &event.reason,
                &OffsetDateTime::now_utc().format(&Rfc3339)?,
            ],
        )?;
        Ok(())
    }

    fn version_events(&self) -> Result<Vec<VersionChange>> {
        let mut client = self.client.lock().expect("store lock");
        client
            .query(
                "SELECT version, kind, parent_version, reason, recorded_at FROM version_events
                 ORDER BY id",
                &[],
            )?
            .iter()
            .map(|row| {
                let kind: String = row.get(1);
                event(row.get(0), &kind, row.get(2), row.get(3), row.get(4))
            })
            .collect()
    }

    fn try_lease(&self, name: &str, owner: &str, now_ms: i64, lease_ms: i64) -> Result<bool> {
        let mut client = self.client.lock().expect("store lock");
        let taken = client.execute(
            "INSERT INTO leases (name, owner, expires_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner,
                 expires_at_ms = EXCLUDED.expires_at_ms
             WHERE leases.owner = EXCLUDED.owner OR leases.expires_at_ms <= $4",
            &[&name, &owner, &(now_ms + lease_ms), &now_ms],
        )?;
        Ok(taken == 1)
    }

    fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        let mut client = self.client.lock().expect("store lock");
        client.execute(
            "DELETE FROM leases WHERE name = $1 AND owner = $2",
            &[&name, &owner],
        )?;
        Ok(())
    }
}
