//! `cargo bench -p native-trainer --bench export_quality` (or `cargo xtask bench-export`):
//! how much each `dpo export` preset changes the model, and how long exporting takes.
//!
//! 1. Quality on the real model (`DPO_TEST_MODEL`, dequantized: the "f32 model"): for each
//!    preset, the KL divergence KL(p_f32 ‖ p_preset) of next-token distributions and the top-1
//!    agreement, averaged over every position of a fixed ~300-token text, all computed with
//!    the same f32 forward pass on the dequantized weights. The same numbers for llama.cpp's
//!    own Q4_K_M of the f32 export (`llama_model_quantize` through llama-cpp-python, when
//!    `PYTHON` has it) set the q4_k_m target (within 1.5× of llama.cpp's KL).
//! 2. Export time with Qwen2.5-1.5B-Instruct's shapes (28 blocks, 1536 wide, FFN 8960, tied
//!    151936-token embedding; random weights) for each preset, GGUF only.
//!
//! A benchmark: it prints a table and fails on nothing but errors.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use native_trainer::export::QuantPreset;
use native_trainer::export::export_source::ExportSource;
use native_trainer::export::gguf_export::write_model_gguf;
use native_trainer::train::base_model::BaseModel;
use native_trainer::train::{Qwen2, Qwen2Config};

const PRESETS: [QuantPreset; 5] = [
    QuantPreset::F32,
    QuantPreset::F16,
    QuantPreset::Q8_0,
    QuantPreset::Q4KM,
    QuantPreset::Q4_0,
];

const TEXT: &str =
    "The history of the bicycle begins in the early nineteenth century, when inventors in \
Europe experimented with two-wheeled machines that riders pushed along with their feet. Pedals \
arrived decades later, fixed to the front wheel, and the high-wheeled designs that followed were \
fast but dangerous. The safety bicycle, with two wheels of equal size and a chain driving the rear \
wheel, changed everything: it was stable, efficient and easy to learn. Pneumatic tyres made the \
ride comfortable, and within a few years cycling clubs, road maps and repair shops spread across \
cities and villages alike. Bicycles gave workers a cheap way to reach factories, let women travel \
independently, and pushed governments to pave roads long before cars were common. Engineers \
refined gears, brakes and frames; racers tested every improvement in long and punishing races. \
Today the bicycle remains one of the most efficient machines ever built, converting human effort \
into motion with remarkably little waste. In many cities it is again a serious means of transport, \
supported by dedicated lanes, shared fleets and electric assistance for hills and heavy loads.

