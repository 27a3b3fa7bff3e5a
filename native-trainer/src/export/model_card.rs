//! The exported model's README.md, in the shape of the card TRL writes for a DPO run: YAML
//! front matter (`base_model`, `library_name`, `model_name`, `tags`, `license`), a quick start
//! (our `dpo chat` on the GGUF, and transformers' pipeline on the directory), the training
//! procedure (DPO or KTO and its paper, the run's hyperparameters and final metrics),
//! framework versions, and the method's citation.

use std::fmt::Write;

use serde_json::Value;

use super::export_source::Provenance;

/// candle as pinned in the workspace's Cargo.toml (a test keeps the two equal).
pub const CANDLE_VERSION: &str = "0.11.1";
/// The model card's example question (the reference card's).
const QUICK_START_QUESTION: &str = "If you had a time machine, but could only go to the past or the future once and never return, which would you choose and why?";

const DPO_BIBTEX: &str = r"@inproceedings{rafailov2023direct,
    title        = {{Direct Preference Optimization: Your Language Model is Secretly a Reward Model}},
    author       = {Rafael Rafailov and Archit Sharma and Eric Mitchell and Christopher D. Manning and Stefano Ermon and Chelsea Finn},
    year         = 2023,
    booktitle    = {Advances in Neural Information Processing Systems 36: Annual Conference on Neural Information Processing Systems 2023, NeurIPS 2023, New Orleans, LA, USA, December 10 - 16, 2023},
    url          = {http://papers.nips.cc/paper_files/paper/2023/hash/a85b405ed65c6477a4fe8302b5e06ce7-Abstract-Conference.html},
    editor       = {Alice Oh and Tristan Naumann and Amir Globerson and Kate Saenko and Moritz Hardt and Sergey Levine},
}";

const KTO_BIBTEX: &str = r"@article{ethayarajh2024kto,
    title        = {{KTO: Model Alignment as Prospect Theoretic Optimization}},
    author       = {Kawin Ethayarajh and Winnie Xu and Niklas Muennighoff and Dan Jurafsky and Douwe Kiela},
    year         = 2024,
    eprint       = {arXiv:2402.01306},
}";

/// What the card says about the files beside it.
pub struct CardFiles<'a> {
    pub gguf_file: &'a str,
    pub quant: &'a str,
    pub gguf_sha256: &'a str,
    pub has_hf_weights: bool,
}

