//! `cargo xtask gpu-bundle [DIR]`: one folder (at most 64 MiB, what travels to the GPU machine
//! in one call) holding the GPU run of `dpo train`: the stripped release CUDA `dpo` (built by
//! `cuda_build`; xz-compressed, 84 MB → 13 MB, as its kernels for one GPU generation are
//! large), the real Qwen2.5 tokenizer as Hugging Face files, the TRL fixture's model
//! config and preference data, the throughput configs (`xtask/gpu-configs/`), the TRL wheel
//! and the pure-Python packages it needs beyond PyTorch, transformers, peft and accelerate, and
//! the script (`xtask/scripts/gpu_run.py`). Prints the one command to run there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cuda_build::CudaBuild;
use crate::{cargo, check, dpo_binary, fetch_model, target_dir, workspace_root};

/// What may travel to the GPU machine in one call.
const MAX_BUNDLE_BYTES: u64 = 64 << 20;

/// TRL and the packages it imports that the GPU machine's PyTorch environment lacks. Binary
/// packages TRL needs through `datasets` (pyarrow, pandas) are too large to travel; the run
/// reports TRL's side as failed when the machine lacks them.
const WHEELS: [&str; 5] = [
    "trl==1.16.0",
    "datasets==5.2.0",
    "dill==0.4.1",
    "multiprocess==0.70.19",
    "xxhash==4.1.0",
];

pub fn run(args: &[String]) -> Result<()> {
    let out = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("gpu-bundle"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;

    let binary = CudaBuild {
        release: true,
        compute_cap: std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into()),
    }
    .run()?;
    eprintln!("xtask: compressing the CUDA dpo (xz, about a minute)");
    strip_and_compress(&binary, &out.join("dpo.xz"))?;

    // The tokenizer, from the real model (the CPU dpo fetches it).
    let model = fetch_model(&dpo_binary()?)?;
    check(
        cargo()
            .args([
                "run",
                "--package",
                "flywheel-tests",
                "--bin",
                "tokenizer_files",
                "--",
            ])
            .arg(&model)
            .arg(out.join("tokenizer")),
    )?;

    let fixtures = workspace_root().join("tests/fixtures");
    let data = out.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::copy(fixtures.join("dpo_trl.json"), data.join("dpo_trl.json"))?;
    std::fs::copy(
        fixtures.join("preferences/uppercase_train.jsonl"),
        data.join("pairs.jsonl"),
    )?;
    copy_dir(
        &workspace_root().join("xtask/gpu-configs"),
        &out.join("configs"),
    )?;
    std::fs::copy(
        workspace_root().join("xtask/scripts/gpu_run.py"),
        out.join("gpu_run.py"),
    )?;
    check(
        Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--dest"])
            .arg(out.join("wheels"))
            .args(WHEELS),
    )?;

    print_command(&out, "gpu_run.py")
}

/// Checks that the bundle `out` fits one call and prints the command that runs `script` in
/// it on the GPU machine.
pub(crate) fn print_command(out: &Path, script: &str) -> Result<()> {
    let size = dir_size(out)?;
    eprintln!(
        "xtask: GPU bundle {} ({:.1} MiB)",
        out.display(),
        size as f64 / (1 << 20) as f64
    );
    if size > MAX_BUNDLE_BYTES {
        bail!("the bundle is {size} bytes, over the {MAX_BUNDLE_BYTES} that travel in one call");
    }
    // The device runs commands in a copy of the workspace, with the folder carried.
    let script = out.join(script);
    let script = script
        .strip_prefix(workspace_root())
        .unwrap_or(&script)
        .display();
    eprintln!("xtask: on the GPU machine, from the workspace root with the folder carried:");
    println!("python3 {script}");
    Ok(())
}

/// `from` stripped of symbols and xz-compressed into `to` (binaries for one GPU generation
/// are large; the script unpacks them).
pub(crate) fn strip_and_compress(from: &Path, to: &Path) -> Result<()> {
    let stripped = to.with_extension("stripped");
    std::fs::copy(from, &stripped)?;
    check(Command::new("strip").arg(&stripped))?;
    xz_compress(&stripped, to)?;
    std::fs::remove_file(&stripped)?;
    Ok(())
}

fn xz_compress(from: &Path, to: &Path) -> Result<()> {
    check(
        Command::new("python3")
            .args([
                "-c",
                "import lzma, shutil, sys\n\
                 with open(sys.argv[1], 'rb') as a, lzma.open(sys.argv[2], 'wb', preset=6) as b:\n\
                 \x20   shutil.copyfileobj(a, b)",
            ])
            .arg(from)
            .arg(to),
    )
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().expect("a file has a name")))?;
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            dir_size(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}
