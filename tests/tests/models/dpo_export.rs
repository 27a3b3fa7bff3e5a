//! `dpo export` as a user runs it, on tiny generated Qwen2 models: an f32 export reloads bit
//! for bit (GGUF and HF directory) with llama.cpp's metadata; each quantized preset stays
//! within its error bound, types its tensors as llama.cpp would (fallbacks included, and
//! reported) and still chats; a LoRA run exports its merged weights with its lineage (parent
//! version, hyperparameters, metrics) in the manifest and the model card; bad sources and
//! occupied output directories are refused with the culprit named.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value as GgufValue;
use candle_core::{DType, Device, Tensor};
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{run_dpo, sha256_hex, succeed};
use native_trainer::export::tensor_quantizer::tensor_bytes;
use native_trainer::train::base_model::BaseModel;
use native_trainer::train::gguf_import::load_tensors;
use native_trainer::train::precision::Precision;
use native_trainer::train::training_model::load_trained;
use serde_json::Value;
use shared::{GgufModel, ModelManifest};

fn export(model: &Path, out: &Path, extra: &[&str]) -> (ModelManifest, String) {
    let mut args = vec!["export"];
    args.extend_from_slice(extra);
    let (stdout, stderr) = succeed(
        run_dpo(&args, &[("--model", model), ("--out", out)]),
        "dpo export",
    );
    let printed: ModelManifest =
        serde_json::from_str(stdout.lines().last().expect("a manifest line")).unwrap();
    let written: ModelManifest =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(printed, written, "printed and written manifests differ");
    (written, stderr)
}

fn gguf_weights(path: &Path) -> (GgufModel, HashMap<String, Tensor>) {
    let gguf = GgufModel::open(path).unwrap();
    let mut file = std::fs::File::open(path).unwrap();
    let weights = load_tensors(&gguf, &mut file, DType::F32, &Device::Cpu).unwrap();
    (gguf, weights)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// ‖a − b‖ / ‖a‖.
fn relative_rms_error(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a - b).unwrap().sqr().unwrap().sum_all().unwrap();
    let norm = a.sqr().unwrap().sum_all().unwrap();
    (diff.to_scalar::<f32>().unwrap() / norm.to_scalar::<f32>().unwrap()).sqrt()
}

fn greedy_reply(model: &Path, engine: &str) -> String {
    let (stdout, _) = succeed(
        run_dpo(
            &[
                "chat",
                "hello there",
                "--max-new-tokens",
                "8",
                "--engine",
                engine,
            ],
            &[("--model", model)],
        ),
        "dpo chat",
    );
    stdout
}

/// Every weight of `gguf` is bitwise the trained policy's (adapters merged) in `run_dir`;
/// returns how many differ from the `base` GGUF's.
fn assert_exported_weights_are_the_trained_ones(run_dir: &Path, gguf: &Path, base: &Path) -> usize {
    let trained = load_trained(run_dir, &Device::Cpu, Precision::F32)
        .unwrap()
        .unwrap();
    let (_, exported) = gguf_weights(gguf);
    let (_, base) = gguf_weights(base);
    let mut changed = 0;
    for (name, tensor) in trained.model.policy.merged_weights().unwrap() {
        assert_eq!(
            bits(&tensor),
            bits(&exported[&name]),
            "`{name}` is not the trained weight"
        );
        changed += usize::from(bits(&tensor) != bits(&base[&name]));
    }
    changed
}

fn tiny_model(dir: &Path, builder: TinyQwen2) -> PathBuf {
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, builder.to_bytes()).unwrap();
    path
}

