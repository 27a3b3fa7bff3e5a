//! The stored pairs as TRL rows, and those rows as Hugging Face datasets and `dpo train --data`
//! read them: JSON
//! Lines, or Parquet (snappy) with the same columns — `prompt`, `chosen`, `rejected` as UTF-8
//! strings for standard rows, or as lists of `{role, content}` structs for conversational rows
//! (the layout `datasets` gives message lists).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use shared::trl_rows::to_trl_rows;
use shared::{ChatMessage, ChatTemplate, TrlRow, TrlStyle};

use crate::store::PairStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RowFormat {
    Jsonl,
    Parquet,
}

/// Every stored pair's TRL rows, in storage order; also how many pairs there were.
pub fn stored_rows(
    store: &dyn PairStore,
    style: TrlStyle,
    template: &ChatTemplate,
) -> Result<(usize, Vec<TrlRow>)> {
    let pairs = store.all_pairs()?;
    let mut rows = Vec::new();
    for pair in &pairs {
        rows.extend(to_trl_rows(pair, style, template)?);
    }
    Ok((pairs.len(), rows))
}

/// One JSON object per line.
pub fn json_lines(rows: &[TrlRow]) -> Result<String> {
    let mut out = String::new();
    for row in rows {
        out.push_str(&serde_json::to_string(row)?);
        out.push('\n');
    }
    Ok(out)
}

pub fn write_rows(path: &Path, rows: &[TrlRow], format: RowFormat) -> Result<()> {
    match format {
        RowFormat::Jsonl => std::fs::write(path, json_lines(rows)?)?,
        RowFormat::Parquet => write_parquet(path, rows)?,
    }
    Ok(())
}

const STANDARD_SCHEMA: &str = "message trl_rows {
    REQUIRED BYTE_ARRAY prompt (UTF8);
    REQUIRED BYTE_ARRAY chosen (UTF8);
    REQUIRED BYTE_ARRAY rejected (UTF8);
}";

/// One list-of-messages column: `column.list.element.{role, content}`.
fn messages_column(name: &str) -> String {
    format!(
        "REQUIRED group {name} (LIST) {{ REPEATED group list {{ REQUIRED group element {{
            REQUIRED BYTE_ARRAY role (UTF8); REQUIRED BYTE_ARRAY content (UTF8); }} }} }}"
    )
}

fn write_parquet(path: &Path, rows: &[TrlRow]) -> Result<()> {
    let conversational = matches!(rows.first(), Some(TrlRow::Conversational { .. }));
    let schema = if conversational {
        format!(
            "message trl_rows {{ {} {} {} }}",
            messages_column("prompt"),
            messages_column("chosen"),
            messages_column("rejected")
        )
    } else {
        STANDARD_SCHEMA.to_string()
    };
    let schema = Arc::new(parse_message_type(&schema).context("the rows' Parquet schema")?);
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = SerializedFileWriter::new(file, schema, properties)?;
    let mut group = writer.next_row_group()?;
    if conversational {
        // Leaf columns in schema order: (column, field) for prompt, chosen, rejected.
        for column in 0..3 {
            for field in 0..2 {
                let mut values = Vec::new();
                let mut definition = Vec::new();
                let mut repetition = Vec::new();
                for row in rows {
                    let TrlRow::Conversational {
                        prompt,
                        chosen,
                        rejected,
                    } = row
                    else {
                        anyhow::bail!("standard and conversational rows mixed");
                    };
                    let messages: &[ChatMessage] = [prompt, chosen, rejected][column];
                    if messages.is_empty() {
                        definition.push(0);
                        repetition.push(0);
                    }
                    for (i, message) in messages.iter().enumerate() {
                        let text = if field == 0 {
                            message.role.as_str().to_string()
                        } else {
                            message.content.clone()
                        };
                        values.push(ByteArray::from(text.into_bytes()));
                        definition.push(1);
                        repetition.push(i16::from(i > 0));
                    }
                }
                let mut writer = group.next_column()?.context("a messages column")?;
                writer.typed::<ByteArrayType>().write_batch(
                    &values,
                    Some(&definition),
                    Some(&repetition),
                )?;
                writer.close()?;
            }
        }
    } else {
        for column in 0..3 {
            let values = rows
                .iter()
                .map(|row| match row {
                    TrlRow::Standard {
                        prompt,
                        chosen,
                        rejected,
                    } => Ok(ByteArray::from([prompt, chosen, rejected][column].as_str())),
                    TrlRow::Conversational { .. } => {
                        anyhow::bail!("standard and conversational rows mixed")
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let mut writer = group.next_column()?.context("a text column")?;
            writer
                .typed::<ByteArrayType>()
                .write_batch(&values, None, None)?;
            writer.close()?;
        }
    }
    group.close()?;
    writer.close()?;
    Ok(())
}

/// The chat template stored in a GGUF (for standard TRL rows).
pub fn chat_template_of(gguf: &std::path::Path) -> Result<ChatTemplate> {
    let model = shared::GgufModel::open(gguf)?;
    let text = shared::ModelText::from_gguf(&model)?;
    Ok(text.template)
}
