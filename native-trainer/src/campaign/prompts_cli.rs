//! `dpo prompts import`: a prompt set into the store, each prompt wanting N labels.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::prompt_file::read_prompt_file;
use crate::store::open_store;

#[derive(Subcommand, Debug)]
pub enum PromptsCommand {
    /// Add prompts from JSON Lines or Parquet (TRL's prompt-only rows: `prompt` as text or
    /// messages, or `messages`; optional `id`). Prompts already in the store (the same
    /// conversation up to whitespace, or the same id) are skipped and counted. Prints
    /// `{"added": …, "duplicates": …}` last.
    Import(PromptsImportArgs),
}

#[derive(Args, Debug)]
pub struct PromptsImportArgs {
    /// Pair database: `sqlite:PATH` or `postgres://…`.
    #[arg(long)]
    pub db: String,
    /// The prompt file (`.parquet` is read as Parquet, anything else as JSON Lines).
    pub file: PathBuf,
    /// Acknowledged labels each prompt wants (from different annotators) before it is no
    /// longer handed out.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub labels_per_prompt: u32,
}

pub fn run(command: &PromptsCommand) -> Result<()> {
    let PromptsCommand::Import(args) = command;
    let prompts = read_prompt_file(&args.file, args.labels_per_prompt)?;
    let import = open_store(&args.db)?.add_prompts(&prompts)?;
    tracing::info!(
        "{}: {} prompts read, {} added, {} duplicates skipped",
        args.file.display(),
        prompts.len(),
        import.added,
        import.duplicates
    );
    println!("{}", serde_json::to_string(&import)?);
    Ok(())
}
