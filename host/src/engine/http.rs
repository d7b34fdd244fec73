//! Outbound HTTP for steps: the allow-list, the client, and the JSON forms
//! in which requests and responses are journaled.
//!
//! Policy:
//! - Only hosts on the deployment's allow-list are reached; every redirect
//!   hop is checked against it too (at most [`MAX_REDIRECTS`] hops).
//! - Responses are read up to a size limit; a larger body is an error, not
//!   a truncated success.
//! - Credentials never reach the journal: `Authorization`-like headers are
//!   replaced by a redaction marker, and so is any secret value the step
//!   read, wherever it appears in the request.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::domain::REDACTED;

/// Redirect hops followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// Headers whose values are credentials.
const CREDENTIAL_HEADERS: [&str; 7] =
    ["authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token", "x-amz-security-token"];

/// Which hosts a deployment may reach. Patterns: `example.com` (that host,
/// any port), `example.com:8443` (that port only), `*.example.com` (any
/// subdomain), `*` (anything; for development only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowList(Vec<String>);

impl AllowList {
    pub fn new(patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(patterns.into_iter().map(|p| p.into().trim().to_ascii_lowercase()).collect())
    }

    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether `url` may be fetched.
    pub fn allows(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = url.port_or_known_default();
        self.0.iter().any(|pattern| {
            if pattern == "*" {
                return true;
            }
            let (pat_host, pat_port) = split_port(pattern);
            if pat_port.is_some() && pat_port != port {
                return false;
            }
            match pat_host.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len()
                        && host.ends_with(suffix)
                        && host[..host.len() - suffix.len()].ends_with('.')
                }
                None => host == pat_host.trim_start_matches('[').trim_end_matches(']'),
            }
        })
    }
}

fn split_port(pattern: &str) -> (&str, Option<u16>) {
    if let Some((h, p)) = pattern.rsplit_once(':')
        && !h.is_empty()
        && (!h.contains(':') || h.ends_with(']'))
        && let Ok(port) = p.parse()
    {
        return (h, Some(port));
    }
    (pattern, None)
}

/// Host-wide HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Time limit of a request that names none.
    pub default_timeout: Duration,
    /// Largest response body read, in bytes.
    pub max_response_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { default_timeout: Duration::from_secs(30), max_response_bytes: 16 << 20 }
    }
}

/// The client plus one deployment's allow-list.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    pub client: reqwest::Client,
    pub allow: AllowList,
    pub config: HttpConfig,
}

/// A request as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    #[serde(flatten)]
    pub body: Option<Body>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timeout_ms: Option<u32>,
}

/// A response as journaled, or why there was none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordedResponse {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        #[serde(flatten)]
        body: Option<Body>,
    },
    Error {
        error: ErrorKind,
        message: String,
    },
}

/// A body: text when it is UTF-8, base64 otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Body(String),
    BodyBase64(String),
}

impl Body {
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        if bytes.is_empty() {
            return None;
        }
        Some(match String::from_utf8(bytes) {
            Ok(text) => Self::Body(text),
            Err(e) => Self::BodyBase64(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
        })
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Body(text) => text.into_bytes(),
            Self::BodyBase64(b64) => base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default(),
        }
    }
}

/// Why a request got no response; mirrors the WIT `http-error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    Denied,
    InvalidRequest,
    Timeout,
    Connection,
    TooLarge,
}

/// A failed fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchError {
    pub kind: ErrorKind,
    pub message: String,
    /// For `TooLarge`: the limit.
    pub limit: u64,
}

impl FetchError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), limit: 0 }
    }
}

