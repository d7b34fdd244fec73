//! The sources and the JSON shapes the pipeline's steps pass each other.

use std::collections::BTreeMap;
use std::fmt;

use ferry_sdk::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::week::Week;

/// One of the six APIs the pipeline pulls from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Meta,
    Linkedin,
    Ga4,
    SearchConsole,
    Mailchimp,
    Warehouse,
}

impl Source {
    /// Every source, in the pipeline's order.
    pub const ALL: [Source; 6] =
        [Source::Meta, Source::Linkedin, Source::Ga4, Source::SearchConsole, Source::Mailchimp, Source::Warehouse];

    /// The name the token endpoint uses (`search-console`); the pull step of
    /// the source is `pull-<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Meta => "meta",
            Source::Linkedin => "linkedin",
            Source::Ga4 => "ga4",
            Source::SearchConsole => "search-console",
            Source::Mailchimp => "mailchimp",
            Source::Warehouse => "warehouse",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `base_url` without trailing slashes, or a fatal error when it is not an
/// `http://` or `https://` URL.
pub fn base_url(url: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(trimmed.to_owned()),
        _ => Err(Error::fatal(format!("`base_url` must be an http:// or https:// URL, not {url:?}"))),
    }
}

/// A fatal error unless `client` is a plausible client id (non-empty, no
/// spaces or slashes: it goes into URLs, keys and file names).
pub fn check_client(client: &str) -> Result<()> {
    let ok = !client.is_empty()
        && client.len() <= 64
        && client.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(Error::fatal(format!("`client` must be a client id such as \"c01\", not {client:?}"))) }
}

/// The input of every pull step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullInput {
    pub client: String,
    /// `YYYY-Www`.
    pub week: String,
    pub base_url: String,
    /// A bearer token for this client and source (from `refresh-tokens`).
    pub token: String,
}

impl PullInput {
    /// Checks the input; returns the parsed week and the base URL without a
    /// trailing slash. Every problem is fatal.
    pub fn check(&self) -> Result<(Week, String)> {
        check_client(&self.client)?;
        let week = Week::parse_input(&self.week)?;
        let base = base_url(&self.base_url)?;
        if self.token.trim().is_empty() {
            return Err(Error::fatal("`token` is empty: pass the source's token from refresh-tokens"));
        }
        Ok((week, base))
    }
}

/// The output of every pull step: the source's raw rows for (client, week)
/// in the order received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullOutput {
    pub source: Source,
    pub client: String,
    pub week: String,
    /// The rows exactly as the API returned them, page after page.
    pub rows: Vec<Value>,
    /// Pages fetched in the pagination that produced `rows`.
    pub pages: u32,
    /// Whether the input token had expired and the pull asked for a new one.
    pub token_refreshed: bool,
}

impl PullOutput {
    /// A fatal error unless this is the pull of `source` for
    /// (`client`, `week`): a transform must not mix clients or weeks.
    pub fn check(&self, source: Source, client: &str, week: &Week) -> Result<()> {
        if self.source != source {
            return Err(Error::fatal(format!("expected the output of pull-{source}, got pull-{}", self.source)));
        }
        if self.client != client || self.week != week.to_string() {
            return Err(Error::fatal(format!(
                "the {source} pull is for {} {}, not for {client} {week}",
                self.client, self.week
            )));
        }
        Ok(())
    }
}

/// One client of the agency (`GET /agency/v1/clients`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// `{"clients": [...]}`: the upstream's answer and `list-clients`' output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientList {
    pub clients: Vec<Client>,
}

/// `refresh-tokens`' output: one token per source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub client: String,
    /// Keyed by [`Source::as_str`] (`search-console`).
    pub tokens: BTreeMap<String, String>,
}

impl Tokens {
    /// The token of `source`, or a fatal error naming the missing source.
    pub fn get(&self, source: Source) -> Result<&str> {
        self.tokens
            .get(source.as_str())
            .map(String::as_str)
            .ok_or_else(|| Error::fatal(format!("refresh-tokens returned no token for {source}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_serialize_as_their_names() {
        for s in Source::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), Value::String(s.as_str().into()));
            assert_eq!(serde_json::from_value::<Source>(Value::String(s.to_string())).unwrap(), s);
        }
    }

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(base_url("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(base_url("https://api.example").unwrap(), "https://api.example");
        for bad in ["", "127.0.0.1:8080", "ftp://x", "http://", "http:///"] {
            assert!(base_url(bad).unwrap_err().is_fatal(), "{bad}");
        }
    }

    #[test]
    fn pull_input_is_checked() {
        let ok = PullInput {
            client: "c01".into(),
            week: "2026-W49".into(),
            base_url: "http://127.0.0.1:1/".into(),
            token: "tok_1".into(),
        };
        let (week, base) = ok.check().unwrap();
        assert_eq!(week.to_string(), "2026-W49");
        assert_eq!(base, "http://127.0.0.1:1");
        for bad in [
            PullInput { client: "c 1".into(), ..ok.clone() },
            PullInput { week: "2026-49".into(), ..ok.clone() },
            PullInput { token: " ".into(), ..ok.clone() },
        ] {
            assert!(bad.check().unwrap_err().is_fatal());
        }
    }

    #[test]
    fn pull_outputs_must_match_the_transform() {
        let week = Week::parse("2026-W49").unwrap();
        let out = PullOutput {
            source: Source::Meta,
            client: "c01".into(),
            week: "2026-W49".into(),
            rows: vec![],
            pages: 1,
            token_refreshed: false,
        };
        out.check(Source::Meta, "c01", &week).unwrap();
        assert!(out.check(Source::Linkedin, "c01", &week).unwrap_err().message().contains("pull-linkedin"));
        assert!(out.check(Source::Meta, "c02", &week).is_err());
        assert!(out.check(Source::Meta, "c01", &Week::parse("2026-W50").unwrap()).is_err());
    }
}
