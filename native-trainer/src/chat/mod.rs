//! `dpo chat`: the model card's quick start, natively. One question → the reply on stdout;
//! no question → an interactive multi-turn chat on stdin/stdout. Prompts are rendered with
//! the model's own chat template and tokenized with the tokenizer built from the GGUF.

pub mod blocking_generation;
pub mod candle_sequence;
pub mod conversation;
pub mod engine_choice;
pub mod model_file;
pub mod native_engines;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use shared::generation::GeneratingSequence;
use shared::{ModelText, SamplingParams};

pub use candle_sequence::CandleSequence;
pub use conversation::Conversation;
use engine_choice::{choose_engine, cpu_threads};
use native_engines::{CHAT_MAX_POSITIONS, load_cpu, load_wgpu};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// candle-transformers' `quantized_qwen2` on the CPU (CUDA when built with `--features cuda`).
    Candle,
    /// The WGSL engine (the one the browser runs) on this machine's GPU via Vulkan/Metal/DX12.
    Wgpu,
    /// The integer-kernel CPU engine (the one browsers without a usable GPU run).
    Cpu,
}

impl EngineKind {
    /// The name `--engine` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Candle => "candle",
            Self::Wgpu => "wgpu",
            Self::Cpu => "cpu",
        }
    }
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// The question. Without it, `dpo chat` reads one user turn per line from stdin.
    pub question: Option<String>,
    /// GGUF model file (default: the model `dpo fetch` put in the models directory).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Directory searched for the default model.
    #[arg(long, env = crate::models_dir::MODELS_DIR_ENV, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// System prompt (default: the one the model's chat template supplies).
    #[arg(long)]
    pub system: Option<String>,
    /// Maximum number of tokens in each reply.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: u32,
    /// Sampling temperature; 0 means greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P (1 = off).
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    pub top_p: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub top_k: u32,
    /// Penalty for repeating recent tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty considers.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: u32,
    /// Random seed for sampling (the same seed gives the same reply).
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// Inference engine (default: the fastest here — candle on CUDA when built with it and a
    /// GPU answers, else wgpu on a hardware GPU, else the CPU engine; the log says which).
    #[arg(long, value_enum)]
    pub engine: Option<EngineKind>,
    /// Threads of the CPU engine (default: this machine's physical cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Keep GPUs out of it: the CPU engine by default, candle on the CPU when built with CUDA.
    #[arg(long)]
    pub cpu: bool,
}

impl ChatArgs {
    fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            max_new_tokens: self.max_new_tokens,
        }
    }
}

pub fn run(args: &ChatArgs) -> Result<()> {
    let sampling = args.sampling();
    sampling
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid sampling flags")?;
    let model_path = match &args.model {
        Some(path) => path.clone(),
        None => crate::fetch::default_model(args.models_dir.as_deref())?,
    };
    match choose_engine(args.engine, args.cpu) {
        EngineKind::Candle => {
            let (sequence, text) = CandleSequence::load(&model_path, args.cpu)?;
            chat(args, &model_path, sequence, text, sampling)
        }
        EngineKind::Wgpu => {
            let (sequence, text, _) = load_wgpu(&model_path, CHAT_MAX_POSITIONS)?;
            chat(args, &model_path, sequence, text, sampling)
        }
        EngineKind::Cpu => {
            let threads = cpu_threads(args.threads.map(usize::from));
            let (sequence, text) = load_cpu(&model_path, CHAT_MAX_POSITIONS, threads)?;
            chat(args, &model_path, sequence, text, sampling)
        }
    }
}

/// One answer, or the interactive chat, on `sequence`.
fn chat<S: GeneratingSequence>(
    args: &ChatArgs,
    model_path: &std::path::Path,
    sequence: S,
    text: ModelText,
    sampling: SamplingParams,
) -> Result<()> {
    let mut conversation =
        Conversation::new(sequence, text, args.system.clone(), sampling, args.seed);
    if let Some(question) = &args.question {
        return answer_on_stdout(&mut conversation, question);
    }

    eprintln!(
        "Chatting with {}. Type a message and press Enter; /reset starts over, Ctrl-D quits.",
        model_path.display()
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let line = line.trim();
        match line {
            "" => continue,
            "/reset" => {
                conversation.reset();
                eprintln!("(conversation cleared)");
                continue;
            }
            "/exit" | "/quit" => break,
            _ => {}
        }
        answer_on_stdout(&mut conversation, line)?;
    }
    Ok(())
}

/// Streams the reply to `user_text` onto stdout, one piece at a time, then a newline.
fn answer_on_stdout<S: GeneratingSequence>(
    conversation: &mut Conversation<S>,
    user_text: &str,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    conversation.reply(user_text, &mut |piece| {
        out.write_all(piece.as_bytes())?;
        out.flush()
    })?;
    writeln!(out)?;
    Ok(())
}
