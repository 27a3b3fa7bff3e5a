//! Mixed precision as TRL users set it, on the CPU (where it works, slowly: candle widens bf16
//! products to f32): with `bf16 = true` (and `fp16 = true`) the activations run in the
//! compute dtype while the trainable parameters and their gradients stay f32, and the
//! completion log-probs and loss stay within 2e-2 of the f32 run's; `dpo train` with bf16
//! learns and logs f32 metrics; `tf32 = true` on the CPU and bf16 with fp16 are refused with
//! a clear message.

use candle_core::{DType, Device, Tensor};
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{run_dpo, succeed, workspace_root};
use native_trainer::train::LoraConfig;
use native_trainer::train::base_model::BaseModel;
use native_trainer::train::dpo_batch::{DpoBatch, dpo_step};
use native_trainer::train::dpo_loss::DpoLossConfig;
use native_trainer::train::pair_tokens::PairTokens;
use native_trainer::train::precision::Precision;
use native_trainer::train::training_model::TrainingModel;

fn batch() -> DpoBatch {
    let pair = |prompt: &[u32], chosen: &[u32], rejected: &[u32]| PairTokens {
        prompt_ids: prompt.to_vec(),
        chosen_ids: chosen.to_vec(),
        rejected_ids: rejected.to_vec(),
    };
    DpoBatch::collate(
        &[
            pair(&[260, 104, 101], &[108, 108, 111], &[120]),
            pair(&[260, 104, 101], &[98, 99], &[100, 102, 103]),
        ],
        0,
        None,
        &Device::Cpu,
    )
    .unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

#[test]
fn bf16_and_f16_keep_trainables_f32_and_scores_within_2e_2_of_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, TinyQwen2::default().to_bytes()).unwrap();
    let base = BaseModel::load(&path, &Device::Cpu).unwrap();
    let lora = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: LoraConfig::MODULES.iter().map(|m| m.to_string()).collect(),
        ..LoraConfig::default()
    };
    let batch = batch();
    let reference = Tensor::new(&[-20.0f32, -9.0, -14.0, -25.0], &Device::Cpu).unwrap();
    let config = DpoLossConfig::default();
    for lora in [None, Some(&lora)] {
        let run = |precision: Precision| {
            let model = TrainingModel::new(&base, lora, 3, precision).unwrap();
            assert_eq!(model.policy.compute_dtype(), precision.compute_dtype());
            let logps = batch.score(&model.policy, true).unwrap().logps;
            assert_eq!(logps.dtype(), DType::F32, "log-probs are f32");
            let (loss, _) = dpo_step(&model.policy, &batch, &reference, &config).unwrap();
            assert_eq!(loss.dtype(), DType::F32, "the loss is f32");
            let grads = loss.backward().unwrap();
            for (name, var) in model.named_vars() {
                assert_eq!(var.dtype(), DType::F32, "{name} is an f32 parameter");
                if let Some(grad) = grads.get(var.as_tensor()) {
                    assert_eq!(grad.dtype(), DType::F32, "{name}'s gradient is f32");
                }
            }
            (values(&logps), loss.to_scalar::<f32>().unwrap())
        };
        let (exact, exact_loss) = run(Precision::F32);
        for precision in [Precision::Bf16, Precision::F16] {
            let (mixed, mixed_loss) = run(precision);
            let what = format!("{precision:?}, LoRA {}", lora.is_some());
            for (a, b) in exact.iter().zip(&mixed) {
                assert!(
                    (a - b).abs() <= 2e-2 * a.abs().max(1.0),
                    "{what}: log-probs {exact:?} vs {mixed:?}"
                );
            }
            assert!(
                (exact_loss - mixed_loss).abs() <= 2e-2 * exact_loss.abs(),
                "{what}: loss {exact_loss} vs {mixed_loss}"
            );
            assert_ne!(exact, mixed, "{what}: the run did not change precision");
        }
    }
}

#[test]
fn dpo_train_in_bf16_learns_and_bad_precision_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    std::fs::write(&model, TinyQwen2::default().to_bytes()).unwrap();
    let data = workspace_root().join("tests/fixtures/preferences/uppercase_train.jsonl");
    let train = |settings: &[&str], out: &str| {
        let mut args = vec!["train", "--max-steps", "3", "--learning-rate", "1e-3"];
        for setting in settings {
            args.extend(["--set", setting]);
        }
        run_dpo(
            &args,
            &[
                ("--model", &model),
                ("--data", &data),
                ("--output-dir", &dir.path().join(out)),
            ],
        )
    };
    let (_, stderr) = succeed(
        // One batch of every row: each step's loss is on the same pairs.
        train(
            &[
                "bf16=true",
                "logging_steps=1",
                "per_device_train_batch_size=64",
            ],
            "bf16",
        ),
        "bf16 run",
    );
    assert!(stderr.contains("bf16 mixed precision"), "{stderr}");
    let losses: Vec<f64> = std::fs::read_to_string(dir.path().join("bf16/metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
        .collect();
    assert_eq!(losses.len(), 3, "{losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        losses[2] < losses[0],
        "bf16 training did not lower the loss: {losses:?}"
    );

    for (settings, expected) in [
        (&["tf32=true"][..], "tf32 = true needs an NVIDIA GPU"),
        (
            &["bf16=true", "fp16=true"][..],
            "bf16 and fp16 are both set",
        ),
    ] {
        let output = train(settings, "refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{settings:?}: {stderr}");
        assert!(stderr.contains(expected), "{settings:?}: {stderr}");
    }
}
