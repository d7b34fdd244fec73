//! Secrets configured on the host, handed to guests through
//! `context.secret` and never written anywhere.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Named secret values. Loaded from the host's environment: the variable
/// `FERRY_SECRET_API_TOKEN` is the secret `api-token` (also reachable as
/// `api_token`).
#[derive(Clone, Default)]
pub struct Secrets(BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values must never reach a log.
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// Secrets from `FERRY_SECRET_*` variables of this process.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Secrets from `(name, value)` variable pairs.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let map = vars
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("FERRY_SECRET_").map(|name| (name.to_ascii_lowercase(), v)))
            .filter(|(name, _)| !name.is_empty())
            .collect();
        Self(map)
    }

    /// The value of `name`; `-` and `_` are interchangeable, case is ignored.
    pub fn get(&self, name: &str) -> Option<&str> {
        let key = name.to_ascii_lowercase().replace('-', "_");
        self.0.get(&key).map(String::as_str)
    }

    /// What the journal keeps in place of a value: a marker and a hash.
    pub fn journal_form(value: Option<&str>) -> String {
        match value {
            Some(v) => serde_json::json!({
                "value": crate::domain::REDACTED,
                "sha256": hex::encode(Sha256::digest(v.as_bytes())),
            })
            .to_string(),
            None => "null".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_values_never_journaled() {
        let s = Secrets::from_vars([
            ("FERRY_SECRET_API_TOKEN".to_owned(), "tok-123".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ]);
        assert_eq!(s.get("api-token"), Some("tok-123"));
        assert_eq!(s.get("API_TOKEN"), Some("tok-123"));
        assert_eq!(s.get("home"), None);
        let journaled = Secrets::journal_form(s.get("api-token"));
        assert!(!journaled.contains("tok-123"));
        assert!(journaled.contains("<redacted>"));
        assert!(!format!("{s:?}").contains("tok-123"));
    }
}
