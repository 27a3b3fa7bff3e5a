//! `cargo xtask build-cuda [--release] [--compute-cap N]`: the CUDA build of `dpo` on a
//! machine without a GPU or a CUDA toolkit. CUDA 13.0's compiler comes from PyPI (pinned
//! wheels installed once into `target/cuda-toolchain/`); candle's kernels are compiled with it
//! for one compute capability (90, the H100/H200, unless told). The libraries the binary links
//! at build time — the NVIDIA driver's `libcuda`, cuBLAS, cuBLASLt, cuRAND and NVRTC — are
//! stood in for by stub libraries made here from the symbols the build references, under the
//! real libraries' sonames: the binary names `libcuda.so.1`, `libcublas.so.13`, … and loads
//! the real ones on a GPU machine (driver 580 / CUDA 13.0 or newer). Nothing that runs loads a
//! stub: each is a file with the link-time name only (`libcublas.so`), which the dynamic
//! loader never looks for (it asks for the soname, `libcublas.so.13`), in the toolchain's
//! `lib/` (the one directory cudarc's build script gives the linker), and the binary is
//! checked to carry no search path into the toolchain. Prints the binary's path as the last
//! stdout line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, check, target_dir};

/// The CUDA 13.0 compiler as PyPI ships it (nvcc, its front ends, headers, the runtime).
const CUDA_WHEELS: [&str; 5] = [
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-runtime==13.0.88",
    "nvidia-cuda-cccl==13.0.85",
];

/// A library linked at build time and not in those wheels: the stub's file, the real
/// library's soname, and how its symbols are named.
type StubbedLibrary = (&'static str, &'static str, fn(&str) -> bool);

const STUBBED: [StubbedLibrary; 5] = [
    ("libcuda.so", "libcuda.so.1", |s| {
        s.starts_with("cu") && s[2..].starts_with(|c: char| c.is_ascii_uppercase())
    }),
    ("libnvrtc.so", "libnvrtc.so.13", |s| s.starts_with("nvrtc")),
    ("libcurand.so", "libcurand.so.10", |s| {
        s.starts_with("curand")
    }),
    ("libcublasLt.so", "libcublasLt.so.13", |s| {
        s.starts_with("cublasLt")
    }),
    ("libcublas.so", "libcublas.so.13", |s| {
        s.starts_with("cublas") && !s.starts_with("cublasLt")
    }),
];

pub struct CudaBuild {
    pub release: bool,
    pub compute_cap: String,
}

impl CudaBuild {
    pub fn from_args(args: &[String]) -> Result<Self> {
        let mut build = Self {
            release: false,
            compute_cap: "90".into(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--release" => build.release = true,
                "--compute-cap" => {
                    build.compute_cap = args
                        .next()
                        .context("--compute-cap needs a value, e.g. 90 (H100/H200) or 89 (L4)")?
                        .clone();
                }
                other => {
                    bail!("build-cuda: unknown argument `{other}` (--release, --compute-cap N)")
                }
            }
        }
        if !build.compute_cap.chars().all(|c| c.is_ascii_digit()) {
            bail!(
                "--compute-cap must be digits such as 90 or 86, got `{}`",
                build.compute_cap
            );
        }
        Ok(build)
    }

    /// Builds the CUDA `dpo` and returns its path.
    pub fn run(&self) -> Result<PathBuf> {
        let cuda_root = install_toolchain()?;
        let stubs = cuda_root.join("lib");
        let profile = if self.release { "release" } else { "debug" };
        // The library first: compiling it needs no link, and tells which symbols the stubs need.
        check(&mut self.cargo_build(&cuda_root, &["--lib"]))?;
        write_stubs(&target_dir().join(profile).join("deps"), &stubs)?;
        check(&mut self.cargo_build(&cuda_root, &["--bin", "dpo"]))?;
        let built = target_dir().join(profile).join("dpo");
        check_links(&built, &target_dir().join("cuda-toolchain"))?;
        // Kept apart: the next plain build of `dpo` writes the same path.
        let binary = target_dir().join("cuda").join(profile).join("dpo");
        std::fs::create_dir_all(binary.parent().expect("a file has a folder"))?;
        std::fs::copy(&built, &binary)
            .with_context(|| format!("copying {} to {}", built.display(), binary.display()))?;
        Ok(binary)
    }

    fn cargo_build(&self, cuda_root: &Path, what: &[&str]) -> Command {
        let bin = cuda_root.join("bin");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin.clone()];
        paths.extend(std::env::split_paths(&path));
        let mut command = cargo();
        command
            .args(["build", "--package", "native-trainer", "--features", "cuda"])
            .args(what)
            .env("PATH", std::env::join_paths(paths).expect("paths join"))
            .env("NVCC", bin.join("nvcc"))
            .env("CUDA_ROOT", cuda_root)
            .env("CUDA_PATH", cuda_root)
            .env("CUDA_HOME", cuda_root)
            .env("CUDA_COMPUTE_CAP", &self.compute_cap)
            .env("CUDARC_CUDA_VERSION", "13000");
        if self.release {
            command.arg("--release");
        }
        command
    }
}

