//! Building the web app's bundle: `web-ui` compiled to wasm32 by cargo, the JS glue generated
//! by `wasm-bindgen` (the CLI at exactly the version the crate pins, which `prerequisites`
//! installs with `cargo install`; nothing is downloaded at build time), and the static files from
//! `web-ui/static/` (index.html, boot.js, app.css) beside them. Prints each file's size and
//! its gzipped size — what a browser downloads from `dpo serve`, which gzips them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{WASM_TARGET, cargo, check, target_dir, workspace_root};

/// The cargo profile of the wasm: optimised for size (every labeller downloads it). The tests
/// run this same bundle, so they check what `cargo xtask run` serves, and CI builds the web
/// app once (a dev build with its opt-level-3 dependencies took three times as long here).
const PROFILE: &str = "web-release";

/// Builds the bundle with the `wasm_bindgen` CLI (see `prerequisites`) and returns its
/// directory.
pub fn build(wasm_bindgen: &Path) -> Result<PathBuf> {
    check(cargo().args([
        "build",
        "--package",
        "web-ui",
        "--target",
        WASM_TARGET,
        "--profile",
        PROFILE,
    ]))?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join(PROFILE)
        .join("web_ui.wasm");
    let out = target_dir().join("web-bundle").join(PROFILE);
    check(
        Command::new(wasm_bindgen)
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(&out)
            .arg(&wasm),
    )?;
    let statics = workspace_root().join("web-ui").join("static");
    for entry in std::fs::read_dir(&statics).with_context(|| format!("{}", statics.display()))? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(
                &path,
                out.join(path.file_name().expect("a file has a name")),
            )
            .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    print_sizes(&out)?;
    Ok(out)
}

/// A table of the bundle's files, raw and gzipped, with the total a browser downloads.
fn print_sizes(dir: &std::path::Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let (mut raw_total, mut gzip_total) = (0, 0);
    eprintln!("xtask: web bundle {}", dir.display());
    eprintln!("  {:<20} {:>12} {:>12}", "file", "bytes", "gzipped");
    for path in files {
        let bytes = std::fs::read(&path)?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&bytes)?;
        let gzipped = encoder.finish()?.len();
        raw_total += bytes.len();
        gzip_total += gzipped;
        eprintln!(
            "  {:<20} {:>12} {:>12}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            bytes.len(),
            gzipped
        );
    }
    eprintln!("  {:<20} {:>12} {:>12}", "total", raw_total, gzip_total);
    Ok(())
}
