//! The HTTP API against its own OpenAPI document (`GET /api/openapi.json`), fuzzed by
//! schemathesis — an independent tool — against a real `dpo serve` on SQLite and on
//! PostgreSQL, the tiny model served as `v1`: every operation, every built-in check (no 5xx,
//! every status code and header documented, every body valid against its schema, schema-invalid
//! requests refused, the admin token enforced), plus `RefusedPairsStoreNothing` from
//! `tests/api_contract/`: a refused pair stores nothing. Its summary is printed as it runs.

use std::path::PathBuf;
use std::process::Command;

use flywheel_tests::dpo_server::DpoServer;
use flywheel_tests::postgres_database::fresh_postgres_database;
use flywheel_tests::served_versions::export_tiny_version;
use flywheel_tests::workspace_root;

const ADMIN_TOKEN: &str = "contract-admin-token";

/// schemathesis from the test Python environment `cargo xtask test` makes.
fn schemathesis() -> PathBuf {
    let python = std::env::var_os("DPO_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "DPO_TEST_PYTHON is not set: run the tests with `cargo xtask test`, which makes a \
             Python environment with schemathesis"
        )
    });
    PathBuf::from(python).with_file_name("schemathesis")
}

/// Runs schemathesis against a fresh server on `db`; panics naming `db` if it finds anything.
fn schemathesis_finds_nothing_against(db: &str) {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    export_tiny_version(&models, "v1", "q8_0", None);
    let manifest: shared::ModelManifest = serde_json::from_str(
        &std::fs::read_to_string(models.join("v1").join("manifest.json")).unwrap(),
    )
    .unwrap();
    let server = DpoServer::start(
        db,
        &models,
        &[
            "--admin-token",
            ADMIN_TOKEN,
            "--annotator-rate",
            "0",
            "--ip-rate",
            "0",
        ],
    );
    let contract = workspace_root().join("tests").join("api_contract");
    println!("schemathesis against dpo serve on {db}");
    // Run in the temporary directory: hypothesis keeps its database in the working one.
    let status = Command::new(schemathesis())
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(contract.join("schemathesis.toml"))
        .env(
            "SCHEMATHESIS_HOOKS",
            contract.join("refused_requests_store_nothing.py"),
        )
        .env("DPO_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DPO_SERVED_VERSION", &manifest.version)
        .env("DPO_SERVED_FILE", &manifest.gguf.path)
        .env("NO_COLOR", "1")
        .args(["run", &server.url("/api/openapi.json")])
        .arg("--report-dir")
        .arg(dir.path().join("report"))
        .status()
        .expect("schemathesis runs");
    assert!(
        status.success(),
        "schemathesis found the API and its document disagreeing on {db} (its report is above)"
    );
}

/// One after the other, so that the two reports do not interleave in the log.
#[test]
fn schemathesis_finds_nothing_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("pairs.sqlite").display());
    schemathesis_finds_nothing_against(&sqlite);
    schemathesis_finds_nothing_against(&fresh_postgres_database());
}
