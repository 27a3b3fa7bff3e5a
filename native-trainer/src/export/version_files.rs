//! What a model version's directory holds, shared by `dpo export` (`cli.rs`) and `dpo publish`
//! (`publish.rs`): the GGUF's file name, a file's manifest entry (size and sha256), the
//! exporter's name, URL-safe version ids, and the manifest written last (its presence marks a
//! complete version).

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use shared::model_manifest::MANIFEST_FILE;
use shared::{ManifestFile, ModelManifest};

use super::model_card::CANDLE_VERSION;

/// The GGUF's name in an export directory.
pub const GGUF_FILE: &str = "model.gguf";

/// `dir/name`'s size and sha256, as a manifest entry named `name`.
pub fn hashed_file(dir: &Path, name: &str) -> Result<ManifestFile> {
    let path = dir.join(name);
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok(ManifestFile {
        path: name.into(),
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

/// The program that writes manifests: `dpo 0.1.0, candle 0.11.1`.
pub fn exporter_name() -> String {
    format!("dpo {}, candle {CANDLE_VERSION}", env!("CARGO_PKG_VERSION"))
}

/// A version id that is safe in a URL path segment and a directory name.
pub fn version_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Writes `dir/manifest.json` (pretty JSON): the last file of a version.
pub fn write_manifest(dir: &Path, manifest: &ModelManifest) -> Result<()> {
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(manifest)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::version_id;

    #[test]
    fn version_ids_are_url_and_path_safe() {
        assert_eq!(
            version_id("Qwen2.5 Coder/0.5B:q4_k_m"),
            "qwen2.5-coder-0.5b-q4_k_m"
        );
    }
}
