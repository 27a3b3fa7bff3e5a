//! `dpo serve`, the preference-collection server, and `dpo pairs export`: the HTTP API
//! (`http_api.rs`), served model versions (`model_catalog.rs`), the pair store behind one trait
//! (`pair_store.rs`; SQLite in `sqlite_store.rs`, PostgreSQL in `postgres_store.rs`, one schema
//! in `migrations.rs`), group commits (`commit_queue.rs`), gzip of the web app's files (`compressed_files.rs`), rate limits (`rate_limiter.rs`),
//! TRL rows as JSON Lines or Parquet (`trl_row_file.rs`), the rounds table (`rounds.rs`) and
//! the labels' quality report (`pair_quality.rs`); the commands in `cli.rs`.

pub mod cli;
pub mod commit_queue;
pub mod compressed_files;
pub mod http_api;
pub mod migrations;
pub mod model_catalog;
pub mod pair_quality;
pub mod pair_store;
pub mod postgres_store;
pub mod rate_limiter;
pub mod rounds;
pub mod sqlite_store;
pub mod trl_row_file;
