//! `dpo serve`, the preference-collection server, and `dpo pairs export`: the HTTP API
//! (`http_api.rs` routes to one file per route; `openapi.rs` documents them; the shared state
//! in `app_state.rs`), served model versions (`model_catalog.rs`), group commits into the pair
//! store (`commit_queue.rs`; the store itself is `crate::store`), gzip of the web app's files
//! (`compressed_files.rs`), rate limits (`rate_limiter.rs`), TRL rows as JSON Lines or Parquet
//! (`trl_row_file.rs`), the rounds table (`rounds.rs`), who may label (`annotator_access.rs`)
//! and the admin dashboard's figures (`dashboard_data.rs`); the commands in `cli.rs`.

pub mod admin_routes;
pub mod annotator_access;
pub mod app_state;
pub mod cli;
pub mod commit_queue;
pub mod compressed_files;
pub mod dashboard_data;
pub mod error_response;
pub mod http_api;
pub mod model_catalog;
pub mod model_files;
pub mod openapi;
pub mod pair_route;
pub mod prompt_routes;
pub mod rate_limiter;
pub mod response_headers;
pub mod rounds;
pub mod stats_route;
pub mod trl_row_file;
pub mod web_files;
