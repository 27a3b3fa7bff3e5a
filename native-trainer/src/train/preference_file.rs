//! Preference data files in TRL's DPO formats, read into the shared `TrlRow` schema: JSON
//! Lines or Parquet (as Hugging Face datasets ship them), rows with a `prompt` (standard: strings; conversational: message lists) or without one
//! (implicit prompt: the longest common start of `chosen` and `rejected` becomes the prompt,
//! as TRL's `extract_prompt` does). Other keys are ignored, as TRL ignores extra columns.
//! For KTO, rows may also be TRL's unpaired ones (`prompt`, `completion`, `label`).
//!
//! A malformed line (Parquet: row) is an error naming `file:line` (`file: row N`) and the
//! field; with `skip_malformed` it is counted, logged and left out instead.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shared::{ChatMessage, TrlRow, UnpairedRow};

/// The rows of one file, with the line (Parquet: row) each came from.
#[derive(Debug)]
pub struct PreferenceFile<Row = TrlRow> {
    pub rows: Vec<Row>,
    pub line_numbers: Vec<usize>,
    /// Malformed lines left out (only with `skip_malformed`).
    pub skipped: usize,
}

/// What is wrong with one row, and in which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

/// A row of a KTO dataset: unpaired, or a pair TRL unpairs.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetRow {
    Paired(TrlRow),
    Unpaired(UnpairedRow),
}

/// Reads a preference file: Parquet by its `.parquet` extension, JSON Lines otherwise.
pub fn read_preference_file(path: &Path, skip_malformed: bool) -> Result<PreferenceFile> {
    read_rows(path, skip_malformed, parse_row, "`chosen` and `rejected`")
}

/// Reads a KTO dataset file: unpaired rows or pairs (each row either).
pub fn read_dataset_file(path: &Path, skip_malformed: bool) -> Result<PreferenceFile<DatasetRow>> {
    read_rows(
        path,
        skip_malformed,
        parse_dataset_row,
        "`prompt`, `completion` and `label`, or `chosen` and `rejected`",
    )
}

fn read_rows<Row>(
    path: &Path,
    skip_malformed: bool,
    parse: fn(&Value) -> Result<Row, FieldError>,
    expected: &str,
) -> Result<PreferenceFile<Row>> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let file = if extension.eq_ignore_ascii_case("parquet") {
        read_parquet(path, skip_malformed, parse)?
    } else {
        read_json_lines(path, skip_malformed, parse)?
    };
    if file.rows.is_empty() {
        bail!(
            "{}: no preference rows (expected {expected})",
            path.display()
        );
    }
    Ok(file)
}

/// Keeps a parsed row, or records (or refuses) a malformed one at `place`.
struct RowCollector<'a, Row> {
    name: std::path::Display<'a>,
    skip_malformed: bool,
    file: PreferenceFile<Row>,
}

impl<'a, Row> RowCollector<'a, Row> {
    fn new(path: &'a Path, skip_malformed: bool) -> Self {
        Self {
            name: path.display(),
            skip_malformed,
            file: PreferenceFile {
                rows: Vec::new(),
                line_numbers: Vec::new(),
                skipped: 0,
            },
        }
    }

    fn take(
        &mut self,
        place: &str,
        index: usize,
        parsed: std::result::Result<Option<Row>, String>,
    ) -> Result<()> {
        let name = &self.name;
        match parsed {
            Ok(Some(row)) => {
                self.file.rows.push(row);
                self.file.line_numbers.push(index);
            }
            Ok(None) => {}
            Err(reason) if self.skip_malformed => {
                self.file.skipped += 1;
                tracing::warn!("{name}{place}: skipped: {reason}");
            }
            Err(reason) => bail!(
                "{name}{place}: {reason} (fix it, or pass --skip-malformed to leave such rows out)"
            ),
        }
        Ok(())
    }
}

