//! Hostile files, as property tests on stable Rust: thousands of seeded mutations of real and
//! tiny files — truncated at any offset, bytes flipped, inserted or deleted, and the GGUF
//! header's counts, string and array lengths (up to 2^63 and u64::MAX), type ids, dimensions
//! and tensor offsets set to extreme values — go through every reader a user reaches: the
//! GGUF header and tensor table (what `dpo chat`, `dpo train`, `dpo export`, `dpo publish`,
//! the engines and the browser loader all read first), the candle engine, the training
//! import, the export source, the tokenizer and chat template, preference files (JSON Lines
//! and Parquet) and pair JSON. Each case must end in a value or an error that names the
//! file, offset, key, line or field — never a panic, an abort or a hang — and allocate at
//! most a small multiple of the file's size. Every case is reproducible from its seed.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Device;
use flywheel_tests::file_mutation::{Mutation, Mutator, PatchedReader};
use flywheel_tests::peak_memory::{one_test_at_a_time, peak_growth};
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{real_model, workspace_root};
use native_trainer::chat::CandleSequence;
use native_trainer::export::export_source::ExportSource;
use native_trainer::train::base_model::BaseModel;
use native_trainer::train::preference_file::read_preference_file;
use shared::gguf::header_check::{FieldKind, check_header};
use shared::{
    Candidate, ChatMessage, GgufModel, ModelRef, ModelText, PairLimits, PreferencePair,
    SamplingParams, Vote,
};

/// What a case may allocate at its peak: this many times the file's size, plus a fixed slack
/// for the readers' own tables (a tokenizer, a tiny model's tensors).
const MEMORY_PER_FILE_BYTE: usize = 4;
const MEMORY_SLACK: usize = 96 << 20;

/// Runs one case: no panic, bounded memory. Returns what `work` returned. With
/// `DPO_HOSTILE_VERBOSE` set, names each case before it runs (to find one that aborts).
fn run_case<T>(what: &str, file_len: usize, work: impl FnOnce() -> T) -> T {
    if std::env::var_os("DPO_HOSTILE_VERBOSE").is_some() {
        eprintln!("case: {what}");
    }
    let (result, peak) = peak_growth(|| std::panic::catch_unwind(AssertUnwindSafe(work)));
    let result = result.unwrap_or_else(|_| panic!("{what}: panicked (see the message above)"));
    let budget = file_len * MEMORY_PER_FILE_BYTE + MEMORY_SLACK;
    assert!(
        peak <= budget,
        "{what}: allocated {peak} bytes at its peak for a {file_len}-byte file (budget {budget})"
    );
    result
}

/// Quiet panics: a panic fails its case with the case's name instead of a wall of messages.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic: {info}");
    }));
}

/// An error message names where: the file itself, and a byte offset, key, tensor or line.
fn assert_names_where(what: &str, message: &str, source_name: &str) {
    assert!(
        message.contains(source_name),
        "{what}: the error does not name the file `{source_name}`: {message}"
    );
}

fn tiny_models() -> Vec<(&'static str, Vec<u8>)> {
    use candle_core::quantized::GgmlDType;
    use candle_core::quantized::gguf_file::Value;
    vec![
        ("f32", TinyQwen2::default().to_bytes()),
        (
            "f32 aligned",
            TinyQwen2::default()
                .with_key("general.alignment", Value::U32(32))
                .to_bytes(),
        ),
        (
            "q8_0",
            TinyQwen2::default()
                .with_matrix_type(GgmlDType::Q8_0)
                .to_bytes(),
        ),
        (
            "q4_0",
            TinyQwen2::default()
                .with_matrix_type(GgmlDType::Q4_0)
                .to_bytes(),
        ),
    ]
}

/// Every loader `dpo` has for a GGUF, on one file: the header, the candle engine (`dpo chat`),
/// the training import (`dpo train`) and the export source (`dpo export`).
fn load_everywhere(path: &Path) -> Vec<(&'static str, Result<(), String>)> {
    let err = |e: anyhow::Error| format!("{e:#}");
    vec![
        (
            "header",
            GgufModel::open(path).map(drop).map_err(|e| e.to_string()),
        ),
        (
            "candle engine",
            CandleSequence::load(path, true).map(drop).map_err(err),
        ),
        (
            "training import",
            BaseModel::load(path, &Device::Cpu).map(drop).map_err(err),
        ),
        (
            "export source",
            ExportSource::load(path).map(drop).map_err(err),
        ),
    ]
}

