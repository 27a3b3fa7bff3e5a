//! Label campaigns: what a team needs to run one on top of the pair store — prompt sets to
//! label (`prompt_file.rs`, `dpo prompts import` in `prompts_cli.rs`), invited annotators
//! (`dpo annotators` in `annotators_cli.rs`). What the labels say — agreement, the votes a run
//! learns from, quality, how versions fare in battles — is `crate::label_analytics`.

pub mod annotators_cli;
pub mod prompt_file;
pub mod prompts_cli;
