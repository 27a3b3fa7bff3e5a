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

use super::migrations::{MIGRATIONS, VERSIONS_TABLE};
use super::pair_store::{InsertOutcome, PairStats, PairStore, stats_from_counts};

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

impl PairStore for PostgresPairStore {
    fn insert_batch(&self, pairs: &[(PreferencePair, String)]) -> Result<Vec<InsertOutcome>> {
        let mut client = self.client.lock().expect("store lock");
        let mut transaction = client.transaction()?;
        let received_at = OffsetDateTime::now_utc().format(&Rfc3339)?;
        let insert = transaction.prepare(
            "INSERT INTO pairs (idempotency_key, annotator_id, model_a, model_b, vote, pair_json, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )?;
        let find =
            transaction.prepare("SELECT id, pair_json FROM pairs WHERE idempotency_key = $1")?;
        let mut outcomes = Vec::with_capacity(pairs.len());
        for (pair, json) in pairs {
            let inserted = transaction.query_opt(
                &insert,
                &[
                    &pair.idempotency_key,
                    &pair.annotator_id,
                    &pair.candidate_a.model.version,
                    &pair.candidate_b.model.version,
                    &pair.vote.as_str(),
                    json,
                    &received_at,
                ],
            )?;
            let outcome = match inserted {
                Some(row) => InsertOutcome::Created(row.get(0)),
                None => {
                    let row = transaction.query_one(&find, &[&pair.idempotency_key])?;
                    let (id, stored): (i64, String) = (row.get(0), row.get(1));
                    if stored == *json {
                        InsertOutcome::Replayed(id)
                    } else {
                        InsertOutcome::KeyReused(id)
                    }
                }
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
}
