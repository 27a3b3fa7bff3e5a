//! `cargo test` as `cargo xtask test` runs it: its output echoed, then how long the build took
//! and each test binary (a group: `engines`, `training`, `serving`, … and each crate's unit
//! tests) with its counts and seconds, and one line totalling them all:
//! `summary: N passed, N failed, N skipped`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// One `test result:` line: the counts and the seconds the binary reported.
#[derive(Default, Clone, Copy)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
    seconds: f64,
}

impl Counts {
    fn parse(line: &str) -> Option<Self> {
        let counts = line.strip_prefix("test result: ")?;
        let mut parsed = Self::default();
        for part in counts.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(kind)) = (words.next(), words.next()) {
                match (n.parse::<u64>(), kind) {
                    (Ok(n), "passed") => parsed.passed = n,
                    (Ok(n), "failed") => parsed.failed = n,
                    (Ok(n), "ignored") => parsed.ignored = n,
                    _ => {}
                }
            }
        }
        if let Some(seconds) = counts
            .rsplit_once("finished in ")
            .and_then(|(_, s)| s.trim_end_matches('s').parse().ok())
        {
            parsed.seconds = seconds;
        }
        Some(parsed)
    }
}

/// The test binary a `Running …` or `Doc-tests …` line of cargo's names.
fn binary_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    if let Some(krate) = line.strip_prefix("Doc-tests ") {
        return Some(format!("doc-tests {krate}"));
    }
    let running = line.strip_prefix("Running ")?;
    // `tests/engines/main.rs (target/debug/deps/engines-0123abcd)`
    let deps = running.rsplit_once('(').map_or(running, |(_, d)| d);
    let file = deps.trim_end_matches(')').rsplit('/').next()?;
    let name = file.rsplit_once('-').map_or(file, |(name, _)| name);
    Some(if running.starts_with("unittests") {
        format!("{name} (unit)")
    } else {
        name.to_string()
    })
}

/// Runs `cargo test`, echoing its output, then prints the table and the summary line.
pub fn run_tests_with_summary(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {command:?}");
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {command:?}"))?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let stderr = child.stderr.take().context("cargo test stderr")?;
    // cargo names each binary on stderr as it starts it; the binary reports on stdout.
    let binaries: Arc<Mutex<Vec<(String, f64)>>> = Arc::default();
    let names = binaries.clone();
    let stderr_echo = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if let Some(name) = binary_name(&line) {
                let at = started.elapsed().as_secs_f64();
                names.lock().expect("not poisoned").push((name, at));
            }
        }
    });
    let mut results = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(counts) = Counts::parse(&line) {
            results.push(counts);
        }
    }
    let status = child.wait()?;
    stderr_echo.join().ok();
    let total_seconds = started.elapsed().as_secs_f64();
    let binaries = binaries.lock().expect("not poisoned").clone();

    let build_seconds = binaries.first().map_or(total_seconds, |(_, at)| *at);
    println!("\ntest groups (wall seconds as each binary reported them):");
    println!(
        "  {:<28} {:>7} {:>7} {:>7} {:>9}",
        "group", "passed", "failed", "skipped", "seconds"
    );
    println!(
        "  {:<28} {:>7} {:>7} {:>7} {:>9.1}",
        "build", "", "", "", build_seconds
    );
    let mut total = Counts::default();
    for (i, counts) in results.iter().enumerate() {
        let name = binaries.get(i).map_or("?", |(name, _)| name.as_str());
        if counts.passed + counts.failed + counts.ignored > 0 {
            println!(
                "  {:<28} {:>7} {:>7} {:>7} {:>9.1}",
                name, counts.passed, counts.failed, counts.ignored, counts.seconds
            );
        }
        total.passed += counts.passed;
        total.failed += counts.failed;
        total.ignored += counts.ignored;
    }
    println!(
        "  {:<28} {:>7} {:>7} {:>7} {:>9.1}",
        "all (wall)", total.passed, total.failed, total.ignored, total_seconds
    );
    println!(
        "summary: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.ignored
    );
    if !status.success() {
        bail!("cargo test failed with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_lines_name_the_binary_and_give_the_counts() {
        assert_eq!(
            binary_name("     Running tests/engines/main.rs (target/debug/deps/engines-0a1b2c)")
                .as_deref(),
            Some("engines")
        );
        assert_eq!(
            binary_name("     Running unittests src/lib.rs (target/debug/deps/shared-99ff)")
                .as_deref(),
            Some("shared (unit)")
        );
        assert_eq!(
            binary_name("   Doc-tests shared").as_deref(),
            Some("doc-tests shared")
        );
        assert_eq!(binary_name("   Compiling shared v0.1.0"), None);
        let counts = Counts::parse(
            "test result: FAILED. 7 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 22.63s",
        )
        .unwrap();
        assert_eq!((counts.passed, counts.failed, counts.ignored), (7, 1, 2));
        assert_eq!(counts.seconds, 22.63);
        assert!(Counts::parse("test foo ... ok").is_none());
    }
}
