//! Not a test: writes a GGUF's tokenizer as Hugging Face files (`tokenizer.json`,
//! `tokenizer_config.json`, as `dpo export` writes them) into a directory, for `cargo xtask
//! gpu-bundle`, whose GPU run builds models that speak the real Qwen2.5 tokenizer.
//! Usage: `tokenizer_files MODEL.gguf DIR`.

use std::path::PathBuf;

use candle_core::Device;
use native_trainer::train::base_model::BaseModel;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model, dir] = args.as_slice() else {
        anyhow::bail!("usage: tokenizer_files MODEL.gguf DIR");
    };
    let base = BaseModel::load(model, &Device::Cpu)?;
    std::fs::create_dir_all(dir)?;
    base.write_tokenizer_files(dir)?;
    println!("{}", dir.display());
    Ok(())
}
