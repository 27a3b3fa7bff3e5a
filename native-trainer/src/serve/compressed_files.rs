//! The web app's files gzip-compressed for clients that accept it: text, JavaScript and wasm
//! shrink to a fraction, compressed once per file version (path + modification time) and kept.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use flate2::Compression;
use flate2::write::GzEncoder;

/// Files smaller than this are sent as they are.
const MIN_COMPRESSED_SIZE: usize = 1024;

/// A file's gzip bytes and the modification time they were made from.
type Compressed = (SystemTime, Arc<Vec<u8>>);

#[derive(Default)]
pub struct CompressedFiles {
    cache: Mutex<HashMap<PathBuf, Compressed>>,
}

impl CompressedFiles {
    /// Whether a file of this name and size is worth compressing.
    pub fn worth_it(name: &str, size: usize) -> bool {
        let compressible = matches!(
            name.rsplit('.').next().unwrap_or(""),
            "html" | "js" | "wasm" | "css" | "json" | "svg" | "md" | "txt"
        );
        compressible && size >= MIN_COMPRESSED_SIZE
    }

    /// The gzip bytes of `path` (whose content is `bytes`), compressed at most once per version.
    pub fn gzip(&self, path: &Path, bytes: &[u8]) -> std::io::Result<Arc<Vec<u8>>> {
        let modified = std::fs::metadata(path)?.modified()?;
        if let Some((at, cached)) = self.cache.lock().expect("cache lock").get(path)
            && *at == modified
        {
            return Ok(cached.clone());
        }
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(bytes)?;
        let compressed = Arc::new(encoder.finish()?);
        self.cache
            .lock()
            .expect("cache lock")
            .insert(path.to_path_buf(), (modified, compressed.clone()));
        Ok(compressed)
    }
}
