//! Helpers for the workspace-level integration tests: where the real model and the `dpo`
//! binary are, tiny generated GGUF files, and a local server with the Hugging Face hub layout.

pub mod breaking_proxy;
pub mod browser_session;
pub mod dpo_server;
pub mod file_mutation;
pub mod headless_chromium;
pub mod http_client;
pub mod hub_server;
pub mod llama_cpp_parity;
pub mod logit_comparison;
pub mod matmul_reference;
pub mod page_server;
pub mod peak_memory;
pub mod postgres_database;
pub mod served_versions;
pub mod shaped_gguf;
pub mod tiny_gguf;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The real Qwen2.5 GGUF the parity tests need. `cargo xtask test` fetches it and sets
/// `DPO_TEST_MODEL`; a missing model is a failure, never a skip.
pub fn real_model() -> PathBuf {
    let path = std::env::var_os("DPO_TEST_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "DPO_TEST_MODEL is not set: run the tests with `cargo xtask test`, which fetches the \
             real model, or set DPO_TEST_MODEL to the path `dpo fetch` printed"
        )
    });
    assert!(
        path.is_file(),
        "DPO_TEST_MODEL={} does not exist: run `dpo fetch` (or `cargo xtask test`)",
        path.display()
    );
    path
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = workspace_root().join("tests").join("fixtures").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad fixture {}: {e}", path.display()))
}

/// The `dpo` binary: `$DPO_BIN` when set (xtask sets it), else built once with cargo.
pub fn dpo_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("DPO_BIN") {
                return PathBuf::from(path);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(workspace_root())
                .args([
                    "build",
                    "--quiet",
                    "--package",
                    "native-trainer",
                    "--bin",
                    "dpo",
                ])
                .status()
                .expect("running cargo build for dpo");
            assert!(status.success(), "building dpo failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("debug").join("dpo")
        })
        .clone()
}

/// A `dpo` command with a clean environment for the variables it reads.
pub fn dpo() -> Command {
    let mut command = Command::new(dpo_binary());
    for var in ["DPO_MODELS_DIR", "HF_ENDPOINT", "HF_TOKEN", "RUST_LOG"] {
        command.env_remove(var);
    }
    command
}

/// Runs `dpo ARGS` with `(flag, path)` pairs appended.
pub fn run_dpo(args: &[&str], paths: &[(&str, &Path)]) -> std::process::Output {
    let mut command = dpo();
    command.args(args);
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    command.output().unwrap()
}

/// stdout and stderr of a `dpo` run that must have succeeded (`what` names it on failure).
pub fn succeed(output: std::process::Output, what: &str) -> (String, String) {
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{what} failed:\n{stderr}");
    (stdout, stderr)
}

/// The web app's wasm bundle (`web_ui.js` + `web_ui_bg.wasm` from wasm-bindgen):
/// `$DPO_WEB_BUNDLE` (xtask builds it and sets it); a missing bundle is a failure.
pub fn web_bundle() -> PathBuf {
    let dir = std::env::var_os("DPO_WEB_BUNDLE").map(PathBuf::from).unwrap_or_else(|| {
        panic!("DPO_WEB_BUNDLE is not set: run the tests with `cargo xtask test`, which builds the wasm bundle")
    });
    assert!(
        dir.join("web_ui_bg.wasm").is_file(),
        "DPO_WEB_BUNDLE={} holds no web_ui_bg.wasm",
        dir.display()
    );
    dir
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The largest absolute element-wise difference of two tensors of one shape.
pub fn max_abs_difference(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_dtype(candle_core::DType::F32))
        .and_then(|d| d.to_scalar())
        .expect("tensors of one shape")
}

/// A tiny training-model config (61 tokens, width 32, 2 layers, grouped-query attention),
/// with or without the output head tied to the embedding.
pub fn tiny_qwen2_config(tie_word_embeddings: bool) -> native_trainer::train::Qwen2Config {
    native_trainer::train::Qwen2Config {
        vocab_size: 61,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings,
        max_position_embeddings: 64,
    }
}