/// The journal form of a request: credential headers and the given secret
/// values replaced by the redaction marker.
pub fn redact_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            if CREDENTIAL_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                (k.clone(), REDACTED.to_owned())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// A response received: status, lower-case headers, whole body.
pub struct Fetched {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpPolicy {
    /// Sends a request, following allowed redirects.
    pub async fn fetch(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<Fetched, FetchError> {
        let mut method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| FetchError::new(ErrorKind::InvalidRequest, format!("`{method}` is not an HTTP method")))?;
        let mut url = url::Url::parse(url)
            .map_err(|e| FetchError::new(ErrorKind::InvalidRequest, format!("`{url}` is not an absolute URL: {e}")))?;
        let mut body = body;
        let timeout = timeout
            .unwrap_or(self.config.default_timeout)
            .min(self.config.default_timeout.max(Duration::from_secs(300)));
        let deadline = tokio::time::Instant::now() + timeout;
        for _hop in 0..=MAX_REDIRECTS {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(FetchError::new(
                    ErrorKind::InvalidRequest,
                    format!("`{url}`: only http and https URLs can be fetched"),
                ));
            }
            if !self.allow.allows(&url) {
                return Err(FetchError::new(
                    ErrorKind::Denied,
                    format!(
                        "{} is not on this deployment's allow-list ({}); allow it with --allow-host {}",
                        url.host_str().unwrap_or("(no host)"),
                        if self.allow.patterns().is_empty() {
                            "empty".to_owned()
                        } else {
                            self.allow.patterns().join(", ")
                        },
                        url.host_str().unwrap_or("HOST"),
                    ),
                ));
            }
            let mut req = self.client.request(method.clone(), url.clone());
            for (k, v) in headers {
                let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    FetchError::new(ErrorKind::InvalidRequest, format!("`{k}` is not a valid header name"))
                })?;
                let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                    FetchError::new(ErrorKind::InvalidRequest, format!("the value of header `{k}` is not valid"))
                })?;
                req = req.header(name, value);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let send = tokio::time::timeout(remaining, req.send());
            let response = match send.await {
                Err(_) => {
                    return Err(FetchError::new(
                        ErrorKind::Timeout,
                        format!("no response from {url} within {timeout:?}"),
                    ));
                }
                Ok(Err(e)) if e.is_timeout() => {
                    return Err(FetchError::new(
                        ErrorKind::Timeout,
                        format!("no response from {url} within {timeout:?}"),
                    ));
                }
                Ok(Err(e)) => return Err(FetchError::new(ErrorKind::Connection, connection_message(&url, &e))),
                Ok(Ok(r)) => r,
            };
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok())
            {
                url = url.join(location).map_err(|e| {
                    FetchError::new(
                        ErrorKind::InvalidRequest,
                        format!("redirect to an invalid location `{location}`: {e}"),
                    )
                })?;
                if status == reqwest::StatusCode::SEE_OTHER
                    || (matches!(status.as_u16(), 301 | 302) && method == reqwest::Method::POST)
                {
                    method = reqwest::Method::GET;
                    body = None;
                }
                continue;
            }
            return self.read(response, deadline, &url).await;
        }
        Err(FetchError::new(ErrorKind::InvalidRequest, format!("more than {MAX_REDIRECTS} redirects, last to {url}")))
    }

    async fn read(
        &self,
        mut response: reqwest::Response,
        deadline: tokio::time::Instant,
        url: &url::Url,
    ) -> Result<Fetched, FetchError> {
        let limit = self.config.max_response_bytes;
        let too_large = || FetchError {
            kind: ErrorKind::TooLarge,
            message: format!("the response from {url} is larger than the limit of {limit} bytes"),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(remaining, response.chunk()).await {
                Err(_) => {
                    return Err(FetchError::new(
                        ErrorKind::Timeout,
                        format!("the body from {url} did not arrive in time"),
                    ));
                }
                Ok(Err(e)) => return Err(FetchError::new(ErrorKind::Connection, connection_message(url, &e))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    if body.len() as u64 + chunk.len() as u64 > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
        Ok(Fetched { status, headers, body })
    }
}

fn connection_message(url: &url::Url, e: &reqwest::Error) -> String {
    let mut msg = format!("request to {url} failed");
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn allow_list_matches_hosts_ports_and_subdomains() {
        let allow = AllowList::new(["api.example.com", "127.0.0.1:8080", "*.cdn.net"]);
        assert!(allow.allows(&url("https://api.example.com/v1")));
        assert!(allow.allows(&url("https://API.example.com:444/v1")));
        assert!(!allow.allows(&url("https://example.com/")));
        assert!(!allow.allows(&url("https://evil-api.example.com/")));
        assert!(allow.allows(&url("http://127.0.0.1:8080/x")));
        assert!(!allow.allows(&url("http://127.0.0.1:8081/x")));
        assert!(allow.allows(&url("https://a.b.cdn.net/")));
        assert!(!allow.allows(&url("https://cdn.net/")));
        assert!(!allow.allows(&url("https://xcdn.net/")));
        assert!(!AllowList::default().allows(&url("https://api.example.com/")));
        assert!(AllowList::new(["*"]).allows(&url("http://anything:1/")));
    }

    #[test]
    fn credentials_are_redacted_and_bodies_round_trip() {
        let headers =
            vec![("Authorization".to_owned(), "Bearer x".to_owned()), ("accept".to_owned(), "a/b".to_owned())];
        let redacted = redact_headers(&headers);
        assert_eq!(redacted[0].1, REDACTED);
        assert_eq!(redacted[1].1, "a/b");
        assert_eq!(Body::from_bytes(b"hi".to_vec()), Some(Body::Body("hi".into())));
        let binary = vec![0xff, 0x00, 0x10];
        assert_eq!(Body::from_bytes(binary.clone()).unwrap().into_bytes(), binary);
        assert_eq!(Body::from_bytes(Vec::new()), None);
    }

    #[test]
    fn journal_forms_are_stable_json() {
        let r = RecordedResponse::Response { status: 200, headers: vec![], body: Some(Body::Body("{}".into())) };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"status":200,"headers":[],"body":"{}"}"#);
        let e = RecordedResponse::Error { error: ErrorKind::Denied, message: "no".into() };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"error":"denied","message":"no"}"#);
        assert_eq!(serde_json::from_str::<RecordedResponse>(&text).unwrap(), e);
    }
}
