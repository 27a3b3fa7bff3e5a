//! The model versions a server offers: every `DIR/<version>/manifest.json` under the models
//! directory (as `dpo export` writes them), read afresh on each request so a new export is
//! served without a restart. Only files a manifest lists can be downloaded.

use std::path::{Path, PathBuf};

use shared::ModelManifest;
use shared::model_manifest::MANIFEST_FILE;

pub struct ModelCatalog {
    models_dir: PathBuf,
}

/// A downloadable file of a version.
pub struct ModelFile {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl ModelCatalog {
    pub fn new(models_dir: &Path) -> Self {
        Self {
            models_dir: models_dir.to_path_buf(),
        }
    }

    /// Every readable manifest, oldest first; unreadable ones are logged and left out.
    pub fn versions(&self) -> Vec<ModelManifest> {
        self.entries()
            .into_iter()
            .map(|(_, manifest)| manifest)
            .collect()
    }

    /// The file `name` of `version`, when its manifest lists it.
    pub fn file(&self, version: &str, name: &str) -> Option<ModelFile> {
        let (dir, manifest) = self
            .entries()
            .into_iter()
            .find(|(_, m)| m.version == version)?;
        let listed = manifest.files.into_iter().find(|f| f.path == name)?;
        Some(ModelFile {
            path: dir.join(&listed.path),
            sha256: listed.sha256,
            size: listed.size,
        })
    }

    /// Each version's directory and manifest, oldest first: one scan of the models directory.
    fn entries(&self) -> Vec<(PathBuf, ModelManifest)> {
        let Ok(entries) = std::fs::read_dir(&self.models_dir) else {
            return Vec::new();
        };
        let mut versions: Vec<(PathBuf, ModelManifest)> = entries
            .filter_map(|entry| {
                let dir = entry.ok()?.path();
                let path = dir.join(MANIFEST_FILE);
                let text = std::fs::read_to_string(&path).ok()?;
                match serde_json::from_str::<ModelManifest>(&text) {
                    Ok(manifest) => Some((dir, manifest)),
                    Err(error) => {
                        tracing::warn!("{}: not a manifest ({error}); not served", path.display());
                        None
                    }
                }
            })
            .collect();
        versions.sort_by(|(_, a), (_, b)| (&a.created, &a.version).cmp(&(&b.created, &b.version)));
        versions
    }
}
