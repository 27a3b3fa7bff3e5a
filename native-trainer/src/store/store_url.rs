//! Naming a pair store by URL: `sqlite:PATH` or a plain path (SQLite, the default), or
//! `postgres://user[:password]@host[:port]/database` (also `postgresql://`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::pair_store::PairStore;
use super::postgres_store::PostgresPairStore;
use super::sqlite_store::SqlitePairStore;

/// Whether `text` names a store explicitly (`sqlite:…` or `postgres://…`) rather than a file
/// of rows.
pub fn is_store_url(text: &str) -> bool {
    text.starts_with("sqlite:") || is_postgres_url(text)
}

fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// Opens the store a `--db` URL names.
pub fn open_store(url: &str) -> Result<Arc<dyn PairStore>> {
    if is_postgres_url(url) {
        return Ok(Arc::new(PostgresPairStore::connect(url)?));
    }
    let path = url.strip_prefix("sqlite:").unwrap_or(url);
    Ok(Arc::new(SqlitePairStore::open(Path::new(path))?))
}
