//! A model's text interface, read from its GGUF: tokenizer, chat template and the tokens that
//! end a turn. What chat, training-data preparation and the browser need besides the weights.

use crate::chat_template::ChatTemplate;
use crate::gguf::metadata::GgufModel;
use crate::tokenizer::TextTokenizer;

pub struct ModelText {
    pub tokenizer: TextTokenizer,
    pub template: ChatTemplate,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelTextError {
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("{source_name}: {error}")]
    Template {
        source_name: String,
        error: crate::chat_template::ChatTemplateError,
    },
}

impl ModelText {
    pub fn from_gguf(gguf: &GgufModel) -> Result<Self, ModelTextError> {
        let tokenizer = TextTokenizer::from_gguf_metadata(gguf.metadata(), &gguf.source_name)?;
        let token_text = |id: Option<u32>| {
            id.and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let template = ChatTemplate::new(
            gguf.chat_template(),
            &token_text(tokenizer.bos_token_id),
            &token_text(Some(tokenizer.eos_token_id)),
        )
        .map_err(|error| ModelTextError::Template {
            source_name: gguf.source_name.clone(),
            error,
        })?;
        Ok(Self {
            tokenizer,
            template,
        })
    }

    /// Tokens that end an assistant turn: the file's EOS plus ChatML's `<|im_end|>` and
    /// `<|endoftext|>` when the vocabulary has them.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut stops = vec![self.tokenizer.eos_token_id];
        for token in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = self.tokenizer.token_to_id(token)
                && !stops.contains(&id)
            {
                stops.push(id);
            }
        }
        stops
    }
}
