//! The wgpu engine's throughput on a model of Qwen/Qwen2.5-1.5B-Instruct's shapes (random
//! weights, Q4_K_M's block types, generated here: nothing to download), in each matrix-product
//! layout, on whatever adapter wgpu opens — lavapipe here, a real GPU where there is one.
//! Prints a table: load seconds, prefill tok/s for a 512-token prompt and decode tok/s over
//! 128 greedy tokens (the `cargo xtask bench` measures, without the tokenizer), and how much of
//! a decode step the host spends recording and submitting it.
//!
//! `cargo bench -p flywheel-tests --bench engine_shapes -- [--blocks N] [--prompt-tokens N]
//! [--decode-tokens N] [--plans PLAN,PLAN,…] [--write-gguf PATH [--vocabulary GGUF]]` where a
//! PLAN is `auto` (what the adapter gets) or a plan name (`shared::wgpu_engine::matmul_plan_name`):
//! `cpu`, `browser-cpu`, `gpu`, or `DECODE/BATCHEDxTILE` such as `lanes:16/tiled-f16x32`, with
//! `+subgroups` for lane sums by subgroup shuffles (the adapter must offer subgroups that hold
//! the lanes). `--write-gguf` also writes the generated model, with the `tokenizer.*` metadata
//! of `--vocabulary` (llama.cpp's `models/ggml-vocab-qwen2.gguf`) so
//! that llama.cpp's `llama-bench` runs the same file.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::quantized::gguf_file::{Content, Value};
use flywheel_tests::shaped_gguf::{QWEN2_5_1_5B, qwen2_with_shape_and_metadata};
use shared::GgufModel;
use shared::wgpu_engine::{GpuContext, KernelPlan, MatmulPlan, Qwen2Sequence, Qwen2Weights};

struct Options {
    blocks: usize,
    prompt_tokens: usize,
    decode_tokens: usize,
    /// `None`: the plan the adapter gets by default.
    plans: Vec<Option<MatmulPlan>>,
    /// Where to write the generated model, for other engines.
    write_gguf: Option<PathBuf>,
    /// A GGUF whose `tokenizer.*` metadata the written model carries.
    vocabulary: Option<PathBuf>,
}

/// A plan for the products, with the adapter's attention; `None` (`auto`): all the adapter's.
fn parse_plan(text: &str) -> Result<Option<MatmulPlan>> {
    if text == "auto" {
        return Ok(None);
    }
    Ok(Some(text.parse()?))
}

