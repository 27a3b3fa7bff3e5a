//! `dpo train --data sqlite:…`: training on the votes a `dpo serve` store holds, selected by
//! model version (on-policy), vote time and annotator, with a comparison labelled several
//! times counted once — or dropped when its labels disagree more than `min_agreement` allows;
//! and `dpo pairs quality`'s report on the same votes.

use std::path::Path;

use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{run_dpo, succeed};
use native_trainer::store::PairStore;
use native_trainer::store::sqlite_store::SqlitePairStore;
use shared::{Candidate, ChatMessage, ModelRef, PreferencePair, SamplingParams, Vote};

struct Label<'a> {
    prompt: &'a str,
    a: &'a str,
    b: &'a str,
    vote: Vote,
    version: &'a str,
    annotator: &'a str,
    minute: u8,
}

fn pair(key: usize, label: &Label) -> PreferencePair {
    let model = ModelRef {
        version: label.version.into(),
        sha256: "0".repeat(64),
    };
    let candidate = |text: &str, seed| Candidate {
        text: text.into(),
        model: model.clone(),
        sampling: SamplingParams::default(),
        seed,
    };
    let shown = time::macros::datetime!(2026-11-26 12:00 UTC);
    PreferencePair {
        schema_version: 1,
        idempotency_key: format!("key-{key:04}"),
        annotator_id: label.annotator.into(),
        prompt_id: None,
        conversation: vec![ChatMessage::user(label.prompt)],
        candidate_a: candidate(label.a, 1),
        candidate_b: candidate(label.b, 2),
        vote: label.vote,
        edited_answer: None,
        shown_at: shown,
        voted_at: shown + time::Duration::minutes(label.minute as i64),
    }
}

/// 12 labels: six on-policy comparisons for v1 (A wins), one v1 comparison labelled three
/// times (A, A, B), a v1 tie, and two labels on v2.
fn store_votes(path: &Path) {
    let mut labels = Vec::new();
    let prompts: Vec<String> = (0..6)
        .map(|i| format!("Question {i}: which colour?"))
        .collect();
    for (i, prompt) in prompts.iter().enumerate() {
        labels.push(Label {
            prompt,
            a: "blue sky",
            b: "red mud",
            vote: Vote::A,
            version: "v1",
            annotator: if i < 3 { "anon-1" } else { "anon-2" },
            minute: i as u8,
        });
    }
    for (vote, a, b, annotator) in [
        (Vote::A, "blue sky", "red mud", "anon-1"),
        (Vote::B, "red mud", "blue sky", "anon-2"),
        (Vote::B, "blue sky", "red mud", "anon-3"),
    ] {
        labels.push(Label {
            prompt: "Labelled three times",
            a,
            b,
            vote,
            version: "v1",
            annotator,
            minute: 10,
        });
    }
    labels.push(Label {
        prompt: "A tie",
        a: "blue sky",
        b: "red mud",
        vote: Vote::Tie,
        version: "v1",
        annotator: "anon-1",
        minute: 11,
    });
    for minute in [12, 13] {
        labels.push(Label {
            prompt: "Older model",
            a: "blue sky",
            b: "red mud",
            vote: Vote::A,
            version: "v2",
            annotator: "anon-1",
            minute,
        });
    }
    let store = SqlitePairStore::open(path).unwrap();
    let pairs: Vec<(PreferencePair, String)> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let pair = pair(i, label);
            let json = serde_json::to_string(&pair).unwrap();
            (pair, json)
        })
        .collect();
    store.insert_batch(&pairs).unwrap();
}

/// Trains one step on `selection` and returns the vote-source line of the log.
fn train(dir: &Path, selection: &str, out: &str) -> String {
    let data = format!("sqlite:{}{selection}", dir.join("pairs.sqlite").display());
    let (_, stderr) = succeed(
        run_dpo(
            &["train", "--max-steps", "1", "--data", &data],
            &[
                ("--model", &dir.join("tiny.gguf")),
                ("--output-dir", &dir.join(out)),
            ],
        ),
        "dpo train --data sqlite:…",
    );
    stderr
        .lines()
        .find(|l| l.contains("stored pairs"))
        .unwrap_or_else(|| panic!("no selection line in:\n{stderr}"))
        .to_string()
}

