//! The serving manifest, `manifest.json` beside an exported `model.gguf`: which model version
//! this is, where it came from (parent version, base model, training run) and how to verify
//! the bytes (sha256, size). `dpo export` writes it; the server lists versions from it and the
//! browser checks its download against it; a vote names the version it was cast on
//! (`ModelRef`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::preference_pair::ModelRef;

/// Version of this manifest format; bumped on any incompatible change.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// The manifest's file name in an export directory.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelManifest {
    pub format_version: u32,
    /// This model version's id (unique among a server's versions).
    pub version: String,
    /// The version it was trained or requantized from, when that was a served version.
    pub parent_version: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    pub model_name: String,
    /// The model the lineage started from (e.g. `Qwen/Qwen2.5-1.5B-Instruct`).
    pub base_model: String,
    pub architecture: String,
    /// The export preset: `q8_0`, `q4_0`, `q4_k_m`, `f16` or `f32`.
    pub quant: String,
    /// The GGUF the server serves.
    pub gguf: ManifestFile,
    /// Every file of the export directory (the GGUF included).
    pub files: Vec<ManifestFile>,
    /// The DPO run that produced these weights; `None` for a plain conversion.
    pub training: Option<TrainingRunSummary>,
    /// The program that wrote the export (`dpo 0.1.0, candle 0.11.1`).
    pub exporter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestFile {
    /// Relative to the manifest's directory, `/`-separated.
    pub path: String,
    /// Lower-case hex.
    pub sha256: String,
    pub size: u64,
}

/// What a reader of the model card or the server wants to know about a DPO run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrainingRunSummary {
    /// `dpo`.
    pub method: String,
    /// `lora` or `full`.
    pub adaptation: String,
    pub global_step: u64,
    pub epoch: f64,
    /// The run's settings under TRL's names (`learning_rate`, `beta`, `loss_type`, …).
    pub hyperparameters: Map<String, Value>,
    /// The final logged metrics under TRL's names (`loss`, `rewards/accuracies`,
    /// `eval_loss`, `train_runtime`, …).
    pub metrics: Map<String, Value>,
}

impl ModelManifest {
    /// What a vote on this version records.
    pub fn model_ref(&self) -> ModelRef {
        ModelRef {
            version: self.version.clone(),
            sha256: self.gguf.sha256.clone(),
        }
    }
}