pub fn model_card(model_name: &str, provenance: &Provenance, files: &CardFiles) -> String {
    let mut card = String::new();
    let base = yaml_scalar(&provenance.base_model);
    let _ = writeln!(card, "---\nbase_model: {base}");
    if files.has_hf_weights {
        card.push_str("library_name: transformers\n");
    }
    let _ = writeln!(card, "model_name: {}\ntags:", yaml_scalar(model_name));
    if let Some(run) = &provenance.training {
        // TRL's tag is the trainer's method: `dpo` or `kto`.
        let _ = writeln!(card, "- generated_from_trainer\n- {}", run.method);
    }
    card.push_str("- dpo-flywheel\n- gguf\n");
    if let Some(license) = &provenance.license {
        let _ = writeln!(card, "license: {}", yaml_scalar(license));
    }
    let _ = writeln!(card, "---\n\n# Model Card for {model_name}\n");

    let base_link = if is_hub_id(&provenance.base_model) {
        format!("[{0}](https://huggingface.co/{0})", provenance.base_model)
    } else {
        format!("`{}`", provenance.base_model)
    };
    if let Some(run) = &provenance.training {
        let _ = writeln!(
            card,
            "This model is a fine-tuned version of {base_link}.\n\
             It has been trained with the DPO flywheel's native trainer (`dpo train`), which \
             follows TRL's {}.\n",
            if run.method == "kto" {
                "KTOTrainer"
            } else {
                "DPOTrainer"
            }
        );
    } else {
        let _ = writeln!(
            card,
            "This model is {base_link}, converted by the DPO flywheel's `dpo export`.\n"
        );
    }

    let _ = writeln!(
        card,
        "## Quick start\n\n```sh\ndpo chat --model {gguf} \"{QUICK_START_QUESTION}\" --max-new-tokens 128\n```\n",
        gguf = files.gguf_file
    );
    if files.has_hf_weights {
        let _ = writeln!(
            card,
            "```python\nfrom transformers import pipeline\n\nquestion = \"{QUICK_START_QUESTION}\"\n\
             generator = pipeline(\"text-generation\", model=\"{model_name}\", device=\"cuda\")\n\
             output = generator([{{\"role\": \"user\", \"content\": question}}], max_new_tokens=128, return_full_text=False)[0]\n\
             print(output[\"generated_text\"])\n```\n"
        );
    }
    let _ = writeln!(
        card,
        "`{}` is the GGUF ({} quantization, sha256 `{}`) for llama.cpp, the browser engine and `dpo chat`.\n",
        files.gguf_file, files.quant, files.gguf_sha256
    );

    card.push_str("## Training procedure\n\n");
    match &provenance.training {
        Some(run) => {
            let method = if run.method == "kto" {
                "KTO, a method introduced in [KTO: Model Alignment as Prospect Theoretic \
                 Optimization](https://huggingface.co/papers/2402.01306)"
            } else {
                "DPO, a method introduced in [Direct Preference Optimization: Your Language \
                 Model is Secretly a Reward Model](https://huggingface.co/papers/2305.18290)"
            };
            let _ = writeln!(
                card,
                "This model was trained with {method}.\n\n\
                 {} training, {} optimizer steps ({:.2} epochs).\n",
                if run.adaptation == "lora" {
                    "LoRA"
                } else {
                    "Full-parameter"
                },
                run.global_step,
                run.epoch
            );
            card.push_str("### Training hyperparameters\n\n| setting | value |\n|---|---|\n");
            for (key, value) in &run.hyperparameters {
                let _ = writeln!(card, "| `{key}` | {} |", table_value(value));
            }
            card.push_str("\n### Results\n\nThe last logged values of the run:\n\n| metric | value |\n|---|---|\n");
            for (key, value) in &run.metrics {
                let _ = writeln!(card, "| `{key}` | {} |", table_value(value));
            }
            card.push('\n');
        }
        None => {
            card.push_str("Not trained by this export: its weights are the source model's.\n\n")
        }
    }

    let (cited, bibtex) = match &provenance.training {
        Some(run) if run.method == "kto" => ("KTO", KTO_BIBTEX),
        _ => ("DPO", DPO_BIBTEX),
    };
    let _ = writeln!(
        card,
        "### Framework versions\n\n- dpo-flywheel: {}\n- candle: {CANDLE_VERSION}\n\n\
         ## Citations\n\nCite {cited} as:\n\n```bibtex\n{bibtex}\n```",
        env!("CARGO_PKG_VERSION")
    );
    card
}

/// `org/name`: a Hugging Face hub id rather than a local name.
fn is_hub_id(name: &str) -> bool {
    let mut parts = name.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if !a.is_empty() && !b.is_empty() && !name.contains(' '))
}

/// A YAML scalar: plain when safe, else double-quoted JSON-style.
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ' '))
        && !text.starts_with(' ')
        && !text.ends_with(' ');
    if plain {
        text.to_string()
    } else {
        Value::from(text).to_string()
    }
}

fn table_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_version_is_the_workspace_pin() {
        let manifest = include_str!("../../../Cargo.toml");
        let pin = format!("candle-core = {{ version = \"{CANDLE_VERSION}\"");
        assert!(
            manifest.contains(&pin),
            "update CANDLE_VERSION to the workspace's candle"
        );
    }

    #[test]
    fn the_card_names_the_runs_method_its_paper_and_citation() {
        let card = |method: &str| {
            let provenance = Provenance {
                source_name: "run".into(),
                base_model: "Qwen/Qwen2.5-0.5B-Instruct".into(),
                license: None,
                parent_version: None,
                training: Some(shared::TrainingRunSummary {
                    method: method.into(),
                    adaptation: "lora".into(),
                    global_step: 3,
                    epoch: 1.0,
                    hyperparameters: serde_json::Map::new(),
                    metrics: serde_json::Map::new(),
                }),
            };
            let files = CardFiles {
                gguf_file: "model.gguf",
                quant: "q4_k_m",
                gguf_sha256: "00",
                has_hf_weights: false,
            };
            model_card("run", &provenance, &files)
        };
        let kto = card("kto");
        for expected in [
            "- generated_from_trainer\n- kto\n",
            "follows TRL's KTOTrainer",
            "https://huggingface.co/papers/2402.01306",
            "Cite KTO as",
            "ethayarajh2024kto",
        ] {
            assert!(kto.contains(expected), "`{expected}` missing from:\n{kto}");
        }
        let dpo = card("dpo");
        for expected in [
            "- generated_from_trainer\n- dpo\n",
            "follows TRL's DPOTrainer",
            "https://huggingface.co/papers/2305.18290",
            "Cite DPO as",
        ] {
            assert!(dpo.contains(expected), "`{expected}` missing from:\n{dpo}");
        }
        assert!(!dpo.contains("KTO"));
    }
}
