//! Downloading a GGUF file from the Hugging Face hub's HTTP layout:
//! `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` gives each file's LFS sha256
//! and size; `GET {endpoint}/{repo}/resolve/{rev}/{file}` gives the bytes (after redirects).
//! `HF_ENDPOINT` overrides the endpoint and `HF_TOKEN` authenticates, as with huggingface_hub.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Deserialize;

use super::verified_file::{Expected, PartialFile};
use crate::default_models::HubModel;

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Why the hub path did not produce a model.
#[derive(Debug)]
pub enum HubError {
    /// Could not talk to the hub, or it does not have the file: a fallback is appropriate.
    Unreachable(String),
    /// The hub answered but the download is wrong (or the disk failed): stop and report.
    Failed(anyhow::Error),
}

/// The hub endpoint: `$HF_ENDPOINT` or huggingface.co.
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
        .trim_end_matches('/')
        .to_string()
}

#[derive(Deserialize)]
struct RepoInfo {
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    sha256: String,
    size: u64,
}

/// Downloads `model` into `dir`; `timeout` bounds how long we wait for the hub to answer.
pub fn fetch(
    endpoint: &str,
    model: &HubModel,
    dir: &Path,
    timeout: Duration,
) -> Result<PathBuf, HubError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("dpo/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let get = |url: &str| {
        let request = agent.get(url);
        match &token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    };

    let info_url = format!(
        "{endpoint}/api/models/{}/revision/{}?blobs=true",
        model.repo, model.revision
    );
    tracing::debug!("GET {info_url}");
    let mut response = get(&info_url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
        .map_err(|e| HubError::Unreachable(format!("{info_url}: {e}")))?;
    let info: RepoInfo = response
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_json()
        .map_err(|e| HubError::Unreachable(format!("{info_url}: unexpected answer: {e}")))?;
    let sibling = info
        .siblings
        .iter()
        .find(|s| s.rfilename == model.file)
        .ok_or_else(|| {
            HubError::Unreachable(format!("{} has no file {}", model.repo, model.file))
        })?;
    let expected = match &sibling.lfs {
        Some(lfs) => Expected {
            size: lfs.size,
            sha256: lfs.sha256.to_ascii_lowercase(),
        },
        None => {
            return Err(HubError::Failed(anyhow!(
                "{}/{} has no LFS sha256 (size {:?}); refusing an unverifiable download",
                model.repo,
                model.file,
                sibling.size
            )));
        }
    };

    let file_url = format!(
        "{endpoint}/{}/resolve/{}/{}",
        model.repo, model.revision, model.file
    );
    tracing::info!("downloading {file_url} ({} bytes)", expected.size);
    let response = get(&file_url)
        .call()
        .map_err(|e| HubError::Unreachable(format!("{file_url}: {e}")))?;
    let final_path = dir.join(model.file);
    let result = (|| {
        let mut partial = PartialFile::create(&final_path, expected.size, model.file)?;
        let mut reader = response.into_body().into_reader();
        partial.copy_from(&mut reader)?;
        partial.finish(&expected)
    })();
    result
        .with_context(|| format!("downloading {file_url}"))
        .map_err(HubError::Failed)
}