#[test]
fn f32_export_reloads_bit_for_bit_with_llama_cpp_metadata_and_a_verifiable_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_model(dir.path(), TinyQwen2::default());
    let out = dir.path().join("tiny-f32");
    let (manifest, _) = export(&source, &out, &["--quant", "f32", "--hf-dtype", "f32"]);

    let (original, original_weights) = gguf_weights(&source);
    let (exported, exported_weights) = gguf_weights(&out.join("model.gguf"));
    assert_eq!(original_weights.len(), exported_weights.len());
    for (name, tensor) in &original_weights {
        assert_eq!(
            bits(tensor),
            bits(&exported_weights[name]),
            "GGUF `{name}` changed"
        );
    }
    let hf = BaseModel::load(&out, &Device::Cpu).unwrap();
    for (name, tensor) in &original_weights {
        assert_eq!(
            bits(tensor),
            bits(&hf.weights[name]),
            "safetensors `{name}` changed"
        );
    }

    // The HF directory exports again to the same weights and vocabulary: tokenizer.json →
    // GGUF tokens, merges and token types as llama.cpp's converter writes them.
    let again = dir.path().join("again");
    let (second, _) = export(&out, &again, &["--quant", "f32", "--no-hf"]);
    assert_eq!(
        second.parent_version.as_deref(),
        Some(manifest.version.as_str())
    );
    assert_eq!(second.base_model, "tiny-qwen2");
    let (reexported, reexported_weights) = gguf_weights(&again.join("model.gguf"));
    for (name, tensor) in &original_weights {
        assert_eq!(
            bits(tensor),
            bits(&reexported_weights[name]),
            "`{name}` via HF"
        );
    }
    for key in [
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.bos_token_id",
    ] {
        assert_eq!(
            format!("{:?}", original.metadata()[key]),
            format!("{:?}", reexported.metadata()[key]),
            "`{key}` changed on the way through tokenizer.json"
        );
    }

    // llama.cpp's metadata: the vocabulary and special ids unchanged, the header complete.
    let md = exported.metadata();
    let same = |key: &str| {
        assert_eq!(
            format!("{:?}", original.metadata()[key]),
            format!("{:?}", md[key]),
            "metadata `{key}` differs from the source's"
        )
    };
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.bos_token_id",
        "qwen2.block_count",
        "qwen2.embedding_length",
        "qwen2.feed_forward_length",
        "qwen2.attention.head_count",
        "qwen2.attention.head_count_kv",
        "qwen2.rope.freq_base",
        "qwen2.attention.layer_norm_rms_epsilon",
    ] {
        same(key);
    }
    assert_eq!(md["general.architecture"].to_string().unwrap(), "qwen2");
    assert_eq!(md["general.name"].to_string().unwrap(), "tiny-f32");
    assert_eq!(
        md["general.base_model.0.name"].to_string().unwrap(),
        "tiny-qwen2"
    );
    assert_eq!(md["general.file_type"].to_u32().unwrap(), 0);
    assert_eq!(md["general.quantization_version"].to_u32().unwrap(), 2);

    // The manifest's hashes and sizes are the files'.
    assert_eq!(manifest.quant, "f32");
    assert_eq!(manifest.parent_version, None);
    assert!(manifest.training.is_none());
    let gguf_bytes = std::fs::read(out.join("model.gguf")).unwrap();
    assert_eq!(manifest.gguf.sha256, sha256_hex(&gguf_bytes));
    assert_eq!(manifest.gguf.size, gguf_bytes.len() as u64);
    assert!(manifest.version.starts_with("tiny-f32-f32-"));
    let listed: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for name in [
        "model.gguf",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    ] {
        assert!(
            listed.contains(&name),
            "manifest lists no {name}: {listed:?}"
        );
    }
    for file in &manifest.files {
        let bytes = std::fs::read(out.join(&file.path)).unwrap();
        assert_eq!(file.sha256, sha256_hex(&bytes), "{}", file.path);
        assert_eq!(file.size, bytes.len() as u64, "{}", file.path);
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.starts_with(
            "---\nbase_model: tiny-qwen2\nlibrary_name: transformers\nmodel_name: tiny-f32\n"
        ),
        "{card}"
    );
    assert!(card.contains("dpo chat --model model.gguf"), "{card}");
    assert!(
        card.contains("pipeline(\"text-generation\", model=\"tiny-f32\""),
        "{card}"
    );
    assert!(card.contains("@inproceedings{rafailov2023direct"), "{card}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "qwen2");
    assert_eq!(config["torch_dtype"], "float32");

    for engine in ["candle", "wgpu"] {
        assert_eq!(
            greedy_reply(&source, engine),
            greedy_reply(&out.join("model.gguf"), engine),
            "{engine}"
        );
    }
}

