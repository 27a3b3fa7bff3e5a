//! Build orchestration for the workspace (`cargo xtask <command>`).
//!
//! - `run [SERVE ARGS…]`: build `dpo` and the web app, fetch the default model, publish it as
//!   the first model version, and serve app, model and pair API with `dpo serve` on
//!   127.0.0.1:8080 (`-- --addr …` and other `dpo serve` flags can follow).
//! - `chat [CHAT ARGS…]`: fetch the default model and chat with it in the terminal.
//! - `web-bundle`: the size-optimised web app bundle, with a table of its sizes.
//! - `bench [--model PATH] [--prompt-tokens N] [--decode-tokens N]`: prefill and decode
//!   tok/s of every engine on the real model, as a table.
//! - `bench-train`: DPO step time of `dpo train` and of TRL (through Python) on the same
//!   models and data, as a table.
//! - `bench-train-memory [FLAGS]`: peak memory and s/step of one LoRA DPO step of `dpo train`
//!   beside TRL at 256 to 2,048 tokens, with and without gradient checkpointing, and where
//!   our peak goes (`bench_train_memory.rs`).
//! - `bench-export`: KL divergence and top-1 agreement of every `dpo export` preset against
//!   the f32 model (and llama.cpp's own Q4_K_M, through Python), and export times for
//!   Qwen2.5-1.5B's shapes (`native-trainer/benches/export_quality.rs`).
//! - `bench-browser`: the web app's load time, time to first token and decode tok/s in
//!   headless Chromium with the real model, and our CPU engine beside wllama (fetched from
//!   the npm registry), one thread each, in the same run.
//! - `bench-serve`: durable pair submissions per second and p50/p99 latency through
//!   `dpo serve` at 64 concurrent clients (`native-trainer/benches/serve_throughput.rs`).
//! - `bench-flywheel`: `dpo serve` and `dpo flywheel` on the real model, voted on through the
//!   API by scripted labellers (concise, random): per round the votes, training time,
//!   held-out preference against the parent, ratings and the promotion decision
//!   (`native-trainer/benches/flywheel.rs`).
//! - `build-cuda [--release] [--compute-cap N]`: `dpo` with `--features cuda`, on a machine
//!   without a GPU or CUDA toolkit (CUDA 13.0's compiler from PyPI; `cuda_build.rs`).
//! - `gpu-bundle [DIR]`: the folder and the one command for a GPU run of `dpo train` beside TRL
//!   (`gpu_bundle.rs`).
//! - `gpu-engine-bundle [DIR]`: the folder and the one command for a GPU run of our wgpu engine
//!   beside llama.cpp, transformers and candle (`gpu_engine_bundle.rs`).
//! - `test`: build `dpo`, fetch the real test model (a failure to get it fails the run),
//!   make a Python with llama.cpp's `gguf` reader, start a private PostgreSQL server on
//!   loopback, build `shared` and the web app's wasm bundle, then run every workspace test
//!   (the browser tests load the bundle into headless Chromium).

