//! Invited annotators, as the store keeps them: a name (what their pairs record as
//! `annotator_id`), the sha256 of their bearer token (never the token), when they were
//! invited and when, if ever, revoked; and making and hashing tokens.

use std::io::Read;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnotatorRecord {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; `None` while the invite is valid.
    pub revoked_at: Option<String>,
}

/// What a presented token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// A valid invite: pairs are recorded under this annotator's name.
    Valid(String),
    /// The token was this annotator's, and their invite was revoked.
    Revoked(String),
    Unknown,
}

/// A new bearer token: 32 bytes from the system's random source, as 64 hex digits.
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut source| source.read_exact(&mut bytes))
        .context("reading /dev/urandom for a new annotator token")?;
    Ok(hex::encode(bytes))
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
