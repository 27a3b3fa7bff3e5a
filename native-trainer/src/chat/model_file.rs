//! Opening a GGUF model for an engine: the file (positioned for reading tensors), its
//! validated header, and its tokenizer and chat template.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use shared::{GgufModel, ModelText};

pub fn open_model(path: &Path) -> Result<(File, GgufModel, ModelText)> {
    let source_name = path.display().to_string();
    let mut file =
        File::open(path).with_context(|| format!("cannot open model file {source_name}"))?;
    let gguf = GgufModel::read(&mut file, &source_name)?;
    let text = ModelText::from_gguf(&gguf)?;
    Ok((file, gguf, text))
}
