//! Label campaigns: what a team needs to run one on top of the pair store — prompt sets to
//! label (`prompt_file.rs`, `dpo prompts import` in `prompts_cli.rs`), invited annotators
//! (`dpo annotators` in `annotators_cli.rs`) and how model versions fare in blind battles
//! (`version_ratings.rs`, `version_standings.rs`). How far annotators agree is a figure of
//! the labels themselves, in `crate::store::annotator_agreement`.

pub mod annotators_cli;
pub mod prompt_file;
pub mod prompts_cli;
pub mod version_ratings;
pub mod version_standings;