#[test]
fn quantized_presets_stay_within_bounds_type_tensors_as_llama_cpp_and_still_chat() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_model(dir.path(), TinyQwen2::default());
    let (_, original) = gguf_weights(&source);
    // (preset, type of a 32-wide matrix, of a raised one (q4_k_m's `use_more_bits` picks
    // layer 1 of 2), of the output head, worst relative error)
    let presets = [
        ("f16", GgmlDType::F16, GgmlDType::F16, GgmlDType::F16, 1e-3),
        (
            "q8_0",
            GgmlDType::Q8_0,
            GgmlDType::Q8_0,
            GgmlDType::Q8_0,
            0.01,
        ),
        // Q6_K for the head does not fit 32-wide rows: Q8_0, as llama.cpp falls back.
        (
            "q4_0",
            GgmlDType::Q4_0,
            GgmlDType::Q4_0,
            GgmlDType::Q8_0,
            0.15,
        ),
        // Q4_K → Q5_0 and Q6_K → Q8_0 for rows narrower than a 256-value super-block.
        (
            "q4_k_m",
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q8_0,
            0.08,
        ),
    ];
    for (preset, matrix_type, raised_type, head_type, bound) in presets {
        let out = dir.path().join(preset);
        let (manifest, stderr) = export(&source, &out, &["--quant", preset, "--no-hf"]);
        assert_eq!(manifest.quant, preset);
        assert_eq!(manifest.files.len(), 2, "no HF files with --no-hf");
        let (gguf, weights) = gguf_weights(&out.join("model.gguf"));
        let types: HashMap<&str, GgmlDType> = gguf
            .content
            .tensor_infos
            .iter()
            .map(|(name, info)| (name.as_str(), info.ggml_dtype))
            .collect();
        assert_eq!(types["blk.1.attn_q.weight"], matrix_type, "{preset}");
        assert_eq!(types["blk.0.ffn_down.weight"], matrix_type, "{preset}");
        assert_eq!(types["blk.0.attn_v.weight"], matrix_type, "{preset}");
        assert_eq!(types["blk.1.ffn_down.weight"], raised_type, "{preset}");
        assert_eq!(types["blk.1.attn_v.weight"], raised_type, "{preset}");
        // The tiny model's head is its (tied) embedding.
        assert!(!types.contains_key("output.weight"), "{preset}");
        assert_eq!(types["token_embd.weight"], head_type, "{preset}");
        assert_eq!(types["blk.0.attn_norm.weight"], GgmlDType::F32, "{preset}");
        assert_eq!(types["blk.0.attn_q.bias"], GgmlDType::F32, "{preset}");
        if preset.starts_with('q') && preset != "q8_0" {
            assert!(
                stderr.contains("not whole") && stderr.contains("as llama.cpp does"),
                "{preset}: no fallback warning:\n{stderr}"
            );
        }
        for (name, tensor) in &original {
            let error = relative_rms_error(tensor, &weights[name]);
            assert!(error <= bound, "{preset}: `{name}` error {error} > {bound}");
        }
        // The browser's engine runs every preset (candle's CPU Q5_0 kernel needs an even
        // number of blocks per row, which 32-wide rows are not).
        let reply = greedy_reply(&out.join("model.gguf"), "wgpu");
        assert!(!reply.trim().is_empty(), "{preset}: empty reply");
    }
}

