//! `cargo bench -p native-trainer --bench flywheel` (or `cargo xtask bench-flywheel`): the
//! flywheel turning by itself on the real model, judged by scripted labellers whose taste is
//! known. Per labeller a fresh `dpo serve` (SQLite) and `dpo flywheel` share a store and a
//! models directory that starts with the real model as `v0`; the labeller works through the
//! server's API as the app does (the model list, the files it downloads, the pairs it posts):
//! it generates two answers with the CPU engine — two seeds of the default, or the default
//! against a candidate in a blind battle (`shared::battle_pairing`) — and votes by its rule.
//!
//! - **concise**: prefers the shorter answer (characters), a tie when equally long;
//! - **random**: a coin flip per vote, so no version is better in its eyes and none may be
//!   promoted.
//!
//! Each round: votes on the default until the flywheel trains and publishes a candidate (its
//! training time read from the run), the held-out preference rate of the candidate against
//! its parent on prompts never voted on (same seeds, judged by the same rule), then battles
//! until the flywheel promotes or retires the candidate; the row prints the votes, times,
//! held-out rate, both versions' ratings with their intervals (`dpo rounds --json`) and the
//! decision. A benchmark: it prints a table and fails on nothing but errors.
//!
//! Environment: `DPO_BENCH_MODEL` (the real GGUF), `DPO_BENCH_VOTES` (usable votes per round,
//! 32), `DPO_BENCH_ROUNDS` (concise rounds, 2), `DPO_BENCH_MAX_TOKENS` (answer cap, 80),
//! `DPO_BENCH_THREADS` (the labeller's CPU engine threads, all cores).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use native_trainer::chat::blocking_generation::generate;
use native_trainer::chat::native_engines::load_cpu;
use serde_json::Value;
use shared::api::ModelList;
use shared::battle_pairing::battle_opponents;
use shared::cpu_engine::CpuSequence;
use shared::preference_pair::PAIR_SCHEMA_VERSION;
use shared::{
    Candidate, ChatMessage, ModelManifest, ModelRef, ModelText, PreferencePair, SamplingParams,
    SplitMix64, Vote,
};

/// Prompts the labellers vote on (cycled), and the held-out ones no vote ever sees.
const PROMPTS: [&str; 16] = [
    "What is a hash map?",
    "Explain recursion.",
    "What does a compiler do?",
    "Why do programs use threads?",
    "What is a unit test?",
    "Explain what an API is.",
    "What is a linked list?",
    "Why is version control useful?",
    "What is a database index?",
    "Explain garbage collection.",
    "What is an operating system?",
    "What does HTTP stand for and do?",
    "What is a binary search?",
    "Explain what a cache is.",
    "What is JSON?",
    "Why do we write comments in code?",
];
const HELD_OUT: [&str; 12] = [
    "What is a stack?",
    "Explain what a variable is.",
    "What is a function?",
    "What is a loop in programming?",
    "Explain what a file system is.",
    "What is open source software?",
    "What is a network protocol?",
    "Explain what encryption is.",
    "What is a queue?",
    "Explain what a pointer is.",
    "What is a regular expression?",
    "What is a virtual machine?",
];

/// Asked before every prompt, so that most answers end before the length cap and their
/// lengths differ by where the model stops, not by where the cap cuts.
const BRIEF: &str = "Answer in one or two sentences. ";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Taste {
    Concise,
    Random,
}

impl Taste {
    fn name(self) -> &'static str {
        match self {
            Taste::Concise => "concise",
            Taste::Random => "random",
        }
    }

    /// The labeller's vote on answers `a` and `b`.
    fn vote(self, a: &str, b: &str, coin: &mut SplitMix64) -> Vote {
        match self {
            Taste::Concise => {
                let (a, b) = (a.trim().chars().count(), b.trim().chars().count());
                match a.cmp(&b) {
                    std::cmp::Ordering::Less => Vote::A,
                    std::cmp::Ordering::Greater => Vote::B,
                    std::cmp::Ordering::Equal => Vote::Tie,
                }
            }
            Taste::Random => {
                if coin.next_f64() < 0.5 {
                    Vote::A
                } else {
                    Vote::B
                }
            }
        }
    }
}

