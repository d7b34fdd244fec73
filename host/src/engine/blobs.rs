//! Where `context.put-blob` keeps bytes and `context.get-blob` finds them:
//! the store's content-addressed blobs for live runs, a recording's blobs
//! for an offline replay from a file.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::domain::Micros;
use crate::store::Store;

/// Largest blob a guest may store.
pub const MAX_BLOB: usize = 32 << 20;

/// The blob source of an attempt.
#[derive(Clone, Default)]
pub enum Blobs {
    /// No blob store: `put-blob` and `get-blob` fail the attempt.
    #[default]
    None,
    /// The store's blobs table.
    Store(Arc<dyn Store>),
    /// Read-only blobs carried by a recording (replay from a file).
    Memory(Arc<HashMap<String, Vec<u8>>>),
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "Blobs::None",
            Self::Store(_) => "Blobs::Store",
            Self::Memory(_) => "Blobs::Memory",
        })
    }
}

impl Blobs {
    /// Stores `bytes` under `hash` (their sha256 in hex).
    pub async fn put(&self, hash: &str, bytes: &[u8]) -> Result<(), String> {
        match self {
            Self::None => Err("this host has no blob store".into()),
            Self::Store(store) => store
                .put_blob(hash, bytes, Micros::now())
                .await
                .map(drop)
                .map_err(|e| format!("cannot store blob: {e}")),
            Self::Memory(_) => Err("a replay stores no blobs".into()),
        }
    }

    /// The bytes under `hash`, if any.
    pub async fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            Self::None => Err("this host has no blob store".into()),
            Self::Store(store) => store.blob(hash).await.map_err(|e| format!("cannot read blob sha256:{hash}: {e}")),
            Self::Memory(blobs) => Ok(blobs.get(hash).cloned()),
        }
    }
}

/// The sha256 (hex) of `bytes`.
pub fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The hash in a reference `sha256:<64 lower-case hex digits>`, or `None`
/// when `reference` is not one.
pub fn parse_reference(reference: &str) -> Option<&str> {
    let hex = reference.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(hex)
}

/// The blob hashes a journal mentions (`put-blob` and `get-blob` entries).
pub fn referenced(journal: &[crate::domain::Entry]) -> Vec<String> {
    use crate::domain::EntryKind;
    let mut out: Vec<String> = journal
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::PutBlob => serde_json::from_str::<serde_json::Value>(&e.request).ok(),
            EntryKind::GetBlob => e.response.as_deref().and_then(|r| serde_json::from_str(r).ok()),
            _ => None,
        })
        .filter_map(|v| v["sha256"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_strict() {
        let h = "a".repeat(64);
        assert_eq!(parse_reference(&format!("sha256:{h}")), Some(h.as_str()));
        assert_eq!(parse_reference(&h), None);
        assert_eq!(parse_reference(&format!("sha256:{}", "A".repeat(64))), None);
        assert_eq!(parse_reference("sha256:abc"), None);
        assert_eq!(parse_reference(&format!("sha256:{}g", "a".repeat(63))), None);
        assert_eq!(parse_reference(&format!("sha256:{h}0")), None);
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(hash(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
