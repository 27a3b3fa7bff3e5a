//! The pair store, the one home of stored votes that `serve` (which writes them) and `train`
//! (which learns from them) both use without importing each other: the storage trait
//! (`pair_store.rs`), SQLite (`sqlite_store.rs`) and PostgreSQL (`postgres_store.rs`) behind
//! it with one schema (`migrations.rs`) and database URLs (`store_url.rs`); the records
//! kept beside the pairs: prompt sets (`prompt_set.rs`), invited annotators
//! (`annotator_records.rs`) and the model versions' role changes (`version_events.rs`).

pub mod annotator_records;
pub mod migrations;
pub mod pair_store;
pub mod postgres_store;
pub mod prompt_set;
pub mod sqlite_store;
pub mod store_url;
pub mod version_events;

pub use pair_store::{InsertOutcome, PairStore, PromptRefusal};
pub use store_url::{is_store_url, open_store};
