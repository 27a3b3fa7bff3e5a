//! `dpo chat` as a user runs it: the model card's quick start answers on stdout only (logs on
//! stderr) with either engine, an interactive chat remembers earlier turns, and bad input is a
//! clear error.

use std::io::Write;
use std::process::Stdio;

use flywheel_tests::{dpo, real_model};

#[test]
fn answers_the_capital_of_france_with_paris_on_stdout_only() {
    assert_answers_paris("candle");
}

#[test]
fn the_wgpu_engine_answers_paris_too() {
    assert_answers_paris("wgpu");
}

#[test]
fn the_cpu_engine_answers_paris_on_two_threads() {
    let stderr = assert_answers_paris_with(&["--engine", "cpu", "--threads", "2"]);
    assert!(stderr.contains("2 threads"), "{stderr}");
}

/// Without `--engine`, `dpo chat` says which engine it picked and why; on a machine whose only
/// GPU adapter is a software one (lavapipe here) or that has none, that is the CPU engine on
/// the physical cores.
#[test]
fn without_an_engine_named_it_picks_one_for_the_machine_and_says_why() {
    let stderr = assert_answers_paris_with(&[]);
    let choice = stderr
        .lines()
        .find(|line| line.contains("engine: "))
        .unwrap_or_else(|| panic!("no engine choice in the log: {stderr}"));
    if choice.contains("software adapter") || choice.contains("no GPU adapter") {
        assert!(choice.contains("the CPU engine"), "{choice}");
        let cores = num_cpus::get_physical();
        assert!(
            stderr.contains(&format!("{cores} threads")),
            "expected the CPU engine on {cores} threads: {stderr}"
        );
    } else {
        assert!(
            choice.contains("hardware GPU") || choice.contains("CUDA"),
            "{choice}"
        );
    }
}

fn assert_answers_paris(engine: &str) {
    assert_answers_paris_with(&["--engine", engine]);
}

/// `dpo chat` with `flags` answers the quick start's question with Paris on stdout; returns
/// its log.
fn assert_answers_paris_with(flags: &[&str]) -> String {
    let output = dpo()
        .arg("chat")
        .args(flags)
        .arg("--model")
        .arg(real_model())
        .args([
            "What is the capital of France? Answer in one word.",
            "--max-new-tokens",
            "128",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dpo chat failed: {stderr}");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "Paris\n");
    assert!(
        stderr.contains("tok/s"),
        "expected generation stats on stderr, got {stderr}"
    );
    stderr.into_owned()
}

#[test]
fn interactive_chat_remembers_earlier_turns() {
    let mut child = dpo()
        .args(["chat", "--model"])
        .arg(real_model())
        .args(["--max-new-tokens", "24"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"My favourite colour is teal. Reply with just OK.\nWhat is my favourite colour? Answer in one word.\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dpo chat failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (first, second) = stdout.split_once('\n').expect("two replies");
    assert!(
        !first.to_lowercase().contains("teal"),
        "first reply: {first:?}"
    );
    assert!(
        second.to_lowercase().contains("teal"),
        "second reply forgot the first turn: {second:?}"
    );
}

#[test]
fn system_prompt_steers_the_reply() {
    let output = dpo()
        .args(["chat", "--model"])
        .arg(real_model())
        .args([
            "--system",
            "You are a pirate. Always begin your answer with the word Arr.",
            "Say hello.",
            "--max-new-tokens",
            "8",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with("Arr"),
        "reply ignored the system prompt: {stdout:?}"
    );
}

#[test]
fn missing_or_corrupt_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let output = dpo()
        .args(["chat", "--model"])
        .arg(&missing)
        .arg("hi")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope.gguf"), "{stderr}");

    let corrupt = dir.path().join("corrupt.gguf");
    std::fs::write(&corrupt, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let output = dpo()
        .args(["chat", "--model"])
        .arg(&corrupt)
        .arg("hi")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("corrupt.gguf") && stderr.contains("byte offset"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn out_of_range_sampling_flags_are_rejected() {
    let output = dpo()
        .args(["chat", "--model"])
        .arg(real_model())
        .args(["--top-p", "0", "hi"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("top_p"), "{stderr}");
}

#[test]
fn without_a_model_it_says_to_run_fetch() {
    let empty = tempfile::tempdir().unwrap();
    let output = dpo()
        .args(["chat", "--models-dir"])
        .arg(empty.path())
        .arg("hi")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dpo fetch"), "{stderr}");
}
