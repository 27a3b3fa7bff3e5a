//! A data file's rows tokenized under a run's data settings, for either method: malformed
//! lines that were skipped are reported, prompts are cut to `max_prompt_length` (keeping
//! their end), and rows whose prompt alone fills `max_length` are dropped (TRL 1.x drops them
//! under `keep_start`, which would leave no completion token).

use std::path::Path;

use anyhow::{Context, Result};

use super::dpo_batch::TruncationMode;
use super::pair_tokens::{LabelledTokens, PairTokens};
use super::preference_file::PreferenceFile;
use super::training_config::TrainingConfig;

/// A tokenized row's prompt, which the data settings cut.
pub trait PromptTokens {
    fn prompt_ids_mut(&mut self) -> &mut Vec<u32>;
}

impl PromptTokens for PairTokens {
    fn prompt_ids_mut(&mut self) -> &mut Vec<u32> {
        &mut self.prompt_ids
    }
}

impl PromptTokens for LabelledTokens {
    fn prompt_ids_mut(&mut self) -> &mut Vec<u32> {
        &mut self.prompt_ids
    }
}

/// `file`'s rows (read from `path`) through `tokenize`, under `config`'s data settings; an
/// error names the line a row came from, or says that no row is left.
pub fn tokenize_rows<Row, Tokens: PromptTokens>(
    path: &Path,
    file: &PreferenceFile<Row>,
    config: &TrainingConfig,
    tokenize: impl Fn(&Row) -> Result<Tokens>,
) -> Result<Vec<Tokens>> {
    if file.skipped > 0 {
        tracing::warn!(
            "{}: {} malformed lines skipped",
            path.display(),
            file.skipped
        );
    }
    let mut rows = Vec::with_capacity(file.rows.len());
    let mut dropped = 0;
    for (row, line) in file.rows.iter().zip(&file.line_numbers) {
        let mut tokens =
            tokenize(row).with_context(|| format!("{}:{line}: tokenizing", path.display()))?;
        let prompt = tokens.prompt_ids_mut();
        if config.max_prompt_length > 0 && prompt.len() > config.max_prompt_length {
            let excess = prompt.len() - config.max_prompt_length;
            prompt.drain(..excess);
        }
        if config.max_length > 0
            && config.truncation_mode == TruncationMode::KeepStart
            && prompt.len() >= config.max_length
        {
            dropped += 1;
            continue;
        }
        rows.push(tokens);
    }
    if dropped > 0 {
        tracing::warn!(
            "{}: {dropped} rows dropped: their prompt alone fills max_length = {}",
            path.display(),
            config.max_length
        );
    }
    anyhow::ensure!(
        !rows.is_empty(),
        "{}: no rows left to train on",
        path.display()
    );
    Ok(rows)
}