#[test]
fn the_header_map_agrees_with_candle_on_real_and_tiny_files() {
    let _serial = one_test_at_a_time();
    let real = std::fs::read(real_model()).expect("the real model");
    let mut files = tiny_models();
    files.push(("real", real));
    for (name, bytes) in &files {
        let mut cursor = std::io::Cursor::new(bytes.as_slice());
        let layout = check_header(&mut cursor, bytes.len() as u64, true)
            .unwrap_or_else(|p| panic!("{name}: {p:?}"));
        let gguf = GgufModel::read(&mut std::io::Cursor::new(bytes.as_slice()), name).unwrap();
        assert_eq!(
            layout.tensor_data_offset, gguf.content.tensor_data_offset,
            "{name}"
        );
        // Every field lies inside the header.
        assert!(
            layout
                .fields
                .iter()
                .all(|f| f.offset + u64::from(f.width) <= layout.tensor_data_offset),
            "{name}"
        );
        let tensors = gguf.content.tensor_infos.len();
        let offsets = layout
            .fields
            .iter()
            .filter(|f| f.kind == FieldKind::TensorOffset)
            .count();
        assert_eq!(offsets, tensors, "{name}: one offset field per tensor");
    }
}

#[test]
fn mutated_tiny_ggufs_are_refused_with_a_place_or_loaded_never_crash() {
    let _serial = one_test_at_a_time();
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut refused, mut loaded) = (0, 0);
    const CASES_PER_MODEL: u64 = 1500;
    for (name, original) in tiny_models() {
        let layout = check_header(
            &mut std::io::Cursor::new(original.as_slice()),
            original.len() as u64,
            true,
        )
        .unwrap();
        for seed in 0..CASES_PER_MODEL {
            let mut mutator = Mutator::new(seed * 7919 + original.len() as u64);
            let mutation = mutator.mutation(&original, original.len() as u64, &layout.fields);
            let bytes = mutation.apply(&original);
            let path = dir.path().join(format!("{name}-{seed}.gguf"));
            std::fs::write(&path, &bytes).unwrap();
            let what = format!("tiny {name} seed {seed} ({mutation:?})");
            let outcomes = run_case(&what, bytes.len(), || load_everywhere(&path));
            let source_name = path.display().to_string();
            for (loader, outcome) in outcomes {
                match outcome {
                    Ok(()) => loaded += 1,
                    Err(message) => {
                        refused += 1;
                        assert_names_where(&format!("{what}, {loader}"), &message, &source_name);
                    }
                }
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
    eprintln!(
        "{} tiny-GGUF cases: {refused} refusals, {loaded} loads, in {:.1} s",
        4 * CASES_PER_MODEL,
        started.elapsed().as_secs_f64()
    );
    assert!(
        refused > 0 && loaded > 0,
        "the mutations should both break and spare files"
    );
}

#[test]
fn mutated_real_model_headers_are_refused_with_a_place_never_crash() {
    let _serial = one_test_at_a_time();
    quiet_panics();
    let path = real_model();
    let original = std::fs::read(&path).expect("the real model");
    let layout = check_header(
        &mut std::io::Cursor::new(original.as_slice()),
        original.len() as u64,
        true,
    )
    .unwrap();
    let header = &original[..layout.tensor_data_offset as usize];
    let started = Instant::now();
    let (mut refused, mut read, mut tokenizers) = (0, 0, 0);
    // Every array length set to the largest counts the file could seem to hold, then seeded
    // mutations of the header region and truncations anywhere.
    let len = original.len() as u64;
    let mut aimed: Vec<Mutation> = Vec::new();
    for field in &layout.fields {
        if field.kind == FieldKind::ArrayLength {
            for value in [len / 4, len / 8, len / 12, len / 16, 1 << 63, u64::MAX] {
                aimed.push(Mutation::Overwrite {
                    offset: field.offset,
                    bytes: value.to_le_bytes().to_vec(),
                });
            }
        }
    }
    const SEEDED_CASES: u64 = 600;
    let cases = aimed.len() as u64 + SEEDED_CASES;
    for seed in 0..cases {
        let mut mutator = Mutator::new(seed ^ 0x005e_ed0f_7ea1);
        let mutation = loop {
            let candidate = if let Some(aimed) = aimed.get(seed as usize) {
                aimed.clone()
            } else if seed % 4 == 0 {
                Mutation::Truncate(mutator.offset(original.len() as u64))
            } else {
                mutator.mutation(header, original.len() as u64, &layout.fields)
            };
            if candidate.keeps_offsets() {
                break candidate;
            }
        };
        let what = format!("real model seed {seed} ({})", describe(&mutation));
        let outcome = run_case(&what, original.len(), || {
            let mut reader = std::io::BufReader::new(PatchedReader::new(&original, &mutation));
            let gguf = GgufModel::read(&mut reader, "real.gguf").map_err(|e| e.to_string())?;
            // The tokenizer is slow to build from 151k tokens: a few cases go that far.
            if tokenizers < 12 {
                tokenizers += 1;
                ModelText::from_gguf(&gguf).map_err(|e| format!("{e:#}"))?;
            }
            Ok::<_, String>(())
        });
        match outcome {
            Ok(()) => read += 1,
            Err(message) => {
                refused += 1;
                assert_names_where(&what, &message, "real.gguf");
            }
        }
    }
    eprintln!(
        "{cases} real-model cases: {refused} refusals, {read} reads, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        refused > cases / 4,
        "most header mutations should be refused"
    );
}

fn describe(mutation: &Mutation) -> String {
    match mutation {
        Mutation::Overwrite { offset, bytes } if bytes.len() > 8 => {
            format!("overwrite {} bytes at {offset}", bytes.len())
        }
        other => format!("{other:?}"),
    }
}

#[test]
fn mutated_preference_files_are_refused_with_a_line_or_read_never_crash() {
    let _serial = one_test_at_a_time();
    quiet_panics();
    let fixtures = workspace_root().join("tests/fixtures/preferences");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    const CASES_PER_FILE: u64 = 1000;
    let (mut cases, mut refused) = (0, 0);
    for fixture in [
        "uppercase_train.jsonl",
        "uppercase_eval.parquet",
        "uppercase_eval_standard.parquet",
    ] {
        let original = std::fs::read(fixtures.join(fixture)).unwrap();
        let extension = Path::new(fixture).extension().unwrap().to_str().unwrap();
        for seed in 0..CASES_PER_FILE {
            let mutation =
                Mutator::new(seed * 104_729 + 11).mutation(&original, original.len() as u64, &[]);
            let bytes = mutation.apply(&original);
            let path = dir.path().join(format!("case-{seed}.{extension}"));
            std::fs::write(&path, &bytes).unwrap();
            let what = format!("{fixture} seed {seed} ({})", describe(&mutation));
            for skip_malformed in [false, true] {
                let outcome = run_case(&what, bytes.len(), || {
                    read_preference_file(&path, skip_malformed).map_err(|e| format!("{e:#}"))
                });
                if let Err(message) = outcome {
                    refused += 1;
                    assert_names_where(&what, &message, &path.display().to_string());
                    if extension == "jsonl" && !message.contains("no preference rows") {
                        let line = format!("{}:", path.display());
                        assert!(message.contains(&line), "{what}: no line number: {message}");
                    }
                }
                cases += 1;
            }
        }
    }
    eprintln!(
        "{cases} preference-file cases: {refused} refused, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        refused > 0 && refused < cases,
        "the mutations should both break and spare files"
    );
}

#[test]
fn mutated_pair_json_is_refused_with_a_field_or_accepted_never_crash() {
    let _serial = one_test_at_a_time();
    quiet_panics();
    let candidate = |text: &str, seed: u64| Candidate {
        text: text.into(),
        model: ModelRef {
            version: "v0".into(),
            sha256: "ab".repeat(32),
        },
        sampling: SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            ..SamplingParams::default()
        },
        seed,
    };
    let pair = PreferencePair {
        schema_version: shared::preference_pair::PAIR_SCHEMA_VERSION,
        idempotency_key: "3f1c1a4e-7c55-4b7e-9e7a-2b4a2f0e9d10".into(),
        annotator_id: "annotator-7".into(),
        prompt_id: None,
        conversation: vec![
            ChatMessage::system("You are helpful."),
            ChatMessage::user("What is the capital of France?"),
        ],
        candidate_a: candidate("Paris.", 1),
        candidate_b: candidate("The capital of France is Paris.", 2),
        vote: Vote::B,
        edited_answer: Some("Paris".into()),
        shown_at: time::macros::datetime!(2026-11-01 10:00:00 UTC),
        voted_at: time::macros::datetime!(2026-11-01 10:00:09 UTC),
    };
    let original = serde_json::to_string(&pair).unwrap();
    let baseline = PairLimits::default().read_submission(&original, None);
    let started = Instant::now();
    let (mut refused, mut accepted) = (0, 0);
    const CASES: u64 = 10_000;
    for seed in 0..CASES {
        let mutation =
            Mutator::new(seed * 31 + 5).mutation(original.as_bytes(), original.len() as u64, &[]);
        let bytes = mutation.apply(original.as_bytes());
        let what = format!("pair JSON seed {seed} ({mutation:?})");
        let outcome = run_case(&what, bytes.len(), || {
            let text = String::from_utf8_lossy(&bytes);
            PairLimits::default().read_submission(&text, None)
        });
        match outcome {
            Ok(_) => accepted += 1,
            Err(rejection) => {
                refused += 1;
                assert!(
                    !rejection.error().field.is_empty(),
                    "{what}: the error names no field"
                );
            }
        }
    }
    eprintln!(
        "{CASES} pair-JSON cases: {refused} refused, {accepted} accepted, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        baseline.is_ok(),
        "the unmutated pair must be valid: {baseline:?}"
    );
    assert!(refused > CASES / 2, "most mutations should be refused");
    assert!(started.elapsed() < Duration::from_secs(600));
}

/// A `dpo` command to run: its name, its arguments, and its path arguments.
type DpoCommand<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a Path)>);

