//! KTO parity with TRL 1.16's KTOTrainer (fixture: `tests/fixtures/make_kto_fixtures.py`, the
//! tiny formula-weight Qwen2 of the DPO parity tests with the real tokenizer). Our data path
//! (`LabelledData::load` on the rows as a JSON Lines file: unpaired standard and
//! conversational rows, a paired file unpaired) builds TRL's prompt, completion and KL
//! completion ids; and 10 in-order steps of our KTO loss with AdamW give TRL's loss (±2e-3
//! relative), KL estimate, rewards and log-probs at every step — the `kto` loss in one batch
//! and in blocks of three with `desirable_weight`, `apo_zero_unpaired`, and
//! `undesirable_weight`.

use std::io::Write;

use candle_core::Device;
use flywheel_tests::{fixture, real_model};
use native_trainer::train::Qwen2Config;
use native_trainer::train::kto_batch::{KtoBatch, kto_step};
use native_trainer::train::labelled_data::LabelledData;
use native_trainer::train::optimization::{AdamWParams, TrainerOptimizer};
use native_trainer::train::pair_tokens::LabelledTokens;
use native_trainer::train::training_config::{TrainingConfig, parse_override};
use serde_json::Value;
use shared::{GgufModel, ModelText};

use super::train_trl_parity::{close, named_vars, reference_and_policy};

/// A case's settings as our config: KTOConfig's keys, `method = kto`.
fn case_config(case: &Value, beta: f64) -> TrainingConfig {
    let mut settings = vec!["method=kto".to_string(), format!("beta={beta}")];
    for (key, value) in case["settings"].as_object().unwrap() {
        settings.push(format!("{key}={value}"));
    }
    let overrides: Vec<_> = settings
        .iter()
        .map(|s| parse_override(s).unwrap())
        .collect();
    TrainingConfig::load(None, &overrides).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn labelled_rows_tokenize_to_trls_ids_with_its_kl_completions() {
    let path = real_model();
    let mut file = std::fs::File::open(&path).unwrap();
    let gguf = GgufModel::read(&mut file, &path.display().to_string()).unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let fixture = fixture("kto_trl.json");
    let dir = tempfile::tempdir().unwrap();
    for (name, case) in fixture["cases"].as_object().unwrap() {
        let data_path = dir.path().join(format!("{name}.jsonl"));
        let mut data_file = std::fs::File::create(&data_path).unwrap();
        for row in case["rows"].as_array().unwrap() {
            writeln!(data_file, "{row}").unwrap();
        }
        let config = case_config(case, fixture["beta"].as_f64().unwrap());
        let data = LabelledData::load(&data_path, &text, &config).unwrap();
        let expected = case["examples"].as_array().unwrap();
        assert_eq!(data.rows.len(), expected.len(), "{name}: rows");
        for (i, (ours, theirs)) in data.rows.iter().zip(expected).enumerate() {
            assert_eq!(
                ours.prompt_ids,
                ids(&theirs["prompt_ids"]),
                "{name} row {i}: prompt"
            );
            assert_eq!(
                ours.completion_ids,
                ids(&theirs["completion_ids"]),
                "{name} row {i}: completion"
            );
            assert_eq!(
                ours.desirable,
                theirs["label"] == true,
                "{name} row {i}: label"
            );
            match &data.kl_completions {
                Some(kl) => assert_eq!(
                    kl[i],
                    ids(&theirs["kl_completion_ids"]),
                    "{name} row {i}: KL completion"
                ),
                None => assert!(theirs["kl_completion_ids"].is_null(), "{name}: no KL"),
            }
        }
    }
}

#[test]
fn kto_losses_follow_trls_ten_steps() {
    let fixture = fixture("kto_trl.json");
    let config: Qwen2Config =
        serde_json::from_value(flywheel_tests::fixture("dpo_trl.json")["config"].clone()).unwrap();
    for (name, case) in fixture["cases"].as_object().unwrap() {
        let settings = case_config(case, fixture["beta"].as_f64().unwrap());
        let loss_config = settings.kto_loss_config();
        let rows: Vec<LabelledTokens> = case["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| LabelledTokens {
                prompt_ids: ids(&e["prompt_ids"]),
                completion_ids: ids(&e["completion_ids"]),
                desirable: e["label"] == true,
            })
            .collect();
        let kl: Option<Vec<Vec<u32>>> =
            case["examples"][0]["kl_completion_ids"]
                .is_array()
                .then(|| {
                    case["examples"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| ids(&e["kl_completion_ids"]))
                        .collect()
                });
        // TRL's sequential sampler: the blocks in order, epoch after epoch.
        let blocks: Vec<Vec<usize>> = (0..rows.len())
            .collect::<Vec<_>>()
            .chunks(settings.per_device_train_batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let (reference, trainable, policy) = reference_and_policy(&config);
        let mut optimizer = TrainerOptimizer::new(
            named_vars(&trainable),
            AdamWParams {
                learning_rate: fixture["learning_rate"].as_f64().unwrap(),
                ..AdamWParams::default()
            },
        )
        .unwrap();
        for (step, expected) in case["log_history"].as_array().unwrap().iter().enumerate() {
            let block = &blocks[step % blocks.len()];
            let batch_rows: Vec<&LabelledTokens> = block.iter().map(|&i| &rows[i]).collect();
            let batch_kl: Option<Vec<&[u32]>> = kl
                .as_ref()
                .map(|kl| block.iter().map(|&i| kl[i].as_slice()).collect());
            let batch =
                KtoBatch::collate(&batch_rows, batch_kl.as_deref(), 0, None, &Device::Cpu).unwrap();
            let reference_logps = batch.sequences.logps(&reference, false).unwrap();
            let (loss, metrics) =
                kto_step(&policy, &batch, &reference_logps, &loss_config).unwrap();
            let grads = loss.backward().unwrap();
            let ours = serde_json::to_value(&metrics).unwrap();
            let step_name = format!("{name} step {}", step + 1);
            eprintln!(
                "{step_name}: loss {:.6} (TRL {:.6}), kl {:.5} (TRL {:.5})",
                metrics.loss,
                expected["loss"].as_f64().unwrap(),
                metrics.kl,
                expected["kl"].as_f64().unwrap()
            );
            for (key, relative, absolute) in [
                ("loss", 2e-3, 1e-5),
                ("kl", 1e-2, 1e-3),
                ("rewards/chosen", 1e-2, 1e-3),
                ("rewards/rejected", 1e-2, 1e-3),
                ("rewards/margins", 1e-2, 1e-3),
                ("logps/chosen", 1e-3, 1e-3),
                ("logps/rejected", 1e-3, 1e-3),
                ("logits/chosen", 1e-2, 1e-4),
                ("logits/rejected", 1e-2, 1e-4),
            ] {
                match (ours.get(key), expected.get(key)) {
                    (Some(a), Some(b)) => {
                        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                        assert!(
                            close(a, b, relative, absolute),
                            "{step_name}: {key} ours {a}, TRL {b}"
                        );
                    }
                    (None, None) => {}
                    (a, b) => panic!("{step_name}: {key} ours {a:?}, TRL {b:?}"),
                }
            }
            optimizer.step(&grads).unwrap();
        }
    }
}
