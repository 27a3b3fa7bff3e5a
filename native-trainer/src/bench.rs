//! `dpo bench`: prefill and decode throughput of one engine on one model, printed as one JSON
//! object (the last stdout line) so `cargo xtask bench` can put engines side by side.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use shared::generation::GeneratingSequence;
use shared::{ModelText, SamplingParams};

use crate::chat::blocking_generation::generate;
use crate::chat::native_engines::{load_cpu, load_wgpu};
use crate::chat::{CandleSequence, EngineKind};

/// Text repeated to build the benchmark prompt.
const PROMPT_TEXT: &str = "The quick brown fox jumps over the lazy dog while the committee \
    reviews the quarterly report on renewable energy, transport and housing. ";

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model file (default: the model `dpo fetch` put in the models directory).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    #[arg(long, env = crate::models_dir::MODELS_DIR_ENV, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = EngineKind::Wgpu)]
    pub engine: EngineKind,
    /// Prompt length in tokens (prefill throughput).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens generated greedily after the prompt (decode throughput); end-of-turn is ignored.
    #[arg(long, default_value_t = 128)]
    pub decode_tokens: u32,
    /// Run the candle engine on the CPU even when built with CUDA.
    #[arg(long)]
    pub cpu: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.prompt_tokens == 0 || args.decode_tokens == 0 {
        bail!("--prompt-tokens and --decode-tokens must be at least 1");
    }
    let model_path = match &args.model {
        Some(path) => path.clone(),
        None => crate::fetch::default_model(args.models_dir.as_deref())?,
    };
    let positions = args.prompt_tokens + args.decode_tokens as usize;
    match args.engine {
        EngineKind::Candle => {
            let (sequence, text) = CandleSequence::load(&model_path, args.cpu)?;
            let device = sequence.device_name();
            bench(args, &model_path, sequence, &text, &device)
        }
        EngineKind::Wgpu => {
            let (sequence, text, device) = load_wgpu(&model_path, positions)?;
            bench(args, &model_path, sequence, &text, &device)
        }
        EngineKind::Cpu => {
            let (sequence, text) = load_cpu(&model_path, positions)?;
            bench(args, &model_path, sequence, &text, "CPU, one thread")
        }
    }
}

/// Prefills the benchmark prompt and decodes greedily on `sequence`; prints the JSON report.
fn bench<S: GeneratingSequence>(
    args: &BenchArgs,
    model_path: &std::path::Path,
    mut sequence: S,
    text: &ModelText,
    device: &str,
) -> Result<()> {
    let mut prompt = Vec::new();
    let piece = text.tokenizer.encode(PROMPT_TEXT)?;
    while prompt.len() < args.prompt_tokens {
        prompt.extend_from_slice(&piece);
    }
    prompt.truncate(args.prompt_tokens);

    let sampling = SamplingParams {
        max_new_tokens: args.decode_tokens,
        ..SamplingParams::default()
    };
    let stats = generate(&mut sequence, &prompt, sampling, 0, &[], &mut |_| Ok(true))?;
    let report = json!({
        "engine": format!("{:?}", args.engine).to_lowercase(),
        "device": device,
        "model": model_path.display().to_string(),
        "prompt_tokens": stats.prefilled_tokens,
        "prefill_seconds": stats.first_token_ms / 1000.0,
        "prefill_tokens_per_second": stats.prefill_tokens_per_second(),
        // The first token comes with the prefill; decoding is every token after it.
        "decode_tokens": stats.generated_tokens.saturating_sub(1),
        "decode_seconds": stats.decode_ms / 1000.0,
        "decode_tokens_per_second": stats.decode_tokens_per_second(),
    });
    println!("{report}");
    Ok(())
}
