//! `dpo bench`: prefill and decode throughput of one engine on one model, printed as one JSON
//! object (the last stdout line) so `cargo xtask bench` can put engines side by side.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use shared::SamplingParams;

use crate::chat::{
    CandleEngine, CpuEngine, EngineKind, Generator, WgpuEngine, language_model::LanguageModel,
};

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
    let (model, text, device): (Box<dyn LanguageModel>, _, String) = match args.engine {
        EngineKind::Candle => {
            let (engine, text) = CandleEngine::load(&model_path, args.cpu)?;
            let device = engine.device_name();
            (Box::new(engine), text, device)
        }
        EngineKind::Wgpu => {
            let (engine, text) = WgpuEngine::load(&model_path, positions)?;
            let device = engine.adapter_name();
            (Box::new(engine), text, device)
        }
        EngineKind::Cpu => {
            let (engine, text) = CpuEngine::load(&model_path, positions)?;
            (Box::new(engine), text, "CPU, one thread".to_string())
        }
    };
    let mut prompt = Vec::new();
    let piece = text.tokenizer.encode(PROMPT_TEXT)?;
    while prompt.len() < args.prompt_tokens {
        prompt.extend_from_slice(&piece);
    }
    prompt.truncate(args.prompt_tokens);

    let mut generator = Generator::new(model, Vec::new());
    let sampling = SamplingParams {
        max_new_tokens: args.decode_tokens,
        ..SamplingParams::default()
    };
    let stats = generator.generate(&prompt, &sampling, 0, &mut |_| Ok(true))?;
    let report = json!({
        "engine": format!("{:?}", args.engine).to_lowercase(),
        "device": device,
        "model": model_path.display().to_string(),
        "prompt_tokens": stats.prefill_tokens,
        "prefill_seconds": stats.prefill_seconds,
        "prefill_tokens_per_second": stats.prefill_tokens as f64 / stats.prefill_seconds,
        "decode_tokens": stats.generated_tokens,
        "decode_seconds": stats.decode_seconds,
        "decode_tokens_per_second": stats.generated_tokens as f64 / stats.decode_seconds,
    });
    println!("{report}");
    Ok(())
}
