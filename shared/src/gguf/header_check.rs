//! A bounded first pass over a GGUF header, made before candle's reader builds it: every
//! count, length, type id, nesting depth, dimension, alignment and tensor offset is checked
//! against the bytes that are really there and against a memory budget, so that a hostile or
//! damaged file is refused with the byte offset and the key (or tensor) at fault — never a
//! panic, an abort, a hang or an allocation much larger than the file.
//!
//! The pass also records where every field sits (`HeaderField`); the property tests aim their
//! mutations at those places.
//!
//! Layout (little-endian, GGUF v2 and v3): magic `GGUF`, u32 version, u64 tensor count, u64
//! metadata count; per metadata entry a string key, a u32 value type and the value (strings
//! are a u64 length and UTF-8 bytes; arrays a u32 element type, a u64 length and the
//! elements); per tensor a string name, a u32 dimension count, u64 dimensions, a u32 GGML type
//! and a u64 offset into the data section, which starts at the next multiple of
//! `general.alignment` (default 32).

use std::collections::HashSet;
use std::io::{BufReader, Read, Seek};

/// What a field of the header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Magic,
    Version,
    TensorCount,
    MetadataCount,
    /// A u64 string length (of a key, a string value or a tensor name).
    StringLength,
    ValueType,
    ArrayElementType,
    ArrayLength,
    /// A fixed-width value (integer, float or bool).
    Scalar,
    DimensionCount,
    Dimension,
    TensorType,
    TensorOffset,
}

/// One field of the header: where it is and how wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField {
    pub offset: u64,
    pub width: u8,
    pub kind: FieldKind,
}

/// What the check found: the fields' places and where the tensor data begins.
#[derive(Debug, Clone, Default)]
pub struct HeaderLayout {
    pub fields: Vec<HeaderField>,
    pub tensor_data_offset: u64,
}

/// A problem with the header: the byte offset of the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderProblem {
    pub offset: u64,
    pub reason: String,
}

/// Longest key or tensor name accepted (llama.cpp's are under 100 bytes).
const MAX_NAME_BYTES: u64 = 1 << 16;
/// Deepest nesting of arrays accepted (GGUF files in use nest at most one level).
const MAX_ARRAY_DEPTH: usize = 4;
/// Most dimensions of a tensor (ggml's GGML_MAX_DIMS).
const MAX_DIMENSIONS: u64 = 4;
/// Most elements of one tensor: 2^48 (far beyond any model, far below overflow), or what a
/// 32-bit address space can index at all.
const MAX_TENSOR_ELEMENTS: u64 = if usize::BITS >= 64 {
    1 << 48
} else {
    u32::MAX as u64 / 4
};
/// The metadata may take this much memory beyond twice the file's size once parsed.
const METADATA_MEMORY_SLACK: u64 = 16 << 20;
/// What one parsed metadata value costs in memory besides its string bytes.
const VALUE_MEMORY: u64 = std::mem::size_of::<candle_core::quantized::gguf_file::Value>() as u64;

/// Block size (elements) and block bytes of the GGML types candle reads, by type id.
pub fn ggml_type_layout(type_id: u32) -> Option<(u64, u64)> {
    Some(match type_id {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        30 => (1, 2),     // BF16
        _ => return None,
    })
}