fn options() -> Result<Options> {
    let mut options = Options {
        blocks: 28,
        prompt_tokens: 512,
        decode_tokens: 128,
        plans: vec![None],
        write_gguf: None,
        vocabulary: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        // `cargo bench` passes `--bench` to every bench target.
        if flag == "--bench" {
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let count = || value.parse::<usize>().with_context(|| flag.clone());
        match flag.as_str() {
            "--blocks" => options.blocks = count()?,
            "--prompt-tokens" => options.prompt_tokens = count()?,
            "--decode-tokens" => options.decode_tokens = count()?,
            "--plans" => options.plans = value.split(',').map(parse_plan).collect::<Result<_>>()?,
            "--write-gguf" => options.write_gguf = Some(value.into()),
            "--vocabulary" => options.vocabulary = Some(value.into()),
            _ => bail!("unknown option {flag}"),
        }
    }
    Ok(options)
}

struct Measured {
    load_seconds: f64,
    prefill_tokens_per_second: f64,
    decode_tokens_per_second: f64,
    /// Host time per decode step spent recording and submitting the step (`feed`), the rest
    /// being the GPU's work and reading the token back.
    record_ms_per_token: f64,
}

/// Loads the model with `plan`, runs the prompt (up to the first token's scores), then
/// greedy decode steps.
fn measure(
    ctx: &GpuContext,
    gguf_bytes: &[u8],
    plan: KernelPlan,
    options: &Options,
) -> Result<Measured> {
    let started = Instant::now();
    let mut reader = Cursor::new(gguf_bytes);
    let gguf = GgufModel::read(&mut reader, "qwen2.5-1.5b-shaped.gguf")?;
    let weights = Qwen2Weights::load_with_plan(ctx, &gguf, &mut reader, plan)?;
    let mut sequence =
        Qwen2Sequence::new(&weights, options.prompt_tokens + options.decode_tokens + 1)?;
    // A warm-up step compiles nothing further but settles the driver's first-use costs.
    sequence.feed(&[1])?;
    pollster::block_on(sequence.next_token_scores(1, &[], 1.0))?;
    sequence.truncate(0);
    let load_seconds = started.elapsed().as_secs_f64();

    let vocab = weights.hyperparameters.vocab_size as u32;
    let prompt: Vec<u32> = (0..options.prompt_tokens as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    let started = Instant::now();
    sequence.feed(&prompt)?;
    let mut next = pollster::block_on(sequence.next_token_scores(1, &[], 1.0))?[0].token;
    let prefill_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut record_seconds = 0.0;
    for _ in 0..options.decode_tokens {
        let feed_started = Instant::now();
        sequence.feed(&[next])?;
        record_seconds += feed_started.elapsed().as_secs_f64();
        next = pollster::block_on(sequence.next_token_scores(1, &[], 1.0))?[0].token;
    }
    let decode_seconds = started.elapsed().as_secs_f64();
    Ok(Measured {
        load_seconds,
        prefill_tokens_per_second: options.prompt_tokens as f64 / prefill_seconds,
        decode_tokens_per_second: options.decode_tokens as f64 / decode_seconds,
        record_ms_per_token: record_seconds * 1000.0 / options.decode_tokens as f64,
    })
}

/// The `tokenizer.*` metadata of the GGUF at `path`.
fn vocabulary_metadata(path: &std::path::Path) -> Result<Vec<(String, Value)>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content =
        Content::read(&mut file).with_context(|| format!("reading {}", path.display()))?;
    let mut keys: Vec<(String, Value)> = content
        .metadata
        .into_iter()
        .filter(|(key, _)| key.starts_with("tokenizer."))
        .collect();
    if keys.is_empty() {
        bail!("{} has no tokenizer.* metadata", path.display());
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keys)
}

fn main() -> Result<()> {
    let options = options()?;
    let ctx = pollster::block_on(GpuContext::new())?;
    let adapter = format!(
        "{} ({:?}, {:?})",
        ctx.adapter_info.name, ctx.adapter_info.backend, ctx.adapter_info.device_type
    );
    eprintln!(
        "generating a {}-block model of Qwen2.5-1.5B-Instruct's shapes",
        options.blocks
    );
    let vocabulary = match &options.vocabulary {
        Some(path) => vocabulary_metadata(path)?,
        None => Vec::new(),
    };
    let gguf_bytes = qwen2_with_shape_and_metadata(QWEN2_5_1_5B, options.blocks, vocabulary);
    if let Some(path) = &options.write_gguf {
        std::fs::write(path, &gguf_bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} ({} bytes)", path.display(), gguf_bytes.len());
    }
    println!(
        "\nwgpu engine, Qwen2.5-1.5B-Instruct shapes ({} blocks, Q4_K_M types, random weights), \
         {}-token prompt, {} decode tokens\nadapter: {adapter}\n",
        options.blocks, options.prompt_tokens, options.decode_tokens
    );
    println!(
        "| {:<74} | {:>6} | {:>13} | {:>12} | {:>16} |",
        "matmul plan (decode, batched, tile)",
        "load s",
        "prefill tok/s",
        "decode tok/s",
        "record ms/token"
    );
    println!(
        "|{:-<76}|{:->8}|{:->15}|{:->14}|{:->18}|",
        "", "", "", "", ""
    );
    let mut failed = false;
    for plan in &options.plans {
        let adapter_plan = KernelPlan::for_adapter(&ctx);
        let plan = KernelPlan {
            matmul: plan.unwrap_or(adapter_plan.matmul),
            ..adapter_plan
        };
        let m = plan.matmul;
        let name = format!(
            "{:?}, {:?}, {}{}{}",
            m.decode,
            m.batched,
            m.batched_tile,
            if m.normalize_inputs {
                ", norms folded"
            } else {
                ""
            },
            if m.subgroup_sums {
                ", subgroup sums"
            } else {
                ""
            }
        );
        match plan
            .matmul
            .check_adapter(&ctx)
            .map_err(anyhow::Error::from)
            .and_then(|()| measure(&ctx, &gguf_bytes, plan, &options))
        {
            Ok(row) => println!(
                "| {name:<74} | {:>6.1} | {:>13.1} | {:>12.1} | {:>16.2} |",
                row.load_seconds,
                row.prefill_tokens_per_second,
                row.decode_tokens_per_second,
                row.record_ms_per_token
            ),
            Err(error) => {
                failed = true;
                println!("| {name:<74} | failed: {error:#}");
            }
        }
    }
    if failed {
        bail!("some plans failed");
    }
    Ok(())
}
