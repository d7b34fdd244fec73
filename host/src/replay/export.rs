//! The export file: a self-contained recording of one run that
//! `ferry replay --from-file` replays on another machine.
//!
//! JSON, versioned by `format` and `version`. It holds the run, its journal
//! (which never contains secret values: only their marker and hash) and the
//! hashes of every component the run used, with their bytes when exported
//! `--with-components`, and the blobs its steps stored or read (always:
//! a replay needs the bytes `get-blob` answered).

use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::Recording;
use crate::domain::{ComponentHash, Entry, Run, World};

const FORMAT: &str = "ferry-export";
const VERSION: u32 = 1;

/// Why an export file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the file is not a Ferry export (it is not JSON, or it is truncated or corrupted): {0}")]
    Unreadable(String),
    #[error("the file is a `{0}` document, not a Ferry export")]
    WrongFormat(String),
    #[error("the export is version {0}; this Ferry reads version {VERSION}")]
    Version(u32),
    #[error("component {0} in the export is corrupted: its bytes do not hash to it")]
    BadComponent(ComponentHash),
    #[error("blob sha256:{0} in the export is corrupted: its bytes do not hash to it")]
    BadBlob(String),
    #[error("the export is inconsistent: {0}")]
    Inconsistent(String),
}

/// One component the run used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportComponent {
    pub hash: ComponentHash,
    pub world: World,
    /// Base64 of the component's bytes; none unless exported with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_base64: Option<String>,
}

/// The export document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    pub version: u32,
    pub run: Run,
    pub journal: Vec<Entry>,
    pub components: Vec<ExportComponent>,
    /// Blobs the journal mentions: sha256 hex → base64 of the bytes.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub blobs: std::collections::BTreeMap<String, String>,
}

impl Export {
    /// An export of `rec`; `with_bytes` includes the component bytes.
    pub fn new(rec: &Recording, worlds: &HashMap<ComponentHash, World>, with_bytes: bool) -> Self {
        let mut components: Vec<ExportComponent> = rec
            .components
            .iter()
            .map(|(hash, bytes)| ExportComponent {
                hash: hash.clone(),
                world: worlds.get(hash).copied().unwrap_or(World::Step),
                bytes_base64: with_bytes.then(|| base64::engine::general_purpose::STANDARD.encode(bytes)),
            })
            .collect();
        components.sort_by(|a, b| a.hash.cmp(&b.hash));
        let blobs = rec
            .blobs
            .iter()
            .map(|(hash, bytes)| (hash.clone(), base64::engine::general_purpose::STANDARD.encode(bytes)))
            .collect();
        Self {
            format: FORMAT.into(),
            version: VERSION,
            run: rec.run.clone(),
            journal: rec.journal.clone(),
            components,
            blobs,
        }
    }

    /// Parses and checks an export file's text.
    pub fn parse(text: &[u8]) -> Result<Self, ExportError> {
        let probe: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| ExportError::Unreadable(e.to_string()))?;
        match probe.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => return Err(ExportError::WrongFormat(other.chars().take(40).collect())),
            None => return Err(ExportError::WrongFormat("(no format field)".into())),
        }
        let version = probe.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if version != u64::from(VERSION) {
            return Err(ExportError::Version(u32::try_from(version).unwrap_or(u32::MAX)));
        }
        let export: Self = serde_json::from_value(probe).map_err(|e| ExportError::Unreadable(e.to_string()))?;
        if let Some(e) = export.journal.iter().find(|e| e.run_id != export.run.id) {
            return Err(ExportError::Inconsistent(format!(
                "journal entry {} belongs to {}, not {}",
                e.key, e.run_id, export.run.id
            )));
        }
        if let Some(e) = export.journal.iter().find(|e| Entry::hash_request(&e.request) != e.request_hash) {
            return Err(ExportError::Inconsistent(format!("journal entry {} does not match its request hash", e.key)));
        }
        Ok(export)
    }

    /// The recording, with the component bytes the export carries.
    pub fn recording(&self) -> Result<Recording, ExportError> {
        let mut components = HashMap::new();
        for c in &self.components {
            if let Some(b64) = &c.bytes_base64 {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| ExportError::BadComponent(c.hash.clone()))?;
                if ComponentHash::of(&bytes) != c.hash {
                    return Err(ExportError::BadComponent(c.hash.clone()));
                }
                components.insert(c.hash.clone(), bytes);
            }
        }
        let mut blobs = HashMap::new();
        for (hash, b64) in &self.blobs {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| ExportError::BadBlob(hash.clone()))?;
            if crate::engine::blobs::hash(&bytes) != *hash {
                return Err(ExportError::BadBlob(hash.clone()));
            }
            blobs.insert(hash.clone(), bytes);
        }
        Ok(Recording { run: self.run.clone(), journal: self.journal.clone(), components, blobs })
    }
}
