//! Writing a download safely: bytes go to `NAME.part` while being hashed and counted on a
//! progress bar; only a file whose size and sha256 match gets its final name, next to a
//! `NAME.sha256` record that lets the next run skip the work.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// What a finished download must be.
#[derive(Debug, Clone)]
pub struct Expected {
    pub size: u64,
    pub sha256: String,
}

/// A `.part` file being filled.
pub struct PartialFile {
    final_path: PathBuf,
    part_path: PathBuf,
    /// `None` once the file has been closed by `finish`.
    writer: Option<BufWriter<File>>,
    hasher: Sha256,
    written: u64,
    progress: ProgressBar,
}

impl PartialFile {
    pub fn create(final_path: &Path, total_size: u64, message: &str) -> Result<Self> {
        let part_path = part_path(final_path);
        let file = File::create(&part_path)
            .with_context(|| format!("cannot create {}", part_path.display()))?;
        let progress = ProgressBar::new(total_size);
        progress.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        progress.set_message(message.to_string());
        Ok(Self {
            final_path: final_path.to_path_buf(),
            part_path,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: Sha256::new(),
            written: 0,
            progress,
        })
    }

    /// Copies everything from `reader` into the file.
    pub fn copy_from(&mut self, reader: &mut impl Read) -> Result<()> {
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "reading after {} bytes of {}",
                            self.written,
                            self.final_path.display()
                        )
                    });
                }
            };
            self.writer
                .as_mut()
                .context("download already finished")?
                .write_all(&buffer[..n])
                .with_context(|| format!("writing {}", self.part_path.display()))?;
            self.hasher.update(&buffer[..n]);
            self.written += n as u64;
            self.progress.inc(n as u64);
        }
    }

    /// Checks size and sha256, then renames the file into place and records the check.
    pub fn finish(mut self, expected: &Expected) -> Result<PathBuf> {
        let writer = self.writer.take().context("download already finished")?;
        let file = writer.into_inner().context("flushing download")?;
        file.sync_all()?;
        drop(file);
        self.progress.finish_and_clear();
        let sha256 = hex::encode(self.hasher.finalize_reset());
        if self.written != expected.size || sha256 != expected.sha256 {
            let _ = std::fs::remove_file(&self.part_path);
            bail!(
                "{} failed verification: got {} bytes with sha256 {sha256}, expected {} bytes with sha256 {}; the download was discarded",
                self.final_path.display(),
                self.written,
                expected.size,
                expected.sha256
            );
        }
        std::fs::rename(&self.part_path, &self.final_path)
            .with_context(|| format!("renaming into {}", self.final_path.display()))?;
        std::fs::write(
            record_path(&self.final_path),
            format!("{sha256}  {}\n", self.written),
        )?;
        tracing::info!(
            "verified {} ({} bytes, sha256 {sha256})",
            self.final_path.display(),
            self.written
        );
        Ok(self.final_path.clone())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        // A download that was not finished leaves no half file behind.
        if self.part_path.exists() {
            let _ = std::fs::remove_file(&self.part_path);
        }
        self.progress.finish_and_clear();
    }
}

/// True when `path` exists and matches the size in its verification record.
pub fn is_verified(path: &Path) -> bool {
    let Ok(record) = std::fs::read_to_string(record_path(path)) else {
        return false;
    };
    let mut fields = record.split_whitespace();
    let (Some(sha), Some(size)) = (fields.next(), fields.next()) else {
        return false;
    };
    let size: u64 = size.parse().unwrap_or(u64::MAX);
    sha.len() == 64
        && std::fs::metadata(path)
            .map(|m| m.len() == size)
            .unwrap_or(false)
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

fn record_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}