#[test]
fn votes_train_on_policy_with_duplicates_counted_once_and_disagreement_dropped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tiny.gguf"),
        TinyQwen2::default().to_bytes(),
    )
    .unwrap();
    store_votes(&dir.path().join("pairs.sqlite"));

    // Everything: 12 labels, the triple counts once (2 of 3 agree ≥ 0.5), the two v2 labels
    // are one comparison; the tie teaches nothing.
    let line = train(dir.path(), "", "all");
    assert!(
        line.contains("12 stored pairs, 0 filtered out, 0 left out for low annotator agreement, 3 duplicate labels, 0 comparisons dropped for disagreement, 9 kept → 8 TRL rows"),
        "{line}"
    );
    // On-policy for v1, with agreement required above two thirds: the triple is dropped.
    let line = train(
        dir.path(),
        "?model_version=v1&min_agreement=0.7",
        "on-policy",
    );
    assert!(
        line.contains("12 stored pairs, 2 filtered out, 0 left out for low annotator agreement, 2 duplicate labels, 1 comparisons dropped for disagreement, 7 kept → 6 TRL rows"),
        "{line}"
    );
    // One annotator and a time window.
    let line = train(
        dir.path(),
        "?annotator=anon-1&since=2026-11-26T12:01:00Z&until=2026-11-26T12:11:00Z",
        "window",
    );
    assert!(
        line.contains("12 stored pairs, 9 filtered out, 0 left out for low annotator agreement, 0 duplicate labels, 0 comparisons dropped for disagreement, 3 kept → 3 TRL rows"),
        "{line}"
    );
    let summary = std::fs::read_to_string(dir.path().join("window/training_args.json")).unwrap();
    assert!(summary.contains("annotator=anon-1"), "{summary}");

    // The quality report: labels per annotator, repeated comparisons and their agreement.
    let (report, _) = succeed(
        run_dpo(
            &["pairs", "quality"],
            &[(
                "--db",
                Path::new(&format!(
                    "sqlite:{}",
                    dir.path().join("pairs.sqlite").display()
                )),
            )],
        ),
        "dpo pairs quality",
    );
    for expected in [
        "12 labels, 3 annotators, 9 distinct comparisons",
        "| anon-1 | 7 | 6 | 0 | 1 | 0 |",
        "| anon-2 | 4 | 3 | 1 | 0 | 0 |",
        "| anon-3 | 1 | 0 | 1 | 0 | 0 |",
        "2 comparisons labelled more than once (3 repeat labels",
        "| Labelled three times | 3 | 0.67 |",
        "| Older model | 2 | 1.00 |",
    ] {
        assert!(
            report.contains(expected),
            "`{expected}` missing from:\n{report}"
        );
    }

    // Selections that select nothing, or that do not parse, say so.
    for (selection, expected) in [
        ("?colour=blue", "unknown selector `colour`"),
        ("?since=yesterday", "`since` must be an RFC 3339 time"),
        (
            "?min_agreement=2",
            "`min_agreement` must be a number in [0, 1]",
        ),
        ("?model_version=v9", "no preference rows"),
    ] {
        let data = format!(
            "sqlite:{}{selection}",
            dir.path().join("pairs.sqlite").display()
        );
        let output = run_dpo(
            &["train", "--max-steps", "1", "--data", &data],
            &[
                ("--model", &dir.path().join("tiny.gguf")),
                ("--output-dir", &dir.path().join("bad")),
            ],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{selection}: {stderr}"
        );
    }
}

/// `dpo train --method kto --data sqlite:…`: every vote's candidates become labelled rows —
/// A/B votes a desirable and an undesirable row, a both-bad vote two undesirable ones, an
/// edited answer a desirable one — and a tie alone none; KTO trains on them.
#[test]
fn kto_trains_on_every_vote_both_bad_ones_included() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tiny.gguf"),
        TinyQwen2::default().to_bytes(),
    )
    .unwrap();
    let store = SqlitePairStore::open(&dir.path().join("pairs.sqlite")).unwrap();
    let mut pairs = Vec::new();
    for (i, (vote, edit)) in [
        (Vote::A, None),
        (Vote::B, None),
        (Vote::BothBad, None),
        (Vote::Tie, None),
        (Vote::Tie, Some("green grass")),
        (Vote::BothBad, Some("green grass")),
    ]
    .into_iter()
    .enumerate()
    {
        let prompt = format!("Question {i}: which colour?");
        let mut labelled = pair(
            i,
            &Label {
                prompt: &prompt,
                a: "blue sky",
                b: "red mud",
                vote,
                version: "v1",
                annotator: "anon-1",
                minute: i as u8,
            },
        );
        labelled.edited_answer = edit.map(str::to_string);
        let json = serde_json::to_string(&labelled).unwrap();
        pairs.push((labelled, json));
    }
    store.insert_batch(&pairs).unwrap();
    let data = format!("sqlite:{}", dir.path().join("pairs.sqlite").display());
    let out = dir.path().join("kto");
    let (_, stderr) = succeed(
        run_dpo(
            &[
                "train",
                "--method",
                "kto",
                "--max-steps",
                "2",
                "--data",
                &data,
            ],
            &[
                ("--model", &dir.path().join("tiny.gguf")),
                ("--output-dir", &out),
            ],
        ),
        "dpo train --method kto --data sqlite:…",
    );
    // A: 2, B: 2, both-bad: 2, tie: 0, tie + edit: 1, both-bad + edit: 3.
    assert!(stderr.contains("6 kept → 10 TRL rows"), "{stderr}");
    assert!(
        stderr.contains("10 labelled rows (4 desirable, 6 undesirable)"),
        "{stderr}"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"kl\""), "{metrics}");
}
