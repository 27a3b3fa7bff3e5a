//! `cargo xtask gpu-engine-bundle [DIR]`: one folder (at most 64 MiB) holding the GPU run of
//! the inference engines side by side (`xtask/scripts/gpu_engine_bench.py`): our release
//! `engine_shapes` benchmark (stripped, xz-compressed), llama.cpp's source trimmed to what
//! `llama-bench` builds from (`xtask/scripts/llama_cpp_source.py`: llama-cpp-python 0.3.36's
//! sdist, sha256-pinned, cached under `target/llama-cpp-source/`, never committed), and the
//! CUDA `dpo` for `dpo bench --engine candle` when `cargo xtask build-cuda --release` has
//! built it. Prints the one command to run there.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::gpu_bundle::{print_command, strip_and_compress};
use crate::{cargo, check, target_dir, workspace_root};

pub fn run(args: &[String]) -> Result<()> {
    let out = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("gpu-engine-bundle"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;

    let bench = engine_shapes_binary()?;
    eprintln!("xtask: compressing the engine_shapes benchmark (xz)");
    strip_and_compress(&bench, &out.join("engine_shapes.xz"))?;

    let scripts = workspace_root().join("xtask/scripts");
    check(
        std::process::Command::new("python3")
            .arg(scripts.join("llama_cpp_source.py"))
            .arg(target_dir().join("llama-cpp-source"))
            .arg(out.join("llama.cpp.tar.xz")),
    )?;

    let cuda_dpo = target_dir().join("cuda").join("release").join("dpo");
    if cuda_dpo.exists() {
        eprintln!("xtask: compressing the CUDA dpo (xz, about a minute)");
        strip_and_compress(&cuda_dpo, &out.join("dpo.xz"))?;
    } else {
        eprintln!(
            "xtask: no {} (`cargo xtask build-cuda --release` builds it): the run leaves candle on CUDA out",
            cuda_dpo.display()
        );
    }
    std::fs::copy(
        scripts.join("gpu_engine_bench.py"),
        out.join("gpu_engine_bench.py"),
    )?;
    print_command(&out, "gpu_engine_bench.py")
}

/// Builds the `engine_shapes` benchmark with the release profile; its executable.
fn engine_shapes_binary() -> Result<PathBuf> {
    let output = cargo()
        .args([
            "bench",
            "--no-run",
            "--package",
            "flywheel-tests",
            "--bench",
            "engine_shapes",
            "--message-format=json",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo bench --no-run")?;
    if !output.status.success() {
        bail!("building the engine_shapes benchmark failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "engine_shapes")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .filter(|path| Path::new(path).exists())
        .context("cargo named no engine_shapes executable")
}