mod bench;
mod bench_train;
mod bench_train_memory;
mod cuda_build;
mod gpu_bundle;
mod gpu_engine_bundle;
#[cfg(test)]
mod import_cycles;
mod prerequisites;
mod test_summary;
mod web_bundle;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use prerequisites::Job;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Errors are one readable line (with their causes), no backtrace unless `RUST_BACKTRACE`
/// asks for one.
fn main() -> std::process::ExitCode {
    match run_command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                eprintln!("{}", error.backtrace());
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "run" => run(&rest),
        "chat" => chat(&rest),
        "web-bundle" => {
            let wasm_bindgen = prerequisites::ensure(Job::Run)?;
            web_bundle::build(&wasm_bindgen).map(drop)
        }
        "test" => test(&rest),
        "bench" => bench::run(&rest),
        "bench-train" => bench_train::run(&rest),
        "bench-train-memory" => bench_train_memory::run(&rest),
        "bench-export" => bench_on_real_model("export_quality", "DPO_TEST_MODEL"),
        "bench-browser" => bench_browser(),
        "bench-flywheel" => bench_on_real_model("flywheel", "DPO_BENCH_MODEL"),
        "build-cuda" => {
            let binary = cuda_build::CudaBuild::from_args(&rest)?.run()?;
            println!("{}", binary.display());
            Ok(())
        }
        "gpu-bundle" => gpu_bundle::run(&rest),
        "gpu-engine-bundle" => gpu_engine_bundle::run(&rest),
        "bench-serve" => check(cargo().args([
            "bench",
            "--package",
            "native-trainer",
            "--bench",
            "serve_throughput",
        ])),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 run [SERVE ARGS…]  publish the default model, build the web app and serve both (chat and label in the browser)\n  \
                 chat [CHAT ARGS…]  fetch the default model and chat with it in the terminal\n  \
                 web-bundle         build the web app for serving (size-optimised) and print its sizes\n  \
                 test [TEST ARGS…]  fetch the test model and run every test (extra args go to cargo test)\n  \
                 bench [FLAGS]      prefill / decode tok/s of every engine on the real model\n  \
                 bench-train        DPO step time of `dpo train` beside TRL on the CPU\n  \
                 bench-train-memory peak memory and s/step of one DPO step beside TRL, 256-2,048 tokens\n  \
                 bench-export       quantization error and export time of every `dpo export` preset\n  \
                 bench-browser      load time, first token and decode tok/s of the web app in headless Chromium\n  \
                 bench-serve        pairs/s and latency of `dpo serve` at 64 concurrent clients\n  \
                 bench-flywheel     `dpo serve` + `dpo flywheel` on the real model with scripted labellers, round by round\n  \
                 build-cuda [FLAGS] dpo with --features cuda, without a GPU (--release, --compute-cap N)\n  \
                 gpu-bundle [DIR]   the folder and command for one GPU run of dpo train beside TRL\n  \
                 gpu-engine-bundle [DIR]  the folder and command for one GPU run of the engines beside llama.cpp"
            );
            bail!("unknown command `{command}`")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn check(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("spawning {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn dpo_binary() -> Result<PathBuf> {
    check(cargo().args(["build", "--package", "native-trainer", "--bin", "dpo"]))?;
    Ok(target_dir().join("debug").join("dpo"))
}

/// The optimised `dpo`, for benchmarks.
fn release_dpo_binary() -> Result<PathBuf> {
    check(cargo().args([
        "build",
        "--release",
        "--package",
        "native-trainer",
        "--bin",
        "dpo",
    ]))?;
    Ok(target_dir().join("release").join("dpo"))
}

/// Runs `dpo fetch` and returns the model path it printed last.
fn fetch_model(dpo: &Path) -> Result<PathBuf> {
    eprintln!("xtask: fetching the default model with `dpo fetch`");
    let output = Command::new(dpo)
        .arg("fetch")
        .stderr(Stdio::inherit())
        .output()
        .context("running dpo fetch")?;
    if !output.status.success() {
        bail!(
            "`dpo fetch` failed ({}): the real model is required; see its error above",
            output.status
        );
    }
    let stdout = String::from_utf8(output.stdout).context("dpo fetch printed non-UTF-8")?;
    let path = stdout
        .lines()
        .last()
        .context("dpo fetch printed no model path")?;
    Ok(PathBuf::from(path))
}

/// A private PostgreSQL server on loopback for the pair-store tests: a fresh cluster in a
/// temporary directory, trust authentication for the `dpo` role, stopped after the tests.
/// PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
struct TestPostgres {
    url: String,
    bin: PathBuf,
    dir: PathBuf,
    as_postgres_user: bool,
}

impl TestPostgres {
    fn start() -> Result<Self> {
        let bin = prerequisites::postgres_bin_dir().context(
            "no PostgreSQL server binaries under /usr/lib/postgresql: the store tests need \
                 a real server (`apt-get install postgresql`)",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("dpo-test-postgres-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if is_root {
            check(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
            )?;
        }
        let server = Self {
            url: format!("postgres://dpo@127.0.0.1:{port}/postgres"),
            bin,
            dir,
            as_postgres_user: is_root,
        };
        let data = server.dir.join("data");
        eprintln!("xtask: starting a test PostgreSQL server on 127.0.0.1:{port}");
        check(
            server
                .command("initdb")
                .args(["-U", "dpo", "-A", "trust", "--no-sync", "-D"])
                .arg(&data)
                .stdout(Stdio::null()),
        )?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            server.dir.display()
        );
        check(
            server
                .command("pg_ctl")
                .args(["-w", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(server.dir.join("server.log"))
                .args(["-o", &options, "start"])
                .stdout(Stdio::null()),
        )?;
        Ok(server)
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "fast", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cargo bench --bench BENCH` of native-trainer with the fetched real model's path in
/// `model_env`: export quality (`export_quality`; `PYTHON` with llama-cpp-python adds
/// llama.cpp's Q4_K_M row), or `dpo serve` and `dpo flywheel` voted on by scripted labellers
/// through the API (`flywheel`; `DPO_BENCH_VOTES`, `DPO_BENCH_ROUNDS`,
/// `DPO_BENCH_MAX_TOKENS` and `DPO_BENCH_THREADS` pass through).
fn bench_on_real_model(bench: &str, model_env: &str) -> Result<()> {
    let model = fetch_model(&release_dpo_binary()?)?;
    check(
        cargo()
            .args(["bench", "--package", "native-trainer", "--bench", bench])
            .env(model_env, &model),
    )
}

/// The web app in headless Chromium with the real model: load, first token, decode tok/s
/// (`tests/src/bin/bench_browser.rs`), on the size-optimised bundle `run` serves.
fn bench_browser() -> Result<()> {
    let wasm_bindgen = prerequisites::ensure(Job::Test)?;
    let dpo = dpo_binary()?;
    let model = fetch_model(&dpo)?;
    let bundle = web_bundle::build(&wasm_bindgen)?;
    let wllama = wllama_package()?;
    check(
        cargo()
            .args([
                "run",
                "--package",
                "flywheel-tests",
                "--bin",
                "bench_browser",
            ])
            .env("DPO_TEST_MODEL", &model)
            .env("DPO_BIN", &dpo)
            .env("DPO_WEB_BUNDLE", &bundle)
            .env("WLLAMA_DIR", &wllama),
    )
}

/// `@wllama/wllama` (llama.cpp compiled to wasm), the browser benchmark's anchor: its package
/// folder, fetched once from the npm registry into target/.
fn wllama_package() -> Result<PathBuf> {
    const PACKAGE: &str = "@wllama/wllama@3.8.1";
    let dir = target_dir().join("wllama");
    let package = dir.join("package");
    if package.join("esm/wasm/wllama.wasm").exists() {
        return Ok(package);
    }
    std::fs::create_dir_all(&dir)?;
    check(
        Command::new("npm")
            .args(["pack", PACKAGE, "--pack-destination"])
            .arg(&dir),
    )?;
    check(
        Command::new("tar")
            .arg("xzf")
            .arg(dir.join("wllama-wllama-3.8.1.tgz"))
            .arg("-C")
            .arg(&dir),
    )?;
    Ok(package)
}

/// The Python packages the tests run: llama.cpp's own GGUF reader (to check our exports with
/// it) and schemathesis (to fuzz `dpo serve` against its OpenAPI document), pinned.
const TEST_PYTHON_PACKAGES: [(&str, &str); 2] = [("gguf", "0.19.0"), ("schemathesis", "4.32.5")];

/// A Python with [`TEST_PYTHON_PACKAGES`] for the tests: a virtual environment under target/,
/// made once (and brought up to date when a pin changes).
fn test_python() -> Result<PathBuf> {
    let venv = target_dir().join("test-python");
    let python = venv.join("bin").join("python");
    let has_all = |python: &Path| {
        TEST_PYTHON_PACKAGES.iter().all(|(name, version)| {
            Command::new(python)
                .args(["-m", "pip", "show", name])
                .output()
                .is_ok_and(|o| {
                    o.status.success()
                        && String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .any(|line| line == format!("Version: {version}"))
                })
        })
    };
    if !has_all(&python) {
        let pins: Vec<String> = TEST_PYTHON_PACKAGES
            .iter()
            .map(|(name, version)| format!("{name}=={version}"))
            .collect();
        eprintln!(
            "xtask: installing {} into {}",
            pins.join(" "),
            venv.display()
        );
        if !python.exists() {
            check(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        check(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(&pins),
        )?;
        if !has_all(&python) {
            bail!(
                "{} lacks {} after installing them",
                python.display(),
                pins.join(" ")
            );
        }
    }
    Ok(python)
}

/// The main job: the default model published as the first version, the web app built, and
/// both served by `dpo serve` on loopback (it prints the URL to open).
fn run(serve_args: &[String]) -> Result<()> {
    // `cargo xtask run -- --addr …` hands the `--` through.
    let serve_args = serve_args
        .strip_prefix(&["--".to_string()])
        .unwrap_or(serve_args);
    let wasm_bindgen = prerequisites::ensure(Job::Run)?;
    let dpo = dpo_binary()?;
    let model = fetch_model(&dpo)?;
    let bundle = web_bundle::build(&wasm_bindgen)?;
    let serve_dir = target_dir().join("serve");
    let models = serve_dir.join("models");
    check(
        Command::new(&dpo)
            .arg("publish")
            .arg("--model")
            .arg(&model)
            .arg("--models-dir")
            .arg(&models)
            .stdout(Stdio::null()),
    )?;
    eprintln!(
        "xtask: open the URL below in a browser with WebGPU to chat and label; votes go to {} (Ctrl+C stops)",
        serve_dir.join("pairs.sqlite").display()
    );
    check(
        Command::new(&dpo)
            .arg("serve")
            .arg("--db")
            .arg(format!(
                "sqlite:{}",
                serve_dir.join("pairs.sqlite").display()
            ))
            .arg("--models-dir")
            .arg(&models)
            .arg("--web-dir")
            .arg(&bundle)
            .args(serve_args),
    )
}

/// `dpo chat` with the default model, in the terminal.
fn chat(chat_args: &[String]) -> Result<()> {
    let dpo = dpo_binary()?;
    let model = fetch_model(&dpo)?;
    check(
        Command::new(&dpo)
            .arg("chat")
            .arg("--model")
            .arg(&model)
            .args(chat_args),
    )
}

fn test(test_args: &[String]) -> Result<()> {
    let wasm_bindgen = prerequisites::ensure(Job::Test)?;
    let dpo = dpo_binary()?;
    let model = fetch_model(&dpo)?;
    let python = test_python()?;
    let postgres = TestPostgres::start()?;
    let bundle = web_bundle::build(&wasm_bindgen)?;
    // Default members: every crate but the wasm-only web-ui, which was built above.
    let mut command = cargo();
    command
        .args(["test", "--no-fail-fast"])
        .args(test_args)
        .env("DPO_TEST_MODEL", &model)
        .env("DPO_BIN", &dpo)
        .env("DPO_WEB_BUNDLE", &bundle)
        .env("DPO_TEST_PYTHON", &python)
        .env("DPO_TEST_POSTGRES_URL", &postgres.url);
    let result = test_summary::run_tests_with_summary(&mut command);
    postgres.stop();
    result
}
