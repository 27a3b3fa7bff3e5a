//! The `dpo serve` and `dpo pairs export` commands. A database is named by URL:
//! `sqlite:PATH` or a plain path (SQLite, the default), or `postgres://user@host:port/db`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use shared::api::AccessMode;
use shared::trl_rows::TrlStyle;

use super::app_state::AppState;
use super::commit_queue::CommitQueue;
use super::http_api::router;
use super::model_catalog::ModelCatalog;
use super::rate_limiter::RateLimiter;
use super::trl_row_file::chat_template_of;
use super::trl_row_file::{RowFormat, stored_rows, write_rows};
use crate::label_analytics::pair_quality::{self, PairQualityArgs};
use crate::store::open_store;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Pair database: `sqlite:PATH` or a file path (created if missing), or
    /// `postgres://user[:password]@host[:port]/database`.
    #[arg(long, default_value = "sqlite:pairs.db")]
    pub db: String,
    /// Directory of model versions (`<version>/manifest.json`, as `dpo export` writes them);
    /// new versions are picked up without a restart.
    #[arg(long)]
    pub models_dir: PathBuf,
    /// Address to listen on (loopback by default; port 0 picks a free port). The bound address
    /// is printed as the first stdout line.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The web app's files (index.html, wasm, js), served at `/`.
    #[arg(long)]
    pub web_dir: Option<PathBuf>,
    /// Bearer token for `GET /api/export` (off without one).
    #[arg(long, env = "DPO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Largest accepted request body.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Pair submissions per second per annotator (burst: 2 s worth); 0 = unlimited.
    #[arg(long, default_value_t = 5.0)]
    pub annotator_rate: f64,
    /// Pair submissions per second per client IP (burst: 2 s worth); 0 = unlimited.
    #[arg(long, default_value_t = 200.0)]
    pub ip_rate: f64,
    /// An origin (`https://labels.example.org`) whose pages may call the API (repeatable);
    /// without one, CORS is off and only the server's own pages can.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Who may label: `open` (anyone who reaches the server, pseudonymous) or `invite`
    /// (annotators from `dpo annotators add`, each with their bearer token).
    #[arg(long, default_value = "open", value_parser = access_values())]
    pub access: AccessMode,
    /// Labelling guidelines (Markdown) the app shows before the first vote and from its help.
    #[arg(long, value_name = "FILE.md")]
    pub guidelines: Option<PathBuf>,
    /// Let annotators label prompts they write as well as the prompt set's (always allowed
    /// while the store has no prompt set).
    #[arg(long)]
    pub allow_own_prompts: bool,
    /// Share of comparisons whose two answers come from two different served versions
    /// (blind, sides random); 0.5 when two or more versions are served.
    #[arg(long, value_name = "F", value_parser = share)]
    pub battle_share: Option<f64>,
    /// Seconds a handed-out prompt stays reserved for its annotator.
    #[arg(long, default_value_t = 600)]
    pub prompt_lease_secs: u64,
}

fn share(text: &str) -> std::result::Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("`{text}`: expected a number from 0 to 1"))
}

pub fn run_serve(args: &ServeArgs) -> Result<()> {
    let store = open_store(&args.db)?;
    let guidelines = match &args.guidelines {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the guidelines {}", path.display()))?,
        ),
        None => None,
    };
    let state = Arc::new(AppState {
        queue: CommitQueue::start(store.clone()),
        store,
        catalog: ModelCatalog::new(&args.models_dir),
        annotator_limit: RateLimiter::new(args.annotator_rate, args.annotator_rate * 2.0),
        ip_limit: RateLimiter::new(args.ip_rate, args.ip_rate * 2.0),
        admin_token: args.admin_token.clone().filter(|t| !t.is_empty()),
        web_dir: args.web_dir.clone(),
        compressed: Default::default(),
        max_body_bytes: args.max_body_bytes,
        cors_origins: args.cors_origins.clone(),
        access: args.access,
        guidelines,
        allow_own_prompts: args.allow_own_prompts,
        battle_share: args.battle_share,
        prompt_lease: std::time::Duration::from_secs(args.prompt_lease_secs.max(1)),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let bound = listener.local_addr()?;
        println!("http://{bound}");
        tracing::info!(
            "serving {} model versions from {} on http://{bound} ({:?} access)",
            state.catalog.versions().len(),
            args.models_dir.display(),
            args.access
        );
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or Ctrl-C: stop accepting, finish the requests in flight.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[derive(Subcommand, Debug)]
pub enum PairsCommand {
    /// Write the stored pairs as TRL DPO rows (JSON Lines or Parquet), ready for
    /// `dpo train --data`.
    Export(PairsExportArgs),
    /// Labels per annotator, comparisons labelled more than once and how far their labels
    /// agree.
    Quality(PairQualityArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RowStyle {
    Standard,
    Conversational,
}

#[derive(Args, Debug)]
pub struct PairsExportArgs {
    /// Pair database: `sqlite:PATH`, a file path, or `postgres://…`.
    #[arg(long)]
    pub db: String,
    /// TRL's conversational rows (message lists) or standard rows (the prompt rendered with
    /// the chat template of --model).
    #[arg(long, value_enum, default_value = "conversational")]
    pub style: RowStyle,
    /// A GGUF whose chat template renders standard rows' prompts.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// JSON Lines, or Parquet (snappy) with the columns Hugging Face datasets writes.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: RowFormat,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_pairs(command: &PairsCommand) -> Result<()> {
    let args = match command {
        PairsCommand::Export(args) => args,
        PairsCommand::Quality(args) => return pair_quality::run(args),
    };
    let store = open_store(&args.db)?;
    let (style, template) = match args.style {
        RowStyle::Conversational => (
            TrlStyle::Conversational,
            shared::ChatTemplate::new(None, "", "")?,
        ),
        RowStyle::Standard => {
            let model = args
                .model
                .as_ref()
                .context("--style standard needs --model (a GGUF with the chat template)")?;
            (TrlStyle::Standard, chat_template_of(model)?)
        }
    };
    let (pairs, rows) = stored_rows(store.as_ref(), style, &template)?;
    write_rows(&args.out, &rows, args.format)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let rows = rows.len();
    tracing::info!("{pairs} pairs → {rows} TRL rows in {}", args.out.display());
    println!(
        "{}",
        serde_json::json!({ "pairs": pairs, "rows": rows, "out": args.out })
    );
    Ok(())
}

/// `--access`: `open` or `invite`, listed in `--help`.
fn access_values() -> impl clap::builder::TypedValueParser<Value = AccessMode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["open", "invite"])
        .map(|value| value.parse().expect("a listed value parses"))
}