/// Bytes a value of GGUF value type `value_type` takes when it has a fixed width.
fn fixed_width(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

const STRING_TYPE: u32 = 8;
const ARRAY_TYPE: u32 = 9;

/// Checks the header of a `file_size`-byte GGUF read from `reader` (positioned anywhere; it is
/// read from the start). With `record_fields`, every field's place is recorded.
pub fn check_header<R: Read + Seek>(
    reader: &mut R,
    file_size: u64,
    record_fields: bool,
) -> Result<HeaderLayout, HeaderProblem> {
    let problem = |offset: u64, reason: String| HeaderProblem { offset, reason };
    reader
        .rewind()
        .map_err(|e| problem(0, format!("cannot read the file: {e}")))?;
    let mut walker = HeaderWalker {
        reader: BufReader::with_capacity(1 << 16, reader),
        position: 0,
        file_size,
        fields: Vec::new(),
        record_fields,
        metadata_memory: 0,
        alignment: 32,
    };
    walker.walk()?;
    Ok(HeaderLayout {
        fields: walker.fields,
        tensor_data_offset: walker.position.div_ceil(walker.alignment) * walker.alignment,
    })
}

struct HeaderWalker<R: Read + Seek> {
    reader: BufReader<R>,
    position: u64,
    file_size: u64,
    fields: Vec<HeaderField>,
    record_fields: bool,
    metadata_memory: u64,
    /// `general.alignment`, 32 unless the metadata says otherwise.
    alignment: u64,
}

impl<R: Read + Seek> HeaderWalker<R> {
    fn remaining(&self) -> u64 {
        self.file_size.saturating_sub(self.position)
    }

    fn problem(&self, offset: u64, reason: impl Into<String>) -> HeaderProblem {
        HeaderProblem {
            offset,
            reason: reason.into(),
        }
    }

    fn record(&mut self, offset: u64, width: u8, kind: FieldKind) {
        if self.record_fields {
            self.fields.push(HeaderField {
                offset,
                width,
                kind,
            });
        }
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], HeaderProblem> {
        let offset = self.position;
        if self.remaining() < N as u64 {
            return Err(self.problem(
                offset,
                format!(
                    "the file ends inside {what} ({} of {N} bytes left)",
                    self.remaining()
                ),
            ));
        }
        let mut bytes = [0u8; N];
        self.reader
            .read_exact(&mut bytes)
            .map_err(|e| self.problem(offset, format!("reading {what}: {e}")))?;
        self.position += N as u64;
        Ok(bytes)
    }

    fn u32_field(&mut self, kind: FieldKind, what: &str) -> Result<u32, HeaderProblem> {
        let offset = self.position;
        let value = u32::from_le_bytes(self.bytes::<4>(what)?);
        self.record(offset, 4, kind);
        Ok(value)
    }

    fn u64_field(&mut self, kind: FieldKind, what: &str) -> Result<u64, HeaderProblem> {
        let offset = self.position;
        let value = u64::from_le_bytes(self.bytes::<8>(what)?);
        self.record(offset, 8, kind);
        Ok(value)
    }

    fn skip(&mut self, count: u64, what: &str) -> Result<(), HeaderProblem> {
        let offset = self.position;
        if count > self.remaining() {
            return Err(self.problem(
                offset,
                format!(
                    "{what} needs {count} bytes but only {} remain in the file",
                    self.remaining()
                ),
            ));
        }
        // Within the buffer this costs nothing; beyond it, one seek.
        let step = i64::try_from(count).expect("bounded by the file size");
        self.reader
            .seek_relative(step)
            .map_err(|e| self.problem(offset, format!("skipping {what}: {e}")))?;
        self.position += count;
        Ok(())
    }

    /// A string's u64 length, checked against the bytes left; returns it and where it began.
    fn string_length(&mut self, what: &str) -> Result<(u64, u64), HeaderProblem> {
        let offset = self.position;
        let length = self.u64_field(FieldKind::StringLength, what)?;
        if length > self.remaining() {
            return Err(self.problem(
                offset,
                format!(
                    "{what} is {length} bytes long but only {} remain in the file",
                    self.remaining()
                ),
            ));
        }
        Ok((length, offset))
    }

    /// Skips a length-prefixed string (a string value); returns its length.
    fn skip_string(&mut self, what: &str) -> Result<u64, HeaderProblem> {
        let (length, _) = self.string_length(what)?;
        self.skip(length, what)?;
        Ok(length)
    }

    /// A key or tensor name: a length-prefixed UTF-8 string of at most `MAX_NAME_BYTES`, not
    /// among `seen` (which it joins).
    fn unique_name(
        &mut self,
        what: &str,
        seen: &mut HashSet<String>,
    ) -> Result<String, HeaderProblem> {
        let (length, offset) = self.string_length(what)?;
        if length > MAX_NAME_BYTES {
            return Err(self.problem(
                offset,
                format!("{what} is {length} bytes long (at most {MAX_NAME_BYTES} accepted)"),
            ));
        }
        let mut bytes = vec![0u8; length as usize];
        self.reader
            .read_exact(&mut bytes)
            .map_err(|e| self.problem(offset, format!("reading {what}: {e}")))?;
        self.position += length;
        let name = String::from_utf8(bytes)
            .map_err(|_| self.problem(offset + 8, format!("{what} is not valid UTF-8")))?;
        if !seen.insert(name.clone()) {
            return Err(self.problem(offset, format!("{what} `{name}` appears twice")));
        }
        Ok(name)
    }

    fn charge_memory(&mut self, bytes: u64, key: &str, offset: u64) -> Result<(), HeaderProblem> {
        self.metadata_memory = self.metadata_memory.saturating_add(bytes);
        let budget = self
            .file_size
            .saturating_mul(2)
            .saturating_add(METADATA_MEMORY_SLACK);
        if self.metadata_memory > budget {
            return Err(self.problem(
                offset,
                format!(
                    "metadata key `{key}`: the metadata would take over {} MiB of memory for a \
                     {}-byte file",
                    self.metadata_memory >> 20,
                    self.file_size
                ),
            ));
        }
        Ok(())
    }

    /// One metadata value of `value_type`; `depth` counts enclosing arrays.
    fn value(&mut self, value_type: u32, key: &str, depth: usize) -> Result<(), HeaderProblem> {
        let offset = self.position;
        if let Some(width) = fixed_width(value_type) {
            self.record(offset, width as u8, FieldKind::Scalar);
            return self.skip(width, &format!("the value of `{key}`"));
        }
        match value_type {
            STRING_TYPE => {
                let length = self.skip_string(&format!("the string value of `{key}`"))?;
                self.charge_memory(length, key, offset)
            }
            ARRAY_TYPE => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.problem(
                        offset,
                        format!(
                            "metadata key `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                        ),
                    ));
                }
                let element_type =
                    self.u32_field(FieldKind::ArrayElementType, "an array's element type")?;
                if fixed_width(element_type).is_none()
                    && element_type != STRING_TYPE
                    && element_type != ARRAY_TYPE
                {
                    return Err(self.problem(
                        offset,
                        format!("metadata key `{key}`: unknown array element type {element_type}"),
                    ));
                }
                let length_at = self.position;
                let length = self.u64_field(FieldKind::ArrayLength, "an array's length")?;
                let smallest = fixed_width(element_type).unwrap_or(match element_type {
                    STRING_TYPE => 8,
                    _ => 12,
                });
                let needed = length.saturating_mul(smallest);
                if needed > self.remaining() {
                    return Err(self.problem(
                        length_at,
                        format!(
                            "metadata key `{key}`: an array of {length} elements needs at least \
                             {needed} bytes but only {} remain in the file",
                            self.remaining()
                        ),
                    ));
                }
                self.charge_memory(length.saturating_mul(VALUE_MEMORY), key, length_at)?;
                if let Some(width) = fixed_width(element_type) {
                    return self.skip(length * width, &format!("the array `{key}`"));
                }
                for _ in 0..length {
                    self.value(element_type, key, depth + 1)?;
                }
                Ok(())
            }
            other => Err(self.problem(
                offset,
                format!("metadata key `{key}`: unknown value type {other}"),
            )),
        }
    }

    fn walk(&mut self) -> Result<(), HeaderProblem> {
        let magic = self.bytes::<4>("the magic number")?;
        self.record(0, 4, FieldKind::Magic);
        if &magic != b"GGUF" {
            let reason = if &magic == b"FUGG" {
                "a big-endian GGUF file, which is not supported".to_string()
            } else {
                format!("the magic number is {magic:02x?}, not `GGUF`: not a GGUF file")
            };
            return Err(self.problem(0, reason));
        }
        let version = self.u32_field(FieldKind::Version, "the version")?;
        if !(version == 2 || version == 3) {
            return Err(self.problem(
                4,
                format!("GGUF version {version} is not supported (2 and 3 are)"),
            ));
        }
        let tensor_count = self.u64_field(FieldKind::TensorCount, "the tensor count")?;
        let metadata_count = self.u64_field(FieldKind::MetadataCount, "the metadata count")?;
        // A metadata entry takes at least 13 bytes, a tensor entry at least 28.
        let needed = metadata_count
            .saturating_mul(13)
            .saturating_add(tensor_count.saturating_mul(28));
        if needed > self.remaining() {
            return Err(self.problem(
                8,
                format!(
                    "the header declares {tensor_count} tensors and {metadata_count} metadata \
                     entries, which need at least {needed} bytes, but only {} remain in the file",
                    self.remaining()
                ),
            ));
        }
        let mut keys = HashSet::new();
        for _ in 0..metadata_count {
            let key_at = self.position;
            let key = self.unique_name("metadata key", &mut keys)?;
            self.charge_memory(VALUE_MEMORY + key.len() as u64, &key, key_at)?;
            let type_at = self.position;
            let value_type = self.u32_field(FieldKind::ValueType, "a value type")?;
            if key == "general.alignment" {
                self.alignment = self.read_alignment(value_type, type_at)?;
            } else {
                self.value(value_type, &key, 0)?;
            }
        }
        self.tensor_table(tensor_count)
    }

    /// `general.alignment` must be a u32 power of two (as llama.cpp requires).
    fn read_alignment(&mut self, value_type: u32, type_at: u64) -> Result<u64, HeaderProblem> {
        if value_type != 4 {
            return Err(self.problem(
                type_at,
                format!("metadata key `general.alignment` has value type {value_type}, not u32"),
            ));
        }
        let value_at = self.position;
        let value = self.u32_field(FieldKind::Scalar, "the alignment")?;
        if value == 0 || !value.is_power_of_two() {
            return Err(self.problem(
                value_at,
                format!("metadata key `general.alignment` is {value}, not a power of two"),
            ));
        }
        Ok(u64::from(value))
    }

    fn tensor_table(&mut self, tensor_count: u64) -> Result<(), HeaderProblem> {
        let mut names = HashSet::new();
        for _ in 0..tensor_count {
            let name = self.unique_name("tensor name", &mut names)?;
            let dims_at = self.position;
            let dimension_count =
                u64::from(self.u32_field(FieldKind::DimensionCount, "a dimension count")?);
            if dimension_count == 0 || dimension_count > MAX_DIMENSIONS {
                return Err(self.problem(
                    dims_at,
                    format!(
                        "tensor `{name}` has {dimension_count} dimensions (1 to {MAX_DIMENSIONS} \
                         accepted)"
                    ),
                ));
            }
            let mut elements: u64 = 1;
            let mut first_dimension = 0;
            for index in 0..dimension_count {
                let at = self.position;
                let dimension = self.u64_field(FieldKind::Dimension, "a dimension")?;
                if index == 0 {
                    first_dimension = dimension;
                }
                if dimension == 0 {
                    return Err(self.problem(
                        at,
                        format!("tensor `{name}`: dimension {index} is 0 (an empty tensor)"),
                    ));
                }
                elements = elements
                    .checked_mul(dimension)
                    .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
                    .ok_or_else(|| {
                        self.problem(
                            at,
                            format!(
                                "tensor `{name}`: dimension {index} is {dimension}, which makes \
                                 more than {MAX_TENSOR_ELEMENTS} elements"
                            ),
                        )
                    })?;
            }
            let type_at = self.position;
            let type_id = self.u32_field(FieldKind::TensorType, "a tensor type")?;
            let (block_elements, _) = ggml_type_layout(type_id).ok_or_else(|| {
                self.problem(
                    type_at,
                    format!("tensor `{name}` has unknown GGML type {type_id}"),
                )
            })?;
            if first_dimension % block_elements != 0 {
                return Err(self.problem(
                    dims_at,
                    format!(
                        "tensor `{name}`: its rows of {first_dimension} elements are not whole \
                         blocks of {block_elements} (GGML type {type_id})"
                    ),
                ));
            }
            let offset_at = self.position;
            let offset = self.u64_field(FieldKind::TensorOffset, "a tensor offset")?;
            if offset % self.alignment != 0 {
                return Err(self.problem(
                    offset_at,
                    format!(
                        "tensor `{name}`: data offset {offset} is not a multiple of the \
                         alignment {}",
                        self.alignment
                    ),
                ));
            }
        }
        Ok(())
    }
}
