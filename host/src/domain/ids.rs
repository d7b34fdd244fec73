//! Identifiers with a readable, prefixed text form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a text is not a valid id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseIdError {
    #[error("`{0}` is not a run id: run ids look like run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K")]
    Run(String),
    #[error("`{0}` is not a component hash: expected 64 hexadecimal digits (sha256)")]
    Hash(String),
}

/// Identifies a run: `run_` followed by a ULID, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct RunId(ulid::Ulid);

impl RunId {
    const PREFIX: &'static str = "run_";

    /// A new id for a run created now. Ids made by this process are
    /// strictly increasing, even within one millisecond.
    pub fn new() -> Self {
        static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
        let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        Self(generator.generate().unwrap_or_else(|_| ulid::Ulid::new()))
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for RunId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix(Self::PREFIX)
            .and_then(|rest| ulid::Ulid::from_string(rest).ok())
            .map(Self)
            .ok_or_else(|| ParseIdError::Run(s.chars().take(64).collect()))
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> Self {
        id.to_string()
    }
}

impl TryFrom<String> for RunId {
    type Error = ParseIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The sha256 of a component's bytes, as 64 lower-case hex digits. A
/// component is identified by its content: the same bytes, the same hash.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ComponentHash(String);

impl ComponentHash {
    /// Hashes component bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// The full hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for ComponentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ComponentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.short())
    }
}

impl FromStr for ComponentHash {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(hex.to_ascii_lowercase()))
        } else {
            Err(ParseIdError::Hash(s.chars().take(80).collect()))
        }
    }
}

impl From<ComponentHash> for String {
    fn from(h: ComponentHash) -> Self {
        h.0
    }
}

impl TryFrom<String> for ComponentHash {
    type Error = ParseIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_round_trips_and_rejects_garbage() {
        let id = RunId::new();
        let text = id.to_string();
        assert!(text.starts_with("run_"));
        assert_eq!(text.parse::<RunId>(), Ok(id));
        assert!("run_nope".parse::<RunId>().is_err());
        assert!("01JEXAMPLE".parse::<RunId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), id);
    }

    #[test]
    fn component_hash_is_sha256_hex() {
        let h = ComponentHash::of(b"abc");
        assert_eq!(h.as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(format!("sha256:{h}").parse::<ComponentHash>(), Ok(h.clone()));
        assert_eq!(h.short(), "ba7816bf8f01");
        assert!("xyz".parse::<ComponentHash>().is_err());
    }
}
