//! `dpo bench`: prefill and decode throughput of one engine on one model, printed as one JSON
//! object (the last stdout line) so `cargo xtask bench` can put engines side by side.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use shared::generation::GeneratingSequence;
use shared::{ModelText, SamplingParams};

use crate::chat::blocking_generation::generate;
use crate::chat::engine_choice::{choose_engine, cpu_threads};
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
    /// Inference engine (default: the one `dpo chat` picks for this machine).
    #[arg(long, value_enum)]
    pub engine: Option<EngineKind>,
    /// Threads of the CPU engine (default: this machine's physical cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Prompt length in tokens (prefill throughput).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens generated greedily after the prompt (decode throughput); end-of-turn is ignored.
    #[arg(long, default_value_t = 128)]
    pub decode_tokens: u32,
    /// Keep GPUs out of it: the CPU engine by default, candle on the CPU when built with CUDA.
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
    let engine = choose_engine(args.engine, args.cpu);
    let run = Run {
        args,
        engine,
        model_path: &model_path,
    };
    match engine {
        EngineKind::Candle => {
            let (sequence, text) = CandleSequence::load(&model_path, args.cpu)?;
            let device = sequence.device_name();
            run.bench(sequence, &text, &device, None)
        }
        EngineKind::Wgpu => {
            let (sequence, text, device) = load_wgpu(&model_path, positions)?;
            run.bench(sequence, &text, &device, None)
        }
        EngineKind::Cpu => {
            let threads = cpu_threads(args.threads.map(usize::from));
            let (sequence, text) = load_cpu(&model_path, positions, threads)?;
            let settings = sequence.settings();
            let device = format!("CPU, {}", settings.simd);
            run.bench(sequence, &text, &device, Some(settings.threads))
        }
    }
}

/// One benchmark: what was asked, and the engine chosen.
struct Run<'a> {
    args: &'a BenchArgs,
    engine: EngineKind,
    model_path: &'a std::path::Path,
}

impl Run<'_> {
    /// Prefills the benchmark prompt and decodes greedily on `sequence` (on `threads` CPU threads,
    /// where the engine has them); prints the JSON report.
    fn bench<S: GeneratingSequence>(
        &self,
        mut sequence: S,
        text: &ModelText,
        device: &str,
        threads: Option<usize>,
    ) -> Result<()> {
        let args = self.args;
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
            "engine": self.engine.name(),
            "device": device,
            "threads": threads,
            "model": self.model_path.display().to_string(),
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
}