/// Damaged GGUFs given to each `dpo` command that reads one: an error line naming the file and
/// the place, exit status 1 — no panic, no abort.
#[test]
fn every_dpo_command_refuses_damaged_ggufs_with_the_place() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let original = TinyQwen2::default()
        .with_key(
            "general.alignment",
            candle_core::quantized::gguf_file::Value::U32(32),
        )
        .to_bytes();
    let layout = check_header(
        &mut std::io::Cursor::new(original.as_slice()),
        original.len() as u64,
        true,
    )
    .unwrap();
    let first = |kind: FieldKind| {
        layout
            .fields
            .iter()
            .find(|f| f.kind == kind)
            .unwrap()
            .offset
    };
    let nth_offset = |n: usize| {
        layout
            .fields
            .iter()
            .filter(|f| f.kind == FieldKind::TensorOffset)
            .nth(n)
            .unwrap()
            .offset
    };
    let overwrite = |offset: u64, value: u64, width: usize| Mutation::Overwrite {
        offset,
        bytes: value.to_le_bytes()[..width].to_vec(),
    };
    // (what, mutation, text the error must contain)
    let cases = [
        (
            "cut inside the header",
            Mutation::Truncate(500),
            "byte offset",
        ),
        (
            "2^63 tensors",
            overwrite(8, 1 << 63, 8),
            "9223372036854775808 tensors",
        ),
        (
            "a string of u64::MAX bytes",
            overwrite(first(FieldKind::StringLength), u64::MAX, 8),
            "18446744073709551615 bytes long",
        ),
        (
            "an array of 2^62 elements",
            overwrite(first(FieldKind::ArrayLength), 1 << 62, 8),
            "array of 4611686018427387904 elements",
        ),
        (
            "value type 99",
            overwrite(first(FieldKind::ValueType), 99, 4),
            "unknown value type 99",
        ),
        (
            "tensor type 77",
            overwrite(first(FieldKind::TensorType), 77, 4),
            "unknown GGML type 77",
        ),
        (
            "a dimension of 2^40",
            overwrite(first(FieldKind::Dimension), 1 << 40, 8),
            "elements",
        ),
        (
            "two tensors at one offset",
            overwrite(nth_offset(1), 0, 8),
            "overlap",
        ),
        (
            "alignment 0",
            overwrite(
                layout.fields[layout
                    .fields
                    .iter()
                    .rposition(|f| f.kind == FieldKind::Scalar && f.width == 4)
                    .unwrap()]
                .offset,
                0,
                4,
            ),
            "general.alignment",
        ),
        (
            "cut inside the tensor data",
            Mutation::Truncate(original.len() as u64 - 100),
            "truncated",
        ),
    ];
    let data = workspace_root().join("tests/fixtures/preferences/uppercase_train.jsonl");
    for (index, (what, mutation, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("damaged-{index}.gguf"));
        std::fs::write(&path, mutation.apply(&original)).unwrap();
        let out = dir.path().join(format!("out-{index}"));
        let commands: [DpoCommand; 4] = [
            (
                "dpo chat",
                vec!["chat", "--cpu", "hi"],
                vec![("--model", &path)],
            ),
            (
                "dpo publish",
                vec!["publish"],
                vec![("--model", &path), ("--models-dir", &out)],
            ),
            (
                "dpo export",
                vec!["export", "--quant", "q8_0"],
                vec![("--model", &path), ("--out", &out)],
            ),
            (
                "dpo train",
                vec!["train", "--max-steps", "1"],
                vec![
                    ("--model", &path),
                    ("--data", &data),
                    ("--output-dir", &out),
                ],
            ),
        ];
        for (command, args, paths) in commands {
            let output = flywheel_tests::run_dpo(&args, &paths);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let case = format!("{command} on a GGUF with {what}");
            assert_eq!(output.status.code(), Some(1), "{case}: {stderr}");
            assert!(!stderr.contains("panicked"), "{case}: {stderr}");
            let error = stderr
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or_else(|| panic!("{case}: no error line: {stderr}"));
            assert!(
                error.contains(&path.display().to_string()) && error.contains(expected),
                "{case}: the error should name the file and say `{expected}`: {error}"
            );
        }
    }
}
