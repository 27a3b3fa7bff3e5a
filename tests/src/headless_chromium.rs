//! Real headless Chromium for browser tests, with WebGPU on its CPU adapter (SwiftShader):
//! the flags DEVELOPERS.md lists, a fresh profile per run, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct HeadlessChromium {
    child: Child,
    _profile: tempfile::TempDir,
}

/// The Chromium binary: `$CHROMIUM` when set, else `chromium` on PATH (Debian's package;
/// `.ci/run` installs it).
pub fn chromium_binary() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"))
}

impl HeadlessChromium {
    /// Opens `url`; `webgpu: false` leaves WebGPU off (the page must then explain that).
    pub fn open(url: &str, webgpu: bool) -> Self {
        Self::launch(url, webgpu, &[])
    }

    /// Opens `url` with `extra` flags besides the usual ones.
    pub fn launch(url: &str, webgpu: bool, extra: &[&str]) -> Self {
        let profile = tempfile::tempdir().expect("temporary Chromium profile");
        let mut command = Command::new(chromium_binary());
        command.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ]);
        if webgpu {
            command.args(["--enable-unsafe-webgpu", "--enable-features=Vulkan"]);
        } else {
            command.arg("--disable-features=WebGPU");
        }
        command
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): install Debian's `chromium` (`.ci/run` does) or set CHROMIUM",
                chromium_binary().display()
            )
        });
        Self {
            child,
            _profile: profile,
        }
    }
}

impl HeadlessChromium {
    /// The fresh profile directory this browser runs with.
    pub fn profile_dir(&self) -> &std::path::Path {
        self._profile.path()
    }
}

impl Drop for HeadlessChromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