#[test]
fn each_block_type_quantizes_within_its_bound_and_threads_do_not_change_the_bytes() {
    // Gaussian-ish rows wide enough for K-quant super-blocks.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let values: Vec<f32> = (0..96 * 512)
        .map(|_| {
            let mut sum = 0.0;
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                sum += (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            sum * 0.05
        })
        .collect();
    let matrix = Tensor::from_vec(values, (96, 512), &Device::Cpu).unwrap();
    // Relative RMS error bounds for near-Gaussian weights (ggml's formats, generous margins).
    let bounds = [
        (GgmlDType::F16, 1e-3),
        (GgmlDType::Q8_0, 0.01),
        (GgmlDType::Q6K, 0.03),
        (GgmlDType::Q5_0, 0.06),
        (GgmlDType::Q4K, 0.10),
        (GgmlDType::Q4_0, 0.13),
    ];
    for (dtype, bound) in bounds {
        let bytes = tensor_bytes(&matrix, dtype).unwrap();
        let single = candle_core::quantized::QTensor::quantize(&matrix, dtype).unwrap();
        assert_eq!(
            bytes,
            single.data().unwrap().as_ref(),
            "{dtype:?}: chunked bytes differ"
        );
        let restored = candle_core::quantized::ggml_file::qtensor_from_ggml(
            dtype,
            &bytes,
            vec![96, 512],
            &Device::Cpu,
        )
        .unwrap()
        .dequantize(&Device::Cpu)
        .unwrap();
        let error = relative_rms_error(&matrix, &restored);
        assert!(error < bound, "{dtype:?}: relative error {error} ≥ {bound}");
        assert!(
            error > 0.0 || dtype == GgmlDType::F16,
            "{dtype:?}: lossless is suspicious"
        );
    }
}

#[test]
fn tied_embeddings_are_written_as_llama_cpp_expects_them() {
    let dir = tempfile::tempdir().unwrap();
    // The tiny model ties its head to its embedding.
    let source = tiny_model(dir.path(), TinyQwen2::default());
    let out = dir.path().join("tied");
    export(&source, &out, &["--quant", "q4_0", "--hf-dtype", "f32"]);
    let (gguf, _) = gguf_weights(&out.join("model.gguf"));
    let infos = &gguf.content.tensor_infos;
    assert!(
        !infos.contains_key("output.weight"),
        "tied head written twice"
    );
    // The embedding doubles as the head, so it gets the head's type (Q6_K → Q8_0 here).
    assert_eq!(infos["token_embd.weight"].ggml_dtype, GgmlDType::Q8_0);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["tie_word_embeddings"], true);
    let hf = BaseModel::load(&out, &Device::Cpu).unwrap();
    assert!(!hf.weights.contains_key("lm_head.weight"));
    for engine in ["candle", "wgpu"] {
        assert_eq!(
            greedy_reply(&source, engine),
            greedy_reply(&out.join("model.gguf"), engine),
            "{engine}"
        );
    }
}

#[test]
fn a_lora_run_exports_its_merged_weights_with_its_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_model(dir.path(), TinyQwen2::default());
    // Round 1's served model, then a LoRA round trained from it.
    let round1 = dir.path().join("round1");
    export(
        &source,
        &round1,
        &["--quant", "f32", "--no-hf", "--version-id", "round-1"],
    );
    let data = dir.path().join("train.jsonl");
    let rows: String = (0..8)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"prompt": format!("Question {i}: which colour?"), "chosen": " blue sky", "rejected": " red mud"})
            )
        })
        .collect();
    std::fs::write(&data, rows).unwrap();
    let run_dir = dir.path().join("run");
    succeed(
        run_dpo(
            &[
                "train",
                "--use-peft",
                "--max-steps",
                "3",
                "--learning-rate",
                "0.01",
                "--set",
                "lora_r=4",
                "--set",
                "per_device_train_batch_size=2",
            ],
            &[
                ("--model", &round1.join("model.gguf")),
                ("--data", &data),
                ("--output-dir", &run_dir),
            ],
        ),
        "dpo train",
    );
    let round2 = dir.path().join("round2");
    let (manifest, _) = export(&run_dir, &round2, &["--quant", "f32", "--hf-dtype", "f32"]);

    assert_eq!(manifest.parent_version.as_deref(), Some("round-1"));
    assert_eq!(manifest.base_model, "round1");
    let training = manifest.training.as_ref().expect("a training summary");
    assert_eq!(training.method, "dpo");
    assert_eq!(training.adaptation, "lora");
    assert_eq!(training.global_step, 3);
    assert_eq!(training.hyperparameters["learning_rate"], 0.01);
    assert_eq!(training.hyperparameters["lora_r"], 4);
    assert!(training.hyperparameters.contains_key("beta"));
    assert!(!training.hyperparameters.contains_key("output_dir"));
    for metric in ["loss", "rewards/accuracies", "train_runtime"] {
        assert!(
            training.metrics.contains_key(metric),
            "no {metric}: {:?}",
            training.metrics
        );
    }

    // The GGUF holds W + (α/r)·BA, exactly as the trained policy computes it.
    let changed =
        assert_exported_weights_are_the_trained_ones(&run_dir, &round2.join("model.gguf"), &source);
    assert!(
        changed >= 4,
        "only {changed} weights differ from the base: adapters not merged"
    );

    let card = std::fs::read_to_string(round2.join("README.md")).unwrap();
    for expected in [
        "base_model: round1",
        "- generated_from_trainer\n- dpo\n",
        "This model is a fine-tuned version of `round1`",
        "trained with DPO, a method introduced in [Direct Preference Optimization",
        "LoRA training, 3 optimizer steps",
        "| `learning_rate` | 0.01 |",
        "| `rewards/accuracies` |",
        "- candle: ",
    ] {
        assert!(card.contains(expected), "card lacks {expected:?}:\n{card}");
    }
    let (gguf, _) = gguf_weights(&round2.join("model.gguf"));
    assert_eq!(
        gguf.metadata()["general.name"].to_string().unwrap(),
        "round2"
    );
    assert_eq!(
        format!("{:?}", gguf.metadata()["general.tags"]),
        format!(
            "{:?}",
            GgufValue::Array(vec![
                GgufValue::String("dpo".into()),
                GgufValue::String("dpo-flywheel".into())
            ])
        )
    );
}

