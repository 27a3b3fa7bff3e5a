//! `cargo bench -p native-trainer --bench serve_throughput` (or `cargo xtask bench-serve`):
//! durable pair submissions per second and their latency (p50, p99) through `dpo serve`, 64
//! concurrent clients on keep-alive connections, each pair acknowledged only after its commit.
//! SQLite always; PostgreSQL too when `DPO_BENCH_POSTGRES_URL` names a database (emptied
//! first). A benchmark: it prints a table and fails on nothing but errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use shared::{Candidate, ChatMessage, ModelRef, PreferencePair, SamplingParams, Vote};

const CLIENTS: usize = 64;
const PAIRS: usize = 20_000;

fn main() -> Result<()> {
    let work = tempfile::tempdir()?;
    let models = work.path().join("models");
    // A served version for the candidates to name; its file is never downloaded here.
    let version_dir = models.join("bench");
    std::fs::create_dir_all(&version_dir)?;
    std::fs::write(
        version_dir.join("model.gguf"),
        b"not downloaded by this benchmark",
    )?;
    let sha = "0".repeat(64);
    let manifest = serde_json::json!({
        "format_version": 1, "version": "bench", "parent_version": null,
        "created": "2026-11-26T00:00:00Z", "model_name": "bench", "base_model": "bench",
        "architecture": "qwen2", "quant": "q4_k_m",
        "gguf": {"path": "model.gguf", "sha256": sha, "size": 32},
        "files": [{"path": "model.gguf", "sha256": sha, "size": 32}],
        "training": null, "exporter": "bench",
    });
    std::fs::write(version_dir.join("manifest.json"), manifest.to_string())?;

    let model = ModelRef {
        version: "bench".into(),
        sha256: sha,
    };
    let mut stores = vec![(
        "SQLite (WAL, synchronous=FULL)".to_string(),
        format!("sqlite:{}", work.path().join("pairs.db").display()),
    )];
    if let Ok(url) = std::env::var("DPO_BENCH_POSTGRES_URL") {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        client
            .batch_execute("DROP TABLE IF EXISTS pairs; DROP TABLE IF EXISTS schema_migrations")?;
        stores.push(("PostgreSQL (synchronous_commit=on)".into(), url));
    }
    println!("| store | clients | pairs | pairs/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, db) in stores {
        let (pairs, per_second, p50, p99) = measure(&db, &models, &model)?;
        println!("| {name} | {CLIENTS} | {pairs} | {per_second:.0} | {p50:.2} | {p99:.2} |");
    }
    Ok(())
}

/// Pairs acknowledged, pairs/s, p50 and p99 latency in ms, against a fresh server on `db`.
fn measure(db: &str, models: &std::path::Path, model: &ModelRef) -> Result<(usize, f64, f64, f64)> {
    let mut server = Command::new(env!("CARGO_BIN_EXE_dpo"))
        .arg("serve")
        .arg("--db")
        .arg(db)
        .arg("--models-dir")
        .arg(models)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--ip-rate",
            "0",
            "--annotator-rate",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().context("stdout")?).read_line(&mut line)?;
    let address = line.trim().trim_start_matches("http://").to_string();

    let started = Instant::now();
    let per_client = PAIRS / CLIENTS;
    let results: Vec<Result<Vec<Duration>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let address = &address;
                scope.spawn(move || -> Result<Vec<Duration>> {
                    let mut stream = TcpStream::connect(address)?;
                    stream.set_nodelay(true)?;
                    let mut reader = BufReader::new(stream.try_clone()?);
                    let mut latencies = Vec::with_capacity(per_client);
                    for i in 0..per_client {
                        let body = serde_json::to_vec(&pair(client, i, model))?;
                        let head = format!(
                            "POST /api/pairs HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let sent = Instant::now();
                        stream.write_all(head.as_bytes())?;
                        stream.write_all(&body)?;
                        let status = read_response(&mut reader)?;
                        latencies.push(sent.elapsed());
                        if status != 201 {
                            bail!("pair {client}/{i}: status {status}");
                        }
                    }
                    Ok(latencies)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let _ = server.kill();
    let _ = server.wait();
    let mut latencies: Vec<Duration> = results.into_iter().collect::<Result<Vec<_>>>()?.concat();
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
    Ok((
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(0.5),
        percentile(0.99),
    ))
}

fn pair(client: usize, index: usize, model: &ModelRef) -> PreferencePair {
    let candidate = |text: &str, seed| Candidate {
        text: text.into(),
        model: model.clone(),
        sampling: SamplingParams::default(),
        seed,
    };
    PreferencePair {
        schema_version: 1,
        idempotency_key: format!("bench-{client:03}-{index:06}"),
        annotator_id: format!("annotator-{client}"),
        prompt_id: None,
        conversation: vec![ChatMessage::user(
            "Explain what a hash map is in two sentences.",
        )],
        candidate_a: candidate(
            "A hash map stores key-value pairs and finds a value by hashing its key.",
            1,
        ),
        candidate_b: candidate("It is a map.", 2),
        vote: Vote::A,
        edited_answer: None,
        shown_at: time::OffsetDateTime::now_utc(),
        voted_at: time::OffsetDateTime::now_utc(),
    }
}

/// Reads one response on a keep-alive connection; returns its status.
fn read_response(reader: &mut BufReader<TcpStream>) -> Result<u16> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}
