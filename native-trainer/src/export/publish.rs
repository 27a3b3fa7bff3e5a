//! `dpo publish`: an existing Qwen2 GGUF served as it is — copied byte for byte (hard-linked
//! when the file system allows) into `<models-dir>/<version>/model.gguf` beside its
//! `manifest.json` — so a downloaded model (the one `dpo fetch` got) becomes a version
//! labellers can load, without requantizing it. Publishing the same file again is a no-op;
//! a version id already taken by other bytes is refused.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use shared::model_manifest::{MANIFEST_FILE, MANIFEST_FORMAT_VERSION};
use shared::{Architecture, GgufModel, ModelManifest};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::version_files::{GGUF_FILE, exporter_name, hashed_file, version_id, write_manifest};

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The GGUF file to publish (a Qwen2-architecture model).
    #[arg(long)]
    pub model: PathBuf,
    /// The server's models directory (`dpo serve --models-dir`); the version goes in a
    /// subdirectory named by its id.
    #[arg(long)]
    pub models_dir: PathBuf,
    /// The version id; default: `<general.name>-<file type>-<first 8 hex of sha256>`.
    #[arg(long)]
    pub version_id: Option<String>,
    /// The model the lineage starts from, for the manifest (default: the file's
    /// general.name).
    #[arg(long)]
    pub base_model: Option<String>,
}

/// llama.cpp's `general.file_type` numbers, as the names `dpo export` uses.
fn file_type_name(file_type: u32) -> &'static str {
    match file_type {
        0 => "f32",
        1 => "f16",
        2 => "q4_0",
        3 => "q4_1",
        7 => "q8_0",
        8 => "q5_0",
        9 => "q5_1",
        10 => "q2_k",
        11 => "q3_k_s",
        12 => "q3_k_m",
        13 => "q3_k_l",
        14 => "q4_k_s",
        15 => "q4_k_m",
        16 => "q5_k_s",
        17 => "q5_k_m",
        18 => "q6_k",
        32 => "bf16",
        _ => "gguf",
    }
}

pub fn run(args: &PublishArgs) -> Result<()> {
    let gguf = GgufModel::open(&args.model)?;
    if gguf.hyperparameters.architecture != Architecture::Qwen2 {
        bail!(
            "{}: the browser engine runs qwen2 models, this is {}",
            args.model.display(),
            gguf.hyperparameters.architecture.as_str()
        );
    }
    let model_name = gguf
        .name()
        .map(str::to_string)
        .unwrap_or_else(|| file_stem(&args.model));
    let quant = gguf
        .metadata()
        .get("general.file_type")
        .and_then(|v| v.to_u32().ok())
        .map(file_type_name)
        .unwrap_or("gguf");
    tracing::info!("hashing {}", args.model.display());
    let source_dir = args.model.parent().unwrap_or(Path::new("."));
    let mut file = hashed_file(source_dir, &file_name(&args.model))?;
    file.path = GGUF_FILE.into();
    let version = version_id(
        &args
            .version_id
            .clone()
            .unwrap_or_else(|| format!("{model_name}-{quant}-{}", &file.sha256[..8])),
    );
    let dir = args.models_dir.join(&version);
    let manifest_path = dir.join(MANIFEST_FILE);
    if let Ok(text) = std::fs::read_to_string(&manifest_path) {
        let existing: ModelManifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a manifest", manifest_path.display()))?;
        if existing.gguf.sha256 != file.sha256 {
            bail!(
                "version `{version}` already exists in {} with other weights (sha256 {}); \
                 choose another --version-id",
                args.models_dir.display(),
                existing.gguf.sha256
            );
        }
        tracing::info!(
            "{} is already published as `{version}`",
            args.model.display()
        );
        println!("{}", serde_json::to_string(&existing)?);
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    place_copy(&args.model, &dir.join(GGUF_FILE))?;
    let manifest = ModelManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        version,
        parent_version: None,
        created: OffsetDateTime::now_utc().format(&Rfc3339)?,
        base_model: args
            .base_model
            .clone()
            .unwrap_or_else(|| model_name.clone()),
        model_name,
        architecture: "qwen2".into(),
        quant: quant.into(),
        gguf: file.clone(),
        files: vec![file],
        training: None,
        exporter: format!("{} (published as is)", exporter_name()),
    };
    // The manifest last: its presence marks a complete version.
    write_manifest(&dir, &manifest)?;
    tracing::info!(
        "published {} as version `{}` in {}",
        args.model.display(),
        manifest.version,
        dir.display()
    );
    println!("{}", serde_json::to_string(&manifest)?);
    Ok(())
}

/// `to` becomes the bytes of `from`: a hard link when possible, else a copy through a
/// `.partial` file renamed at the end.
fn place_copy(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_file(to);
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let partial = to.with_extension("gguf.partial");
    std::fs::copy(from, &partial)
        .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    std::fs::rename(&partial, to)?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

#[cfg(test)]
mod tests {
    use super::file_type_name;

    #[test]
    fn file_types_have_the_names_dpo_export_uses() {
        assert_eq!(file_type_name(15), "q4_k_m");
        assert_eq!(file_type_name(7), "q8_0");
        assert_eq!(file_type_name(99), "gguf");
    }
}
