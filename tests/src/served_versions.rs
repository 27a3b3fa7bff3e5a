//! Model versions for `dpo serve` tests: the tiny Qwen2 exported with `dpo export` into a
//! models directory, each version with its manifest, and what a vote on it records.

use std::path::Path;

use serde_json::Value;
use shared::ModelRef;

use crate::dpo;
use crate::tiny_gguf::TinyQwen2;

/// Exports the tiny model as `version` into `models/<version>` (quantized with `quant`,
/// which also makes versions' bytes differ), with `parent` as its parent version.
pub fn export_tiny_version(
    models: &Path,
    version: &str,
    quant: &str,
    parent: Option<&str>,
) -> ModelRef {
    let gguf = models.with_file_name(format!("tiny-{version}.gguf"));
    std::fs::write(&gguf, TinyQwen2::default().to_bytes()).unwrap();
    let mut command = dpo();
    command
        .args([
            "export",
            "--quant",
            quant,
            "--no-hf",
            "--version-id",
            version,
        ])
        .arg("--model")
        .arg(&gguf)
        .arg("--out")
        .arg(models.join(version));
    if let Some(parent) = parent {
        command.args(["--parent-version", parent]);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(models.join(version).join("manifest.json")).unwrap(),
    )
    .unwrap();
    ModelRef {
        version: version.into(),
        sha256: manifest["gguf"]["sha256"].as_str().unwrap().into(),
    }
}