struct Settings {
    model: PathBuf,
    votes: usize,
    rounds: usize,
    max_tokens: usize,
    threads: usize,
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value}: not a whole number")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    let settings = Settings {
        model: std::env::var("DPO_BENCH_MODEL")
            .map(PathBuf::from)
            .context(
                "DPO_BENCH_MODEL must name the real GGUF (cargo xtask bench-flywheel sets it)",
            )?,
        votes: env_number("DPO_BENCH_VOTES", 32)?,
        rounds: env_number("DPO_BENCH_ROUNDS", 2)?,
        max_tokens: env_number("DPO_BENCH_MAX_TOKENS", 80)?,
        threads: env_number("DPO_BENCH_THREADS", num_cpus::get_physical())?,
    };
    println!(
        "flywheel bench: {} votes per round, answers up to {} tokens, labeller engine: CPU, {} threads",
        settings.votes, settings.max_tokens, settings.threads
    );
    let mut rows = Vec::new();
    for (taste, rounds) in [(Taste::Concise, settings.rounds), (Taste::Random, 1)] {
        rows.extend(campaign(&settings, taste, rounds)?);
    }
    println!();
    println!(
        "| labeller | round | usable votes / comparisons | voting s | training + export s | candidate | held-out preferred vs parent | battles | parent rating (95% CI) | candidate rating (95% CI) | win rate vs parent (95% CI) | decision |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

/// A running `dpo serve` + `dpo flywheel` pair on a fresh store.
struct Flywheel {
    dir: tempfile::TempDir,
    address: String,
    /// HTTP client that hands back error statuses with their bodies.
    http: ureq::Agent,
    server: Child,
    flywheel: Child,
}

impl Drop for Flywheel {
    fn drop(&mut self) {
        for child in [&mut self.server, &mut self.flywheel] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Flywheel {
    fn start(settings: &Settings, votes: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let models = dir.path().join("models");
        let db = format!("sqlite:{}", dir.path().join("pairs.db").display());
        run(dpo()
            .args(["publish", "--version-id", "v0", "--model"])
            .arg(&settings.model)
            .arg("--models-dir")
            .arg(&models))?;
        let mut server = dpo()
            .args(["serve", "--addr", "127.0.0.1:0", "--ip-rate", "0"])
            .args(["--annotator-rate", "0", "--db", &db])
            .arg("--models-dir")
            .arg(&models)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(server.stdout.take().context("serve's stdout")?).read_line(&mut line)?;
        let address = line.trim().trim_end_matches('/').to_string();
        // The rounds: LoRA on the default's votes, three epochs.
        let config = dir.path().join("round.toml");
        std::fs::write(
            &config,
            "use_peft = true\nlora_r = 16\nlora_alpha = 32\nlearning_rate = 3e-4\n\
             per_device_train_batch_size = 4\nnum_train_epochs = 3\nmax_length = 512\n\
             logging_steps = 5\nsave_steps = 0\nbf16 = false\n",
        )?;
        let log = std::fs::File::create(dir.path().join("flywheel.log"))?;
        let flywheel = dpo()
            .args([
                "flywheel",
                "--db",
                &db,
                "--poll-secs",
                "2",
                "--quant",
                "q4_k_m",
            ])
            .args(["--min-votes", &votes.to_string()])
            .args(["--look-every", "10", "--battle-budget", "40"])
            .arg("--models-dir")
            .arg(&models)
            .arg("--config")
            .arg(&config)
            .arg("--work-dir")
            .arg(dir.path().join("runs"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            dir,
            address,
            http,
            server,
            flywheel,
        })
    }

    fn models(&self) -> Result<ModelList> {
        let mut response = self
            .http
            .get(&format!("{}/api/models", self.address))
            .call()?;
        if response.status() != 200 {
            bail!("GET /api/models: {}", response.status());
        }
        Ok(response.body_mut().read_json()?)
    }

    fn post_pair(&self, pair: &PreferencePair) -> Result<()> {
        let mut response = self
            .http
            .post(&format!(
                "{}/api/pairs?annotator={}",
                self.address, pair.annotator_id
            ))
            .send_json(pair)?;
        if !response.status().is_success() {
            bail!(
                "POST /api/pairs: {}: {}",
                response.status(),
                response.body_mut().read_to_string().unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Downloads a served version's GGUF as the app does.
    fn download(&self, manifest: &ModelManifest, to: &std::path::Path) -> Result<()> {
        let mut response = self
            .http
            .get(&format!(
                "{}/models/{}/{}",
                self.address, manifest.version, manifest.gguf.path
            ))
            .call()?;
        if response.status() != 200 {
            bail!(
                "GET the GGUF of {}: {}",
                manifest.version,
                response.status()
            );
        }
        let mut body = response.body_mut().with_config().limit(u64::MAX).reader();
        std::io::copy(&mut body, &mut std::fs::File::create(to)?)?;
        Ok(())
    }

    /// The share of comparisons the campaign makes blind battles (`GET /api/campaign`).
    fn battle_share(&self) -> Result<f64> {
        let mut response = self
            .http
            .get(&format!("{}/api/campaign", self.address))
            .call()?;
        if response.status() != 200 {
            bail!("GET /api/campaign: {}", response.status());
        }
        let campaign: shared::api::CampaignInfo = response.body_mut().read_json()?;
        Ok(campaign.battle_share)
    }

    /// `dpo rounds --json`'s row of each version.
    fn standings(&self) -> Result<Vec<Value>> {
        let output = dpo()
            .args(["rounds", "--json", "--db"])
            .arg(format!(
                "sqlite:{}",
                self.dir.path().join("pairs.db").display()
            ))
            .arg("--models-dir")
            .arg(self.dir.path().join("models"))
            .output()?;
        if !output.status.success() {
            bail!("dpo rounds: {}", String::from_utf8_lossy(&output.stderr));
        }
        String::from_utf8(output.stdout)?
            .lines()
            .map(|line| Ok(serde_json::from_str(line)?))
            .collect()
    }

    /// The flywheel's log (its last lines, for errors).
    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("flywheel.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

fn dpo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dpo"))
}

fn run(command: &mut Command) -> Result<()> {
    let output = command.output()?;
    if !output.status.success() {
        bail!("{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// A served version loaded for the CPU engine from the file the server serves.
struct LoadedVersion {
    manifest: ModelManifest,
    sequence: CpuSequence,
    text: ModelText,
}

/// The labeller's side: versions downloaded through the server and loaded once.
struct Labeller {
    taste: Taste,
    loaded: Vec<LoadedVersion>,
    coin: SplitMix64,
    max_tokens: usize,
    threads: usize,
    downloads: tempfile::TempDir,
    next_key: usize,
}

impl Labeller {
    fn version(&mut self, flywheel: &Flywheel, manifest: &ModelManifest) -> Result<usize> {
        if let Some(index) = self
            .loaded
            .iter()
            .position(|l| l.manifest.version == manifest.version)
        {
            return Ok(index);
        }
        let path = self
            .downloads
            .path()
            .join(format!("{}.gguf", manifest.version));
        flywheel.download(manifest, &path)?;
        let (sequence, text) = load_cpu(&path, 4096, self.threads)?;
        self.loaded.push(LoadedVersion {
            manifest: manifest.clone(),
            sequence,
            text,
        });
        Ok(self.loaded.len() - 1)
    }

    /// One answer of version `index` to `prompt` with `seed`.
    fn answer(&mut self, index: usize, prompt: &str, seed: u64) -> Result<Candidate> {
        let max_tokens = self.max_tokens;
        let version = &mut self.loaded[index];
        // The app's defaults (`web-ui/src/generation_settings.rs`, Qwen's recommendation).
        let sampling = SamplingParams {
            temperature: 0.7,
            top_p: 0.8,
            top_k: 20,
            repeat_penalty: 1.05,
            repeat_last_n: 64,
            max_new_tokens: max_tokens as u32,
        };
        let rendered = version
            .text
            .template
            .render(&[ChatMessage::user(format!("{BRIEF}{prompt}"))], true)?;
        let tokens = version.text.tokenizer.encode(&rendered)?;
        version.sequence.truncate(0);
        let stop = version.text.stop_tokens();
        let mut decoder = version.text.tokenizer.stream_decoder();
        generate(
            &mut version.sequence,
            &tokens,
            sampling,
            seed,
            &stop,
            &mut |id| {
                decoder.push(id)?;
                Ok(true)
            },
        )?;
        decoder.finish()?;
        Ok(Candidate {
            text: decoder.text()?,
            model: ModelRef {
                version: version.manifest.version.clone(),
                sha256: version.manifest.gguf.sha256.clone(),
            },
            sampling,
            seed,
        })
    }

    /// One comparison on `prompt` as the app makes it, voted and posted; whether it was a
    /// battle, and the vote.
    fn label(&mut self, flywheel: &Flywheel, prompt: &str) -> Result<(bool, Vote)> {
        let list = flywheel.models()?;
        let default = list
            .default_version
            .clone()
            .context("the server names no default version")?;
        let names: Vec<String> = list.versions.iter().map(|m| m.version.clone()).collect();
        let opponents = battle_opponents(&default, Some(&default), &list.candidates, &names);
        let manifest = |name: &str| list.versions.iter().find(|m| m.version == name).cloned();
        let first = self.version(flywheel, &manifest(&default).context("default")?)?;
        // A blind battle with the campaign's share (0.5, the default), as the app draws it.
        let share = flywheel.battle_share()?;
        let battle_with = if opponents.is_empty() || self.coin.next_f64() >= share {
            None
        } else {
            Some(opponents[(self.coin.next_u64() % opponents.len() as u64) as usize])
        };
        let (second, battle) = match battle_with {
            Some(name) => (
                self.version(flywheel, &manifest(name).context("opponent")?)?,
                true,
            ),
            None => (first, false),
        };
        let seed = self.coin.next_u64() >> 11;
        let shown_at = time::OffsetDateTime::now_utc();
        let (mut a, mut b) = (
            self.answer(first, prompt, seed)?,
            self.answer(second, prompt, seed.wrapping_add(1))?,
        );
        // Sides in random order, as on screen.
        if self.coin.next_f64() < 0.5 {
            std::mem::swap(&mut a, &mut b);
        }
        let vote = self.taste.vote(&a.text, &b.text, &mut self.coin);
        self.next_key += 1;
        flywheel.post_pair(&PreferencePair {
            schema_version: PAIR_SCHEMA_VERSION,
            idempotency_key: format!("bench-{}-{:06}", self.taste.name(), self.next_key),
            annotator_id: format!("scripted-{}", self.taste.name()),
            prompt_id: None,
            conversation: vec![ChatMessage::user(format!("{BRIEF}{prompt}"))],
            candidate_a: a,
            candidate_b: b,
            vote,
            edited_answer: None,
            shown_at,
            voted_at: time::OffsetDateTime::now_utc(),
        })?;
        Ok((battle, vote))
    }

    /// The share of held-out prompts on which the labeller prefers `candidate`'s answer to
    /// `parent`'s (same seed; ties count half).
    fn held_out_rate(
        &mut self,
        flywheel: &Flywheel,
        parent: &ModelManifest,
        candidate: &ModelManifest,
    ) -> Result<f64> {
        let (parent, candidate) = (
            self.version(flywheel, parent)?,
            self.version(flywheel, candidate)?,
        );
        let mut points = 0.0;
        for (i, prompt) in HELD_OUT.iter().enumerate() {
            let seed = 1_000 + i as u64;
            let old = self.answer(parent, prompt, seed)?;
            let new = self.answer(candidate, prompt, seed)?;
            points += match self.taste.vote(&new.text, &old.text, &mut self.coin) {
                Vote::A => 1.0,
                Vote::Tie | Vote::BothBad => 0.5,
                Vote::B => 0.0,
            };
        }
        Ok(points / HELD_OUT.len() as f64)
    }
}

/// One labeller's campaign of `rounds` rounds; a table row per round.
fn campaign(settings: &Settings, taste: Taste, rounds: usize) -> Result<Vec<String>> {
    let flywheel = Flywheel::start(settings, settings.votes)?;
    let mut labeller = Labeller {
        taste,
        loaded: Vec::new(),
        coin: SplitMix64(0x5eed ^ taste as u64),
        max_tokens: settings.max_tokens,
        threads: settings.threads,
        downloads: tempfile::tempdir()?,
        next_key: 0,
    };
    let mut rows = Vec::new();
    let mut prompt = 0usize;
    for round in 1..=rounds {
        // Votes on the default until the flywheel publishes a candidate.
        let started = Instant::now();
        // Usable votes (on-policy: both answers from the default; A or B, as the flywheel
        // counts them), and every comparison made.
        let (mut votes, mut comparisons) = (0, 0);
        let mut last_vote = Instant::now();
        let candidate = loop {
            let list = flywheel.models()?;
            if let Some(candidate) = list.candidates.first() {
                break list
                    .versions
                    .iter()
                    .find(|m| &m.version == candidate)
                    .cloned()
                    .context("candidate manifest")?;
            }
            if votes < settings.votes {
                let (battle, vote) = labeller.label(&flywheel, PROMPTS[prompt % PROMPTS.len()])?;
                prompt += 1;
                comparisons += 1;
                votes += usize::from(!battle && matches!(vote, Vote::A | Vote::B));
                last_vote = Instant::now();
                eprintln!("{} round {round}: vote {votes}", taste.name());
            } else {
                if last_vote.elapsed() > Duration::from_secs(3600) {
                    bail!(
                        "no candidate an hour after the votes:\n{}",
                        flywheel.log_tail()
                    );
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        };
        let voting = last_vote.duration_since(started).as_secs_f64();
        let training = last_vote.elapsed().as_secs_f64();
        let parent_name = candidate
            .parent_version
            .clone()
            .context("a candidate has a parent")?;
        let list = flywheel.models()?;
        let parent = list
            .versions
            .iter()
            .find(|m| m.version == parent_name)
            .cloned()
            .context("parent manifest")?;
        let held_out = labeller.held_out_rate(&flywheel, &parent, &candidate)?;
        eprintln!(
            "{} round {round}: {} published; held-out preference {held_out:.2}",
            taste.name(),
            candidate.version
        );

        // Battles until the flywheel decides.
        let mut battles = 0;
        loop {
            let list = flywheel.models()?;
            if !list.candidates.contains(&candidate.version) {
                break;
            }
            if battles >= 400 {
                bail!(
                    "no decision after {battles} battles:\n{}",
                    flywheel.log_tail()
                );
            }
            if labeller
                .label(&flywheel, PROMPTS[prompt % PROMPTS.len()])?
                .0
            {
                battles += 1;
            }
            prompt += 1;
        }
        let list = flywheel.models()?;
        let decision = if list.default_version.as_deref() == Some(candidate.version.as_str()) {
            "promoted"
        } else {
            "retired"
        };
        let standings = flywheel.standings()?;
        let row_of = |name: &str| standings.iter().find(|r| r["version"] == name).cloned();
        let rating = |row: &Option<Value>| match row {
            Some(r) => format!(
                "{:.0} [{:.0}, {:.0}]",
                r["rating"].as_f64().unwrap_or(f64::NAN),
                r["rating_low"].as_f64().unwrap_or(f64::NAN),
                r["rating_high"].as_f64().unwrap_or(f64::NAN)
            ),
            None => "-".into(),
        };
        let candidate_row = row_of(&candidate.version);
        let win_rate = match &candidate_row {
            Some(r) => format!(
                "{:.3} [{:.3}, {:.3}] of {}",
                r["win_rate_vs_parent"].as_f64().unwrap_or(f64::NAN),
                r["win_rate_low"].as_f64().unwrap_or(f64::NAN),
                r["win_rate_high"].as_f64().unwrap_or(f64::NAN),
                r["battles_vs_parent"]
            ),
            None => "-".into(),
        };
        rows.push(format!(
            "| {} | {round} | {votes} / {comparisons} | {voting:.0} | {training:.0} | {} (from {}) | {held_out:.2} | {battles} | {} | {} | {win_rate} | {decision} |",
            taste.name(),
            candidate.version,
            parent.version,
            rating(&row_of(&parent.version)),
            rating(&candidate_row),
        ));
        eprintln!("{}", rows.last().expect("a row"));
    }
    Ok(rows)
}
