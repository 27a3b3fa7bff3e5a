//! Where models live: `--models-dir`, else `$DPO_MODELS_DIR`, else the user's cache directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Name of the environment variable that overrides the default models directory.
pub const MODELS_DIR_ENV: &str = "DPO_MODELS_DIR";

/// Resolves the models directory and makes it absolute (clap already folded in the env var).
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    let dir = match explicit {
        Some(dir) => dir.to_path_buf(),
        None => dirs::cache_dir()
            .context("no cache directory for this user; pass --models-dir or set DPO_MODELS_DIR")?
            .join("dpo-flywheel")
            .join("models"),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create models directory {}", dir.display()))?;
    std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))
}
