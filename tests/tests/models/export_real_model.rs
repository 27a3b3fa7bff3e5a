//! `dpo export` of the real Qwen2.5-Coder-0.5B-Instruct GGUF, checked by independent readers:
//! the q8_0 export is byte for byte the file llama.cpp ran for `export_llama_cpp.json`, and
//! candle's `quantized_qwen2` and our wgpu engine reply to it greedily as llama.cpp did; the
//! q4_k_m export keeps the original's vocabulary, special ids and chat template exactly, and
//! has its type mixture (llama.cpp made the original with Q4_K_M, rows of 896 falling back);
//! llama.cpp's own Python `gguf` reader reads the export's header and tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use flywheel_tests::llama_cpp_parity::assert_greedy_parity;
use flywheel_tests::{dpo, fixture, real_model, sha256_hex};
use native_trainer::chat::CandleSequence;
use native_trainer::chat::native_engines::load_wgpu;
use serde_json::Value;
use shared::GgufModel;

/// The name make_export_fixtures.py exported under (general.name is part of the bytes).
const FIXTURE_NAME: &str = "qwen2.5-coder-0.5b-instruct-dpo-export";

fn export(quant: &str, out: &Path) -> PathBuf {
    let output = dpo()
        .args([
            "export",
            "--quant",
            quant,
            "--no-hf",
            "--name",
            FIXTURE_NAME,
        ])
        .arg("--model")
        .arg(real_model())
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "dpo export failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out.join("model.gguf")
}

#[test]
fn the_q8_0_export_is_the_file_llama_cpp_ran_and_both_engines_reply_as_it_did() {
    let fixture = fixture("export_llama_cpp.json");
    let dir = tempfile::tempdir().unwrap();
    let gguf = export("q8_0", &dir.path().join("q8_0"));
    let bytes = std::fs::read(&gguf).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        fixture["source"]["export_sha256"].as_str().unwrap(),
        "the q8_0 export changed: regenerate tests/fixtures/export_llama_cpp.json with \
         make_export_fixtures.py if that was intended"
    );
    drop(bytes);

    let (mut candle, text) = CandleSequence::load(&gguf, true).unwrap();
    assert_greedy_parity(&mut candle, &text, &fixture);
    let (mut wgpu, text, _) = load_wgpu(&gguf, 512).unwrap();
    assert_greedy_parity(&mut wgpu, &text, &fixture);
}

#[test]
fn the_q4_k_m_export_keeps_the_vocabulary_and_llama_cpp_mixture_and_gguf_py_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let gguf_path = export("q4_k_m", &dir.path().join("q4_k_m"));
    let original = GgufModel::open(&real_model()).unwrap();
    let exported = GgufModel::open(&gguf_path).unwrap();
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template",
        "general.file_type",
        "general.quantization_version",
        "qwen2.context_length",
        "qwen2.rope.freq_base",
        "qwen2.attention.layer_norm_rms_epsilon",
    ] {
        assert_eq!(
            format!("{:?}", original.metadata()[key]),
            format!("{:?}", exported.metadata()[key]),
            "`{key}` differs from the original's"
        );
    }
    let type_counts = |gguf: &GgufModel| {
        let mut counts = BTreeMap::new();
        for info in gguf.content.tensor_infos.values() {
            *counts.entry(format!("{:?}", info.ggml_dtype)).or_insert(0) += 1;
        }
        counts
    };
    assert_eq!(type_counts(&original), type_counts(&exported));
    let types = |name: &str| format!("{:?}", exported.content.tensor_infos[name].ggml_dtype);
    assert_eq!(types("output.weight"), "Q8_0"); // Q6_K, rows of 896 → Q8_0
    assert_eq!(types("token_embd.weight"), "Q5_0"); // Q4_K → Q5_0
    assert_eq!(types("blk.0.ffn_down.weight"), "Q6K"); // 4864-wide rows fit Q6_K
    assert_eq!(types("blk.3.ffn_down.weight"), "Q4K");
    assert_eq!(types("blk.5.attn_v.weight"), "Q8_0");

    // llama.cpp's own reader.
    let python = std::env::var_os("DPO_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "DPO_TEST_PYTHON is not set: run the tests with `cargo xtask test`, which makes a \
             Python with the `gguf` package, or point it at one"
        )
    });
    let script = r#"
import json, sys, gguf
r = gguf.GGUFReader(sys.argv[1])
f = lambda k: r.fields[k].contents()
print(json.dumps({
    "architecture": f("general.architecture"), "name": f("general.name"),
    "blocks": f("qwen2.block_count"), "tokens": len(f("tokenizer.ggml.tokens")),
    "eos": f("tokenizer.ggml.eos_token_id"), "file_type": f("general.file_type"),
    "tensors": {t.name: [t.tensor_type.name, [int(d) for d in t.shape]] for t in r.tensors},
}))
"#;
    let output = Command::new(python)
        .args(["-c", script])
        .arg(&gguf_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "gguf-py cannot read the export:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["architecture"], "qwen2");
    assert_eq!(read["name"], FIXTURE_NAME);
    assert_eq!(read["blocks"], 24);
    assert_eq!(read["tokens"], 151_936);
    assert_eq!(read["eos"], 151_645);
    assert_eq!(read["file_type"], 15);
    let tensors = read["tensors"].as_object().unwrap();
    assert_eq!(tensors.len(), exported.content.tensor_infos.len());
    // gguf-py lists dimensions innermost first: [row length, rows].
    assert_eq!(
        tensors["blk.0.ffn_down.weight"],
        serde_json::json!(["Q6_K", [4864, 896]])
    );
    assert_eq!(
        tensors["output.weight"],
        serde_json::json!(["Q8_0", [896, 151_936]])
    );
}
