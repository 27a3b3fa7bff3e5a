//! Prompt-set files for `dpo prompts import`: JSON Lines or Parquet rows in TRL's
//! prompt-only shapes — `prompt` as a string (one user turn), or `prompt` / `messages` as a
//! list of messages ending with a user turn — with an optional `id` (string or integer).
//! Other keys are ignored. A malformed row is an error naming `file:line` (Parquet:
//! `file: row N`) and the field.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shared::{ChatMessage, PairLimits, Role};

use crate::store::prompt_set::{NewPrompt, derived_prompt_id};

/// Reads every prompt of `path`, each wanting `labels_wanted` labels.
pub fn read_prompt_file(path: &Path, labels_wanted: u32) -> Result<Vec<NewPrompt>> {
    let name = path.display();
    let is_parquet = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let mut prompts = Vec::new();
    let mut take = |place: String, value: std::result::Result<Value, String>| -> Result<()> {
        match value.and_then(|value| prompt_row(&value, labels_wanted)) {
            Ok(prompt) => prompts.push(prompt),
            Err(reason) => bail!("{name}{place}: {reason}"),
        }
        Ok(())
    };
    if is_parquet {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
        let reader = SerializedFileReader::new(file)
            .with_context(|| format!("{name}: not a readable Parquet file"))?;
        for (index, row) in reader.get_row_iter(None)?.enumerate() {
            let row = row.with_context(|| format!("{name}: row {}: unreadable", index + 1))?;
            take(format!(": row {}", index + 1), Ok(row.to_json_value()))?;
        }
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
        let mut reader = std::io::BufReader::new(file);
        let mut bytes = Vec::new();
        for line in 1.. {
            bytes.clear();
            if reader
                .read_until(b'\n', &mut bytes)
                .with_context(|| format!("{name}:{line}: reading"))?
                == 0
            {
                break;
            }
            let value = match std::str::from_utf8(&bytes) {
                Err(e) => Err(format!("not valid UTF-8 at byte {}", e.valid_up_to())),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}")),
            };
            take(format!(":{line}"), value)?;
        }
    }
    if prompts.is_empty() {
        bail!("{name}: no prompts (expected rows with `prompt` or `messages`)");
    }
    Ok(prompts)
}

/// One row as a prompt; the error names the field.
fn prompt_row(value: &Value, labels_wanted: u32) -> std::result::Result<NewPrompt, String> {
    let row = value
        .as_object()
        .ok_or("expected a JSON object with `prompt` or `messages`")?;
    let (field, conversation) = match (row.get("prompt"), row.get("messages")) {
        (Some(Value::String(text)), _) => ("prompt", vec![ChatMessage::new(Role::User, text)]),
        (Some(Value::Array(items)), _) => ("prompt", messages("prompt", items)?),
        (Some(other), _) if !other.is_null() => {
            return Err(format!(
                "field `prompt`: expected a string or a list of messages, got {other}"
            ));
        }
        (_, Some(Value::Array(items))) => ("messages", messages("messages", items)?),
        (_, Some(other)) if !other.is_null() => {
            return Err(format!(
                "field `messages`: expected a list of messages, got {other}"
            ));
        }
        _ => return Err("no `prompt` or `messages` field".into()),
    };
    let limits = PairLimits::default();
    if conversation.len() > limits.max_turns {
        return Err(format!(
            "field `{field}`: {} turns exceed the limit of {}",
            conversation.len(),
            limits.max_turns
        ));
    }
    for (i, message) in conversation.iter().enumerate() {
        let chars = message.content.chars().count();
        if message.content.trim().is_empty() || message.content.contains('\0') {
            return Err(format!(
                "field `{field}[{i}].content`: empty or contains NUL"
            ));
        }
        if chars > limits.max_message_chars {
            return Err(format!(
                "field `{field}[{i}].content`: {chars} characters exceed the limit of {}",
                limits.max_message_chars
            ));
        }
    }
    if conversation.last().map(|m| m.role) != Some(Role::User) {
        return Err(format!("field `{field}`: must end with a user turn"));
    }
    let id = match row.get("id") {
        None | Some(Value::Null) => derived_prompt_id(&conversation),
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(other) => {
            return Err(format!(
                "field `id`: expected a string or integer, got {other}"
            ));
        }
    };
    let id_ok = (1..=128).contains(&id.chars().count())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !id_ok {
        return Err(format!(
            "field `id`: `{id}` must be 1 to 128 letters, digits, - _ . or :"
        ));
    }
    Ok(NewPrompt {
        id,
        conversation,
        labels_wanted,
    })
}

fn messages(field: &str, items: &[Value]) -> std::result::Result<Vec<ChatMessage>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<ChatMessage>(item.clone())
                .map_err(|e| format!("field `{field}[{i}]`: {e}"))
        })
        .collect()
}