fn read_parquet<Row>(
    path: &Path,
    skip_malformed: bool,
    parse_row: fn(&Value) -> Result<Row, FieldError>,
) -> Result<PreferenceFile<Row>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    let mut collector = RowCollector::new(path, skip_malformed);
    let rows = reader
        .get_row_iter(None)
        .with_context(|| format!("{name}: reading rows"))?;
    for (index, row) in rows.enumerate() {
        let number = index + 1;
        let row = row.with_context(|| format!("{name}: row {number}: unreadable"))?;
        let parsed = parse_row(&row.to_json_value())
            .map(Some)
            .map_err(|e| e.to_string());
        collector.take(&format!(": row {number}"), number, parsed)?;
    }
    Ok(collector.file)
}

fn read_json_lines<Row>(
    path: &Path,
    skip_malformed: bool,
    parse_row: fn(&Value) -> Result<Row, FieldError>,
) -> Result<PreferenceFile<Row>> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    let mut reader = std::io::BufReader::new(file);
    let mut collector = RowCollector::new(path, skip_malformed);
    let mut bytes = Vec::new();
    for line_number in 1.. {
        bytes.clear();
        let read = reader
            .read_until(b'\n', &mut bytes)
            .with_context(|| format!("{name}:{line_number}: reading"))?;
        if read == 0 {
            break;
        }
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| format!("not valid UTF-8 at byte {}", e.valid_up_to()))
            .and_then(|text| {
                if text.trim().is_empty() {
                    return Ok(None);
                }
                let value: Value =
                    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
                parse_row(&value).map(Some).map_err(|e| e.to_string())
            });
        collector.take(&format!(":{line_number}"), line_number, parsed)?;
    }
    Ok(collector.file)
}

/// A `prompt`, `chosen` or `rejected` value: text, or a list of messages.
enum Column {
    Text(String),
    Messages(Vec<ChatMessage>),
}