/// The pinned compiler wheels in a private virtual environment (made once); returns the
/// CUDA root they form (`…/site-packages/nvidia/cu13`: `bin/nvcc`, `include/`, `lib/`).
fn install_toolchain() -> Result<PathBuf> {
    let venv = target_dir().join("cuda-toolchain");
    let python = venv.join("bin").join("python");
    let find_root = || -> Option<PathBuf> {
        let lib = std::fs::read_dir(venv.join("lib")).ok()?;
        lib.filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages/nvidia/cu13"))
            .find(|root| root.join("bin/nvcc").is_file() && root.join("include/cuda.h").is_file())
    };
    if find_root().is_none() {
        eprintln!(
            "xtask: installing CUDA 13.0's compiler from PyPI into {} (about 100 MB, once)",
            venv.display()
        );
        check(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        check(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--no-deps"])
                .args(CUDA_WHEELS),
        )?;
    }
    let root = find_root().with_context(|| {
        format!(
            "no nvcc under {} after installing {}",
            venv.display(),
            CUDA_WHEELS.join(" ")
        )
    })?;
    // `-lcudart` needs the unversioned name; the wheel ships only the soname.
    let cudart = root.join("lib/libcudart.so");
    if !cudart.exists() {
        std::os::unix::fs::symlink("libcudart.so.13", &cudart)
            .with_context(|| format!("linking {}", cudart.display()))?;
    }
    let output = Command::new(root.join("bin/nvcc"))
        .arg("--version")
        .output()
        .context("running nvcc --version")?;
    let version = String::from_utf8_lossy(&output.stdout);
    if !version.contains("release 13.0") {
        bail!(
            "{} is not CUDA 13.0: {version}",
            root.join("bin/nvcc").display()
        );
    }
    Ok(root)
}

/// Every undefined symbol of the rlibs in `deps` that one of the stubbed libraries defines,
/// written as `stubs/<library>` with the real soname (their sources beside the toolchain).
fn write_stubs(deps: &Path, stubs: &Path) -> Result<()> {
    let mut symbols = BTreeSet::new();
    for entry in std::fs::read_dir(deps).with_context(|| format!("reading {}", deps.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "rlib") {
            continue;
        }
        let output = Command::new("nm")
            .args(["--undefined-only", "--format=posix", "--no-sort"])
            .arg(&path)
            .output()
            .context("running nm (binutils) on the build's libraries")?;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some(symbol) = line.split_whitespace().next()
                && STUBBED.iter().any(|(_, _, owns)| owns(symbol))
            {
                symbols.insert(symbol.to_string());
            }
        }
    }
    let sources = target_dir().join("cuda-toolchain").join("stub-sources");
    std::fs::create_dir_all(&sources)?;
    for (file, soname, owns) in STUBBED {
        let owned: Vec<&String> = symbols.iter().filter(|s| owns(s)).collect();
        let source = sources.join(format!("{file}.c"));
        let mut text = format!(
            "/* Link-time stand-in for {soname}: the symbols `dpo` references, never run. */\n"
        );
        for symbol in &owned {
            text.push_str(&format!("void {symbol}(void) {{}}\n"));
        }
        std::fs::write(&source, text)?;
        check(
            Command::new("cc")
                .args(["-shared", "-fPIC", "-o"])
                .arg(stubs.join(file))
                .arg(format!("-Wl,-soname,{soname}"))
                .arg(&source),
        )?;
        eprintln!("xtask: stub {file} ({soname}): {} symbols", owned.len());
    }
    Ok(())
}

/// The binary names the real libraries and carries no search path into the toolchain.
fn check_links(binary: &Path, toolchain: &Path) -> Result<()> {
    let output = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .context("running readelf (binutils)")?;
    let dynamic = String::from_utf8_lossy(&output.stdout);
    for needed in ["libcuda.so.1", "libcublas.so.13"] {
        if !dynamic.contains(&format!("[{needed}]")) {
            bail!("{} does not link {needed}:\n{dynamic}", binary.display());
        }
    }
    let toolchain = toolchain.display().to_string();
    if dynamic
        .lines()
        .any(|l| (l.contains("RPATH") || l.contains("RUNPATH")) && l.contains(&toolchain))
    {
        bail!(
            "{} would search the stub libraries at run time",
            binary.display()
        );
    }
    eprintln!(
        "xtask: {} links {}",
        binary.display(),
        dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.strip_suffix(']'))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
