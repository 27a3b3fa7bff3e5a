//! Seeded mutations of real and tiny files for the hostile-input property tests: truncation
//! at any offset, flipped and overwritten bytes, inserted and deleted runs, and — aimed with
//! the GGUF header's field map — counts, lengths, type ids, dimensions and offsets set to
//! extreme values (0, 2^31, 2^32 − 1, 2^63, u64::MAX, one off the real value, …).
//! `PatchedReader` applies a mutation to a large file without copying it.

use std::io::{Read, Seek, SeekFrom};

use shared::SplitMix64;
use shared::gguf::header_check::{FieldKind, HeaderField};

/// One change to a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Keep only the first `len` bytes.
    Truncate(u64),
    /// Replace bytes from `offset` on.
    Overwrite { offset: u64, bytes: Vec<u8> },
    /// Insert bytes before `offset`.
    Insert { offset: u64, bytes: Vec<u8> },
    /// Remove `len` bytes from `offset`.
    Delete { offset: u64, len: u64 },
}

impl Mutation {
    /// The mutated copy of `bytes`.
    pub fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let clamp = |offset: u64| (offset as usize).min(bytes.len());
        match self {
            Mutation::Truncate(len) => bytes[..clamp(*len)].to_vec(),
            Mutation::Overwrite {
                offset,
                bytes: patch,
            } => {
                let mut out = bytes.to_vec();
                let start = clamp(*offset);
                let end = (start + patch.len()).min(out.len());
                out[start..end].copy_from_slice(&patch[..end - start]);
                out
            }
            Mutation::Insert {
                offset,
                bytes: insert,
            } => {
                let at = clamp(*offset);
                [&bytes[..at], insert.as_slice(), &bytes[at..]].concat()
            }
            Mutation::Delete { offset, len } => {
                let start = clamp(*offset);
                let end = clamp(offset.saturating_add(*len));
                [&bytes[..start], &bytes[end..]].concat()
            }
        }
    }

    /// Whether `PatchedReader` can apply it (it does not shift bytes).
    pub fn keeps_offsets(&self) -> bool {
        matches!(self, Mutation::Truncate(_) | Mutation::Overwrite { .. })
    }
}

/// Draws mutations from a seed: the same seed, the same sequence.
pub struct Mutator {
    rng: SplitMix64,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64(seed),
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.rng.below(n) }
    }

    /// An offset in `0..len` (a truncation point, say), from the mutator's sequence.
    pub fn offset(&mut self, len: u64) -> u64 {
        self.below(len)
    }

    /// An extreme or near-miss value for a field that now holds `original`, in a file of
    /// `file_len` bytes (the largest counts that file could still seem to hold are included).
    fn hostile_value(&mut self, original: u64, width: u8, file_len: u64) -> u64 {
        let candidates = [
            file_len,
            file_len / 2,
            file_len / 4,
            file_len / 4 - 1,
            file_len / 8,
            file_len / 8 - 1,
            file_len / 12,
            file_len / 16,
            0,
            1,
            2,
            original.wrapping_add(1),
            original.wrapping_sub(1),
            original.wrapping_mul(2),
            original.wrapping_add(1 << 32),
            0x7f,
            0xff,
            0xffff,
            1 << 31,
            u32::MAX as u64,
            1 << 32,
            1 << 62,
            1 << 63,
            (1 << 63) - 1,
            u64::MAX,
            u64::MAX - 1,
            self.rng.next_u64(),
        ];
        let value = candidates[self.below(candidates.len() as u64) as usize];
        let mask = if width >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width as u32)) - 1
        };
        value & mask
    }

    /// A mutation of `bytes`, the first bytes of a `file_len`-byte file; a third of them aimed
    /// at `fields` when there are any.
    pub fn mutation(&mut self, bytes: &[u8], file_len: u64, fields: &[HeaderField]) -> Mutation {
        let len = bytes.len() as u64;
        let choice = self.below(if fields.is_empty() { 6 } else { 9 });
        match choice {
            0 => Mutation::Truncate(self.below(len)),
            1 => {
                let offset = self.below(len);
                let flip = 1u8 << self.below(8);
                Mutation::Overwrite {
                    offset,
                    bytes: vec![bytes[offset as usize] ^ flip],
                }
            }
            2 => {
                let count = 1 + self.below(16);
                let offset = self.below(len);
                let patch = (0..count).map(|_| self.rng.next_u64() as u8).collect();
                Mutation::Overwrite {
                    offset,
                    bytes: patch,
                }
            }
            3 => {
                let count = 1 + self.below(9);
                let patch = (0..count).map(|_| self.rng.next_u64() as u8).collect();
                Mutation::Insert {
                    offset: self.below(len + 1),
                    bytes: patch,
                }
            }
            4 => Mutation::Delete {
                offset: self.below(len),
                len: 1 + self.below(9),
            },
            5 => {
                // The header region, where a flip matters most.
                let offset = self.below(len.min(4096));
                Mutation::Overwrite {
                    offset,
                    bytes: vec![self.rng.next_u64() as u8],
                }
            }
            _ => {
                // A kind of field first, then one of its fields: the few array lengths and
                // type ids are hit as often as the many string lengths.
                let mut kinds: Vec<FieldKind> = Vec::new();
                for field in fields {
                    if !kinds.contains(&field.kind) {
                        kinds.push(field.kind);
                    }
                }
                let kind = kinds[self.below(kinds.len() as u64) as usize];
                let of_kind: Vec<&HeaderField> = fields.iter().filter(|f| f.kind == kind).collect();
                let field = *of_kind[self.below(of_kind.len() as u64) as usize];
                let width = field.width as usize;
                let start = field.offset as usize;
                let mut current = [0u8; 8];
                current[..width].copy_from_slice(&bytes[start..start + width]);
                let value = self.hostile_value(u64::from_le_bytes(current), field.width, file_len);
                Mutation::Overwrite {
                    offset: field.offset,
                    bytes: value.to_le_bytes()[..width].to_vec(),
                }
            }
        }
    }
}

/// A file's bytes with a truncation or an overwrite applied on the fly, for files too large
/// to copy once per case (the real model).
pub struct PatchedReader<'a> {
    base: &'a [u8],
    len: u64,
    patch: Option<(u64, Vec<u8>)>,
    position: u64,
}

impl<'a> PatchedReader<'a> {
    /// `mutation` must keep offsets (`Mutation::keeps_offsets`).
    pub fn new(base: &'a [u8], mutation: &Mutation) -> Self {
        let (len, patch) = match mutation {
            Mutation::Truncate(len) => ((*len).min(base.len() as u64), None),
            Mutation::Overwrite { offset, bytes } => {
                (base.len() as u64, Some((*offset, bytes.clone())))
            }
            other => panic!("PatchedReader cannot apply {other:?}"),
        };
        Self {
            base,
            len,
            patch,
            position: 0,
        }
    }
}

impl Read for PatchedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = self.position.min(self.len);
        let end = (start + buf.len() as u64).min(self.len);
        let count = (end - start) as usize;
        buf[..count].copy_from_slice(&self.base[start as usize..end as usize]);
        if let Some((offset, bytes)) = &self.patch {
            for (i, byte) in bytes.iter().enumerate() {
                let at = offset + i as u64;
                if (start..end).contains(&at) {
                    buf[(at - start) as usize] = *byte;
                }
            }
        }
        self.position = end;
        Ok(count)
    }
}

impl Seek for PatchedReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.position)
    }
}
