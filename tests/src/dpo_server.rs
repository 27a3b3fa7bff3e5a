//! A real `dpo serve` process for tests: started on a free loopback port (it prints its
//! address first), with requests over real HTTP, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use crate::dpo;
use crate::http_client::{HttpResponse, request};

pub struct DpoServer {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl DpoServer {
    /// `dpo serve --db DB --models-dir MODELS --addr 127.0.0.1:0 EXTRA…`.
    pub fn start(db: &str, models: &Path, extra: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", db, models, extra)
    }

    /// The same on `address` (a restart on the port an earlier server had).
    pub fn start_on(address: &str, db: &str, models: &Path, extra: &[&str]) -> Self {
        let mut child = dpo()
            .arg("serve")
            .arg("--db")
            .arg(db)
            .arg("--models-dir")
            .arg(models)
            .args(["--addr", address])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("first stdout line is not the address: {line:?}"))
            .to_string();
        Self { child, address }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn post_pair(&self, body: &[u8]) -> HttpResponse {
        request(
            &self.address,
            "POST",
            "/api/pairs",
            &[("Content-Type", "application/json")],
            body,
        )
        .unwrap()
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        request(&self.address, "GET", path, headers, b"").unwrap()
    }
}

impl Drop for DpoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