def fibonacci(n):
    \"\"\"Return the first n Fibonacci numbers.\"\"\"
    numbers = [0, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[:n]
";

fn main() -> Result<()> {
    let model = std::env::var_os("DPO_TEST_MODEL")
        .map(std::path::PathBuf::from)
        .context("set DPO_TEST_MODEL to the real model (`dpo fetch` prints its path)")?;
    let work = tempfile::tempdir()?;
    let source = ExportSource::load(&model)?;
    let ids = source.base.text.tokenizer.encode(TEXT)?;
    println!(
        "export quality: {} ({} tokens of text), KL(f32 ‖ preset) and top-1 agreement per position\n",
        model.display(),
        ids.len()
    );
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;

    let reference_path = work.path().join("f32.gguf");
    let mut rows = Vec::new();
    let mut reference: Option<Tensor> = None;
    for preset in PRESETS {
        let path = work.path().join(format!("{}.gguf", preset.name()));
        let started = Instant::now();
        let written = write_model_gguf(&source, preset, "bench", &path)?;
        let seconds = started.elapsed().as_secs_f64();
        let log_probs = log_probs(&path, &input)?;
        let (kl, top1) = match &reference {
            Some(reference) => compare(reference, &log_probs)?,
            None => (0.0, 1.0),
        };
        if reference.is_none() {
            reference = Some(log_probs);
        }
        rows.push((
            format!("dpo export {}", preset.name()),
            written.file.size,
            kl,
            top1,
            format!("{seconds:.1}"),
        ));
        if preset != QuantPreset::F32 {
            std::fs::remove_file(&path)?;
        }
    }
    let reference = reference.expect("f32 comes first");
    let llama_path = work.path().join("llama-q4_k_m.gguf");
    match llama_cpp_quantize(&reference_path, &llama_path) {
        Ok(seconds) => {
            let (kl, top1) = compare(&reference, &log_probs(&llama_path, &input)?)?;
            rows.push((
                "llama.cpp Q4_K_M".into(),
                std::fs::metadata(&llama_path)?.len(),
                kl,
                top1,
                format!("{seconds:.1}"),
            ));
        }
        Err(error) => eprintln!("llama.cpp row skipped: {error:#}"),
    }
    println!("| file | size MB | KL vs f32 | top-1 agreement | export s |");
    println!("|---|---:|---:|---:|---:|");
    for (name, size, kl, top1, seconds) in rows {
        println!(
            "| {name} | {:.1} | {kl:.2e} | {:.1}% | {seconds} |",
            size as f64 / 1e6,
            top1 * 100.0
        );
    }
    drop(source);

    println!("\nexport time, Qwen2.5-1.5B-Instruct shapes (random weights), GGUF only\n");
    let big = qwen2_5_1_5b_shaped(&model)?;
    println!("| preset | size MB | seconds |");
    println!("|---|---:|---:|");
    for preset in PRESETS {
        let path = work.path().join("big.gguf");
        let started = Instant::now();
        let written = write_model_gguf(&big, preset, "bench", &path)?;
        println!(
            "| {} | {:.1} | {:.1} |",
            preset.name(),
            written.file.size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

/// Log-probabilities `(tokens, vocab)` of every next token, f32 forward on the GGUF's
/// dequantized weights.
fn log_probs(gguf: &Path, input: &Tensor) -> Result<Tensor> {
    let base = BaseModel::load(gguf, &Device::Cpu)?;
    let vb = VarBuilder::from_tensors(base.weights.clone(), DType::F32, &Device::Cpu);
    let model = Qwen2::new(&base.config, &vb)?;
    let logits = model.forward(input)?.squeeze(0)?;
    Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
}

/// Mean KL(p ‖ q) per position and the fraction of positions with the same argmax.
fn compare(reference: &Tensor, other: &Tensor) -> Result<(f64, f64)> {
    let kl = (reference.exp()? * (reference - other)?)?
        .sum(D::Minus1)?
        .mean_all()?
        .to_scalar::<f32>()?;
    let same = reference
        .argmax(D::Minus1)?
        .eq(&other.argmax(D::Minus1)?)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()?;
    Ok((f64::from(kl), f64::from(same)))
}

/// llama.cpp's Q4_K_M of `input` (llama-cpp-python's binding of `llama_model_quantize`).
fn llama_cpp_quantize(input: &Path, output: &Path) -> Result<f64> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import sys, time, llama_cpp\n\
        p = llama_cpp.llama_model_quantize_default_params()\n\
        p.ftype = 15\n\
        p.nthread = 2\n\
        t = time.time()\n\
        rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p)\n\
        assert rc == 0, rc\n\
        print(time.time() - t)\n";
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(input)
        .arg(output)
        .output()
        .with_context(|| format!("running {python}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{python} could not run llama_model_quantize (pip install llama-cpp-python): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The real model's tokenizer with Qwen2.5-1.5B-Instruct's shapes and random weights.
fn qwen2_5_1_5b_shaped(tokenizer_source: &Path) -> Result<ExportSource> {
    let mut source = ExportSource::load(tokenizer_source)?;
    let config = Qwen2Config {
        vocab_size: 151_936,
        hidden_size: 1536,
        intermediate_size: 8960,
        num_hidden_layers: 28,
        num_attention_heads: 12,
        num_key_value_heads: 2,
        rope_theta: 1e6,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        max_position_embeddings: 32_768,
    };
    let (d, ff, kv) = (1536, 8960, 256);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![151_936, d]),
        ("model.norm.weight".into(), vec![d]),
    ];
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for (name, dims) in [
            ("input_layernorm.weight", vec![d]),
            ("post_attention_layernorm.weight", vec![d]),
            ("self_attn.q_proj.weight", vec![d, d]),
            ("self_attn.q_proj.bias", vec![d]),
            ("self_attn.k_proj.weight", vec![kv, d]),
            ("self_attn.k_proj.bias", vec![kv]),
            ("self_attn.v_proj.weight", vec![kv, d]),
            ("self_attn.v_proj.bias", vec![kv]),
            ("self_attn.o_proj.weight", vec![d, d]),
            ("mlp.gate_proj.weight", vec![ff, d]),
            ("mlp.up_proj.weight", vec![ff, d]),
            ("mlp.down_proj.weight", vec![d, ff]),
        ] {
            shapes.push((format!("{p}.{name}"), dims));
        }
    }
    source.weights = shapes
        .into_iter()
        .map(|(name, dims)| Ok((name, Tensor::randn(0f32, 0.02, dims, &Device::Cpu)?)))
        .collect::<Result<_>>()?;
    source.base.weights.clear();
    source.base.config = config;
    Ok(source)
}