#[test]
fn a_full_fine_tune_exports_its_trained_weights() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_model(dir.path(), TinyQwen2::default());
    let data = dir.path().join("train.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"Sky?\", \"chosen\": \" blue\", \"rejected\": \" red\"}\n".repeat(4),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    succeed(
        run_dpo(
            &["train", "--max-steps", "2", "--learning-rate", "0.001"],
            &[
                ("--model", &source),
                ("--data", &data),
                ("--output-dir", &run_dir),
            ],
        ),
        "dpo train",
    );
    let out = dir.path().join("full");
    let (manifest, _) = export(&run_dir, &out, &["--quant", "f32", "--no-hf"]);
    let training = manifest.training.expect("a training summary");
    assert_eq!(training.adaptation, "full");
    assert_eq!(training.global_step, 2);
    assert!(
        !training.hyperparameters.contains_key("lora_r"),
        "no LoRA settings for a full run"
    );
    let changed =
        assert_exported_weights_are_the_trained_ones(&run_dir, &out.join("model.gguf"), &source);
    assert!(
        changed > 10,
        "only {changed} weights moved in full fine-tuning"
    );
}

#[test]
fn bad_sources_and_occupied_output_directories_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_model(dir.path(), TinyQwen2::default());
    let out = dir.path().join("export");
    export(&source, &out, &["--quant", "q8_0", "--hf-dtype", "f32"]);
    let before = std::fs::read(out.join("model.gguf")).unwrap();

    let again = run_dpo(&["export"], &[("--model", &source), ("--out", &out)]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already holds an export") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(out.join("model.gguf")).unwrap(),
        before,
        "the export was touched"
    );

    // An HF directory whose config disagrees with a tensor's shape.
    let config_path = out.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["intermediate_size"] = Value::from(96);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let failed = run_dpo(
        &["export", "--no-hf"],
        &[("--model", &out), ("--out", &dir.path().join("x"))],
    );
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("mlp.") && stderr.contains("has shape") && stderr.contains("96"),
        "{stderr}"
    );

    // Another architecture.
    let llama = dir.path().join("llama.gguf");
    std::fs::write(&llama, TinyQwen2::default().as_llama().to_bytes()).unwrap();
    let failed = run_dpo(
        &["export"],
        &[("--model", &llama), ("--out", &dir.path().join("y"))],
    );
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("llama.gguf") && stderr.contains("only qwen2"),
        "{stderr}"
    );
}