fn column(row: &serde_json::Map<String, Value>, field: &str) -> Result<Option<Column>, FieldError> {
    match row.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(Column::Text(text.clone()))),
        Some(Value::Array(items)) => {
            let messages = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    serde_json::from_value::<ChatMessage>(item.clone())
                        .map_err(|e| FieldError::new(format!("{field}[{i}]"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Column::Messages(messages)))
        }
        Some(other) => Err(FieldError::new(
            field,
            format!(
                "expected a string or a list of messages, got {}",
                json_type(other)
            ),
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// One row of a KTO dataset: unpaired when it has `completion` or `label`, else a pair.
pub fn parse_dataset_row(value: &Value) -> Result<DatasetRow, FieldError> {
    let Value::Object(row) = value else {
        return parse_row(value).map(DatasetRow::Paired);
    };
    if !row.contains_key("completion") && !row.contains_key("label") {
        return parse_row(value).map(DatasetRow::Paired);
    }
    let label = match row.get("label") {
        Some(Value::Bool(label)) => *label,
        None | Some(Value::Null) => return Err(FieldError::new("label", "missing")),
        Some(other) => {
            return Err(FieldError::new(
                "label",
                format!("expected true or false, got {}", json_type(other)),
            ));
        }
    };
    let required = |field: &str| -> Result<Column, FieldError> {
        column(row, field)?.ok_or_else(|| FieldError::new(field, "missing"))
    };
    match (required("prompt")?, required("completion")?) {
        (Column::Text(prompt), Column::Text(completion)) => {
            Ok(DatasetRow::Unpaired(UnpairedRow::Standard {
                prompt,
                completion,
                label,
            }))
        }
        (Column::Messages(prompt), Column::Messages(completion)) => {
            if prompt.is_empty() {
                return Err(FieldError::new("prompt", "the message list is empty"));
            }
            Ok(DatasetRow::Unpaired(UnpairedRow::Conversational {
                prompt,
                completion,
                label,
            }))
        }
        _ => Err(FieldError::new(
            "completion",
            "`prompt` and `completion` must both be strings or both message lists",
        )),
    }
}

/// One row in any of TRL's preference formats.
pub fn parse_row(value: &Value) -> Result<TrlRow, FieldError> {
    let Value::Object(row) = value else {
        return Err(FieldError::new(
            "(row)",
            format!("expected a JSON object, got {}", json_type(value)),
        ));
    };
    let required = |field: &str| -> Result<Column, FieldError> {
        column(row, field)?.ok_or_else(|| FieldError::new(field, "missing"))
    };
    let (chosen, rejected) = (required("chosen")?, required("rejected")?);
    match (column(row, "prompt")?, chosen, rejected) {
        (Some(Column::Text(prompt)), Column::Text(chosen), Column::Text(rejected)) => {
            Ok(TrlRow::Standard {
                prompt,
                chosen,
                rejected,
            })
        }
        (Some(Column::Messages(prompt)), Column::Messages(chosen), Column::Messages(rejected)) => {
            if prompt.is_empty() {
                return Err(FieldError::new("prompt", "the message list is empty"));
            }
            Ok(TrlRow::Conversational {
                prompt,
                chosen,
                rejected,
            })
        }
        (Some(prompt), chosen, rejected) => {
            let kind = |c: &Column| match c {
                Column::Text(_) => "a string",
                Column::Messages(_) => "a message list",
            };
            let field = if kind(&chosen) != kind(&prompt) {
                "chosen"
            } else {
                "rejected"
            };
            let value = if field == "chosen" {
                &chosen
            } else {
                &rejected
            };
            Err(FieldError::new(
                field,
                format!(
                    "is {}, but `prompt` is {}; all three must be strings or all message lists",
                    kind(value),
                    kind(&prompt)
                ),
            ))
        }
        (None, Column::Text(chosen), Column::Text(rejected)) => {
            let chosen: Vec<char> = chosen.chars().collect();
            let rejected: Vec<char> = rejected.chars().collect();
            let split = implicit_prompt_len(&chosen, &rejected);
            let text = |chars: &[char]| chars.iter().collect::<String>();
            Ok(TrlRow::Standard {
                prompt: text(&chosen[..split]),
                chosen: text(&chosen[split..]),
                rejected: text(&rejected[split..]),
            })
        }
        (None, Column::Messages(chosen), Column::Messages(rejected)) => {
            let split = implicit_prompt_len(&chosen, &rejected);
            if split == 0 {
                return Err(FieldError::new(
                    "chosen",
                    "no `prompt` and no message shared with `rejected` to take it from",
                ));
            }
            Ok(TrlRow::Conversational {
                prompt: chosen[..split].to_vec(),
                chosen: chosen[split..].to_vec(),
                rejected: rejected[split..].to_vec(),
            })
        }
        (None, _, _) => Err(FieldError::new(
            "rejected",
            "`chosen` and `rejected` must both be strings or both message lists",
        )),
    }
}

/// TRL's `extract_prompt`: where `chosen` and `rejected` first differ, moved back over a
/// space so the answers keep their leading space. As in TRL, when one is a prefix of the
/// other the split falls one element before the shorter one's end.
fn implicit_prompt_len<T: PartialEq + ImplicitSpace>(chosen: &[T], rejected: &[T]) -> usize {
    let shortest = chosen.len().min(rejected.len());
    let shared = chosen
        .iter()
        .zip(rejected)
        .take_while(|(a, b)| a == b)
        .count();
    if shared == shortest {
        shortest.saturating_sub(1)
    } else if shared > 0 && chosen[shared - 1].is_space() {
        shared - 1
    } else {
        shared
    }
}

/// Whether an element is the space TRL's `extract_prompt` leaves with the answers.
trait ImplicitSpace {
    fn is_space(&self) -> bool;
}

impl ImplicitSpace for char {
    fn is_space(&self) -> bool {
        *self == ' '
    }
}

impl ImplicitSpace for ChatMessage {
    fn is_space(&self) -> bool {
        false
    }
}
