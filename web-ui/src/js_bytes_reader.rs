//! A file read straight out of a JavaScript byte array: `Read` and `Seek` that copy into wasm
//! memory only the bytes asked for, so an engine reads a GGUF's tensors one at a time without
//! the whole file ever sitting in a wasm memory (which would keep that size for good).

use std::io::{self, Read, Seek, SeekFrom};

use js_sys::Uint8Array;

pub struct JsBytesReader {
    bytes: Uint8Array,
    position: u64,
}

impl JsBytesReader {
    pub fn new(bytes: Uint8Array) -> Self {
        Self { bytes, position: 0 }
    }

    fn len(&self) -> u64 {
        u64::from(self.bytes.length())
    }
}

impl Read for JsBytesReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len().saturating_sub(self.position);
        let count = left.min(buf.len() as u64) as u32;
        if count == 0 {
            return Ok(0);
        }
        // Below `len`, a u32: the position fits too.
        let start = self.position as u32;
        self.bytes
            .subarray(start, start + count)
            .copy_to(&mut buf[..count as usize]);
        self.position += u64::from(count);
        Ok(count as usize)
    }
}

impl Seek for JsBytesReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, offset) = match to {
            SeekFrom::Start(position) => {
                self.position = position;
                return Ok(position);
            }
            SeekFrom::End(offset) => (self.len(), offset),
            SeekFrom::Current(offset) => (self.position, offset),
        };
        self.position = base.checked_add_signed(offset).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seeking {offset} bytes from {base} goes before the start"),
            )
        })?;
        Ok(self.position)
    }
}
