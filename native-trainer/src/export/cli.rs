//! The `dpo export` command: writes `model.gguf`, the HF directory with its README.md model
//! card, and last `manifest.json` (whose presence marks a complete export), into one output
//! directory. The manifest is printed as the last stdout line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use shared::model_manifest::{MANIFEST_FILE, MANIFEST_FORMAT_VERSION};
use shared::{ManifestFile, ModelManifest};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::export_source::ExportSource;
use super::gguf_export::write_model_gguf;
use super::hf_export::{HF_FILES, HfDtype, write_hf_directory};
use super::model_card::{CardFiles, model_card};
use super::quant_preset::QuantPreset;
use super::version_files::{GGUF_FILE, exporter_name, hashed_file, version_id, write_manifest};
use crate::train::trainer::METRICS_FILE;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The model: a `dpo train` output or checkpoint (full weights, or LoRA adapters, merged
    /// into their base), a Hugging Face directory, or a GGUF file (requantized).
    #[arg(long)]
    pub model: PathBuf,
    /// GGUF type mixture, as llama.cpp's presets: q8_0, q4_0, q4_k_m (Q4_K with Q6_K for
    /// the head and some attn_v/ffn_down), f16, f32.
    #[arg(long, value_enum, default_value = "q4_k_m")]
    pub quant: QuantPreset,
    /// Output directory (created; refused when it already holds an export, unless --force).
    #[arg(long, required_unless_present = "publish", conflicts_with = "publish")]
    pub out: Option<PathBuf>,
    /// Write the export as a new version of a `dpo serve` models directory,
    /// `MODELS_DIR/<version>/` (manifest last, so a running server lists it only once it is
    /// complete, without a restart).
    #[arg(long, value_name = "MODELS_DIR")]
    pub publish: Option<PathBuf>,
    /// The model's name (GGUF general.name, card title); default: the output directory's name
    /// (with --publish: the model's file or directory name).
    #[arg(long)]
    pub name: Option<String>,
    /// The version id in manifest.json; default: `<name>-<quant>-<first 8 hex of sha256>`.
    #[arg(long)]
    pub version_id: Option<String>,
    /// The served version this one descends from; default: the version in the manifest.json
    /// beside the starting model, if any.
    #[arg(long)]
    pub parent_version: Option<String>,
    /// License id for the card and GGUF (default: the source's own, if it declares one).
    #[arg(long)]
    pub license: Option<String>,
    /// Write only model.gguf, README.md and manifest.json (no safetensors directory).
    #[arg(long)]
    pub no_hf: bool,
    /// dtype of model.safetensors in the HF directory.
    #[arg(long, value_enum, default_value = "bf16")]
    pub hf_dtype: HfDtype,
    /// Replace an existing export in --out.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let started = Instant::now();
    // With --publish the export is written beside the versions and renamed into place once
    // its id (which names the sha256) is known; the manifest comes after the rename.
    let (mut out, publish_into) = match (&args.out, &args.publish) {
        (Some(out), _) => (out.clone(), None),
        (None, Some(models)) => (
            models.join(format!(".incoming-{}", std::process::id())),
            Some(models.clone()),
        ),
        (None, None) => bail!("give --out DIR or --publish MODELS_DIR"),
    };
    prepare_output_dir(&out, args.force || publish_into.is_some())?;
    tracing::info!("reading {}", args.model.display());
    let mut source = ExportSource::load(&args.model)?;
    if let Some(license) = &args.license {
        source.provenance.license = Some(license.clone());
    }
    let name_from = if publish_into.is_some() {
        std::path::absolute(&args.model)?.with_extension("")
    } else {
        std::path::absolute(&out)?
    };
    let model_name = match &args.name {
        Some(name) => name.clone(),
        None => name_from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("the output has no directory name; give --name")?,
    };

    let gguf = write_model_gguf(&source, args.quant, &model_name, &out.join(GGUF_FILE))?;
    tracing::info!(
        "wrote {} ({} bytes, sha256 {})",
        out.join(GGUF_FILE).display(),
        gguf.file.size,
        gguf.file.sha256
    );
    if !args.no_hf {
        tracing::info!("writing the Hugging Face directory ({:?})", args.hf_dtype);
        write_hf_directory(&source, args.hf_dtype, &out)?;
    }
    let card = model_card(
        &model_name,
        &source.provenance,
        &CardFiles {
            gguf_file: GGUF_FILE,
            quant: args.quant.name(),
            gguf_sha256: &gguf.file.sha256,
            has_hf_weights: !args.no_hf,
        },
    );
    std::fs::write(out.join("README.md"), card)?;

    let gguf_entry = ManifestFile {
        path: GGUF_FILE.into(),
        sha256: gguf.file.sha256.clone(),
        size: gguf.file.size,
    };
    let mut files = vec![gguf_entry.clone()];
    let hf_files: &[&str] = if args.no_hf { &[] } else { &HF_FILES };
    for name in hf_files.iter().copied().chain(["README.md"]) {
        files.push(hashed_file(&out, name)?);
    }
    // The run's training curves travel with the version (the dashboard plots them).
    let metrics = args.model.join(METRICS_FILE);
    if args.model.is_dir() && metrics.is_file() {
        std::fs::copy(&metrics, out.join(METRICS_FILE))
            .with_context(|| format!("copying {}", metrics.display()))?;
        files.push(hashed_file(&out, METRICS_FILE)?);
    }
    let mut version = args.version_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}-{}",
            model_name,
            args.quant.name(),
            &gguf.file.sha256[..8]
        )
    });
    if publish_into.is_some() {
        // It names a directory and a URL path segment.
        version = version_id(&version);
    }
    let manifest = ModelManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        version,
        parent_version: args
            .parent_version
            .clone()
            .or(source.provenance.parent_version.clone()),
        created: OffsetDateTime::now_utc().format(&Rfc3339)?,
        model_name,
        base_model: source.provenance.base_model.clone(),
        architecture: "qwen2".into(),
        quant: args.quant.name().into(),
        gguf: gguf_entry,
        files,
        training: source.provenance.training.clone(),
        exporter: exporter_name(),
    };
    if let Some(models) = &publish_into {
        let version_dir = models.join(&manifest.version);
        if version_dir.exists() {
            let _ = std::fs::remove_dir_all(&out);
            bail!(
                "version `{}` already exists in {}; give another --version-id",
                manifest.version,
                models.display()
            );
        }
        std::fs::rename(&out, &version_dir)
            .with_context(|| format!("moving the export to {}", version_dir.display()))?;
        out = version_dir;
    }
    write_manifest(&out, &manifest)?;
    tracing::info!(
        "exported {} as version {} in {:.1} s",
        args.model.display(),
        manifest.version,
        started.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string(&manifest)?);
    Ok(())
}

/// Creates `dir`; refuses one that already holds an export unless `force`.
fn prepare_output_dir(dir: &Path, force: bool) -> Result<()> {
    let holds_export = dir.join(MANIFEST_FILE).exists() || dir.join(GGUF_FILE).exists();
    if holds_export && !force {
        bail!(
            "{} already holds an export (manifest.json or model.gguf); choose another --out or pass --force",
            dir.display()
        );
    }
    if holds_export {
        // The manifest goes first: an interrupted re-export never looks complete.
        let _ = std::fs::remove_file(dir.join(MANIFEST_FILE));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
