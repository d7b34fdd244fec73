//! Outbound HTTP for steps, through the host.
//!
//! Requests go only to hosts on the deployment's allow-list. The host
//! journals request and response (redacting `Authorization`-like headers),
//! so a replayed attempt gets the recorded response without a network.
//!
//! ```no_run
//! use ferry_sdk::http;
//!
//! # fn f() -> ferry_sdk::Result<()> {
//! let created: serde_json::Value = http::post("https://api.example.com/orders")
//!     .json(&serde_json::json!({ "sku": "A-1", "qty": 2 }))
//!     .idempotency_key()
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```
//!
//! A response with any status is a [`Response`]; only a missing response
//! (denied, timeout, connection failure…) is an [`HttpError`]. Call
//! [`Response::error_for_status`] to turn 4xx and 5xx into an [`Error`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::ferry::runtime::http as wit;

/// Why no response came back: the variant of the WIT `http-error`.
pub use crate::bindings::ferry::runtime::http::HttpError as HttpErrorKind;

/// Starts a `GET` request.
pub fn get(url: impl Into<String>) -> RequestBuilder {
    request("GET", url)
}

/// Starts a `POST` request.
pub fn post(url: impl Into<String>) -> RequestBuilder {
    request("POST", url)
}

/// Starts a `PUT` request.
pub fn put(url: impl Into<String>) -> RequestBuilder {
    request("PUT", url)
}

/// Starts a `PATCH` request.
pub fn patch(url: impl Into<String>) -> RequestBuilder {
    request("PATCH", url)
}

/// Starts a `DELETE` request.
pub fn delete(url: impl Into<String>) -> RequestBuilder {
    request("DELETE", url)
}

/// Starts a request with any method (`GET`, `POST`, `PUT`, `PATCH`, `DELETE`
/// or `HEAD`; the host rejects others as `invalid-request`).
pub fn request(method: impl Into<String>, url: impl Into<String>) -> RequestBuilder {
    RequestBuilder {
        method: method.into().to_ascii_uppercase(),
        url: url.into(),
        headers: Vec::new(),
        body: None,
        timeout: None,
        idempotency_key: false,
        deferred: None,
    }
}

/// A request being built; [`send`](RequestBuilder::send) performs it.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until `.send()` is called"]
pub struct RequestBuilder {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    idempotency_key: bool,
    /// A problem found while building (a body that does not serialize),
    /// reported by `send` as `invalid-request`.
    deferred: Option<String>,
}

impl RequestBuilder {
    /// Adds a header. Names are case-insensitive; adding a name twice sends
    /// it twice.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets `Authorization: Bearer <token>`, replacing any `Authorization`
    /// header. An empty token sets nothing, so
    /// `.bearer(&secret("token").unwrap_or_default())` sends no credentials
    /// when the secret is missing.
    pub fn bearer(mut self, token: &str) -> Self {
        if token.is_empty() {
            return self;
        }
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        self.headers.push(("authorization".into(), format!("Bearer {token}")));
        self
    }

    /// Appends `name=value` to the URL's query string, percent-encoding both
    /// (RFC 3986: everything but `A-Z a-z 0-9 - . _ ~` is encoded, a space as
    /// `%20`). A `#fragment` stays at the end.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.url = append_query(&self.url, name, value);
        self
    }

    /// Sets the body to `value` as JSON and `content-type: application/json`.
    /// A value that does not serialize makes [`send`](Self::send) fail with
    /// `invalid-request`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => self.body = Some(body),
            Err(e) => self.deferred = Some(format!("request body is not valid JSON: {e}")),
        }
        self.set_header("content-type", "application/json")
    }

    /// Sets the raw body. Add a `content-type` header yourself.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Time limit for this request (rounded down to milliseconds; at most
    /// about 49 days). The host's default and the step's own deadline apply
    /// too.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Asks the host to add an `Idempotency-Key` header carrying this step
    /// call's stable key (the same for every attempt, see
    /// [`crate::RunInfo::idempotency_key`]), unless the request already has
    /// one. The receiving API can then apply a retried request only once.
    pub fn idempotency_key(mut self) -> Self {
        self.idempotency_key = true;
        self
    }

    /// Performs the request and waits for the whole response.
    ///
    /// # Errors
    ///
    /// An [`HttpError`] when no response came back. Any status, 4xx and 5xx
    /// included, is a successful [`Response`].
    pub fn send(self) -> Result<Response, HttpError> {
        if let Some(message) = self.deferred {
            return Err(HttpError::new(self.method, self.url, HttpErrorKind::InvalidRequest(message)));
        }
        let req = self.to_wit();
        match wit::fetch(&req) {
            Ok(resp) => Ok(Response { url: req.url, status: resp.status, headers: resp.headers, body: resp.body }),
            Err(kind) => Err(HttpError::new(req.method, req.url, kind)),
        }
    }

    fn set_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    fn to_wit(&self) -> wit::Request {
        wit::Request {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            timeout_ms: self.timeout.map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
            idempotency_key: self.idempotency_key,
        }
    }
}

/// Percent-encodes `s` for a URL query component (RFC 3986 unreserved
/// characters pass through).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn append_query(url: &str, name: &str, value: &str) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{}={}{fragment}", percent_encode(name), percent_encode(value))
}

/// A whole HTTP response, of any status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// Builds a response by hand, for tests of code that takes a
    /// [`Response`].
    pub fn new(url: impl Into<String>, status: u16, headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> Self {
        Self { url: url.into(), status, headers, body: body.into() }
    }

    /// The URL that was requested.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// All headers in order, names as the host gave them (lower-case).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body, taking ownership.
    pub fn into_bytes(self) -> Vec<u8> {
        self.body
    }

    /// The body as text; invalid UTF-8 becomes `U+FFFD`.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON into `T`.
    ///
    /// # Errors
    ///
    /// A fatal [`Error`] naming the URL, the target type and serde's message
    /// when the body is not valid JSON for `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::fatal(format!(
                "response from {} is not valid JSON for {}: {e}",
                self.url,
                std::any::type_name::<T>()
            ))
        })
    }

    /// Keeps a 1xx, 2xx or 3xx response; turns the rest into an [`Error`].
    ///
    /// # Errors
    ///
    /// - 429 and 5xx: retryable (the server may recover). The message has
    ///   the status, the URL, the `retry-after` header when present and the
    ///   start of the body. With a `retry-after` header, the host waits at
    ///   least that long before the next attempt ([`Error::retry_after`]).
    /// - Other 4xx: fatal (the request itself is wrong).
    pub fn error_for_status(self) -> Result<Response, Error> {
        let status = self.status;
        if status < 400 {
            return Ok(self);
        }
        let mut message = format!("HTTP {status} from {}", self.url);
        if let Some(retry_after) = self.header("retry-after") {
            message.push_str(&format!(" (retry-after: {retry_after})"));
        }
        let snippet = body_snippet(&self.body);
        if !snippet.is_empty() {
            message.push_str(": ");
            message.push_str(&snippet);
        }
        match (status == 429 || status >= 500, self.retry_after()) {
            (true, Some(after)) => Err(Error::retry_after(message, after)),
            (true, None) => Err(Error::retryable(message)),
            (false, _) => Err(Error::fatal(message)),
        }
    }

    /// The server's `retry-after` header as a delay: either seconds, or an
    /// HTTP date compared with [`crate::now`] (a date in the past gives
    /// zero). `None` when absent or unparsable.
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.header("retry-after")?.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = parse_http_date(value)?;
        let now = crate::now_millis() / 1000;
        Some(Duration::from_secs(at.saturating_sub(now)))
    }
}

/// The first 200 characters of a body, on one line, for error messages.
fn body_snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(MAX).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds
/// since the Unix epoch.
fn parse_http_date(s: &str) -> Option<u64> {
    let mut parts = s.split_whitespace();
    let _weekday = parts.next()?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let days = u64::try_from(days).ok()?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// No response came back: the request was denied, malformed, timed out, or
/// the connection failed.
///
/// `?` turns it into an [`Error`]: `timeout` and `connection` are retryable,
/// `denied`, `invalid-request` and `too-large` fatal. Its `Display` starts
/// with the variant name, e.g. `denied: host example.com is not allowed
/// (GET https://example.com/)`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    method: String,
    url: String,
    kind: HttpErrorKind,
}

impl HttpError {
    /// An error for the request `method url`.
    pub fn new(method: impl Into<String>, url: impl Into<String>, kind: HttpErrorKind) -> Self {
        Self { method: method.into(), url: url.into(), kind }
    }

    /// The WIT variant: why no response came back.
    pub fn kind(&self) -> &HttpErrorKind {
        &self.kind
    }

    /// The request's method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// True for `timeout` and `connection`, which another attempt may not
    /// meet again.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, HttpErrorKind::Timeout | HttpErrorKind::Connection(_))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            HttpErrorKind::Denied(m) => write!(f, "denied: {m}")?,
            HttpErrorKind::InvalidRequest(m) => write!(f, "invalid-request: {m}")?,
            HttpErrorKind::Timeout => write!(f, "timeout: no response in time")?,
            HttpErrorKind::Connection(m) => write!(f, "connection: {m}")?,
            HttpErrorKind::TooLarge(limit) => {
                write!(f, "too-large: response body over the host's limit of {limit} bytes")?
            }
        }
        write!(f, " ({} {})", self.method, self.url)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        if e.is_retryable() { Error::retryable(e.to_string()) } else { Error::fatal(e.to_string()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_percent_encoded() {
        let r =
            get("https://a.example/search").query("q", "rust & wasm").query("page", "2").query("ü/=?", "a+b~c_d.e-f");
        assert_eq!(r.url, "https://a.example/search?q=rust%20%26%20wasm&page=2&%C3%BC%2F%3D%3F=a%2Bb~c_d.e-f");
    }

    #[test]
    fn query_respects_existing_query_and_fragment() {
        assert_eq!(append_query("https://a.example/x?a=1#top", "b", "2"), "https://a.example/x?a=1&b=2#top");
        assert_eq!(append_query("https://a.example/x?", "b", "2"), "https://a.example/x?b=2");
        assert_eq!(append_query("https://a.example/x#f", "b", ""), "https://a.example/x?b=#f");
    }

    #[test]
    fn builder_fills_the_wit_request() {
        let r = request("post", "https://a.example/")
            .header("X-A", "1")
            .bearer("t0k")
            .bearer("tok")
            .bearer("")
            .json(&serde_json::json!({"a": 1}))
            .header("content-type", "text/plain")
            .json(&[1, 2])
            .timeout(Duration::from_secs(2))
            .idempotency_key()
            .to_wit();
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.headers,
            vec![
                ("X-A".to_string(), "1".to_string()),
                ("authorization".to_string(), "Bearer tok".to_string()),
                ("content-type".to_string(), "application/json".to_string()),
            ]
        );
        assert_eq!(r.body.as_deref(), Some(&b"[1,2]"[..]));
        assert_eq!(r.timeout_ms, Some(2000));
        assert!(r.idempotency_key);
        let r = get("https://a.example/").timeout(Duration::from_secs(u64::MAX)).to_wit();
        assert_eq!(r.timeout_ms, Some(u32::MAX));
        assert_eq!(r.body, None);
        assert!(!r.idempotency_key);
    }

    #[test]
    fn unserializable_json_body_is_an_invalid_request() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        let err = post("https://a.example/").json(&map).send().unwrap_err();
        assert!(matches!(err.kind(), HttpErrorKind::InvalidRequest(_)));
        assert!(err.to_string().starts_with("invalid-request: "), "{err}");
        assert!(!Error::from(err).is_retryable());
    }

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response::new(
            "https://a.example/p",
            status,
            headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body,
        )
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let r = resp(200, &[("content-type", "a/b"), ("x-n", "1"), ("x-n", "2")], "");
        assert_eq!(r.header("Content-Type"), Some("a/b"));
        assert_eq!(r.header("X-N"), Some("1"));
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.headers().len(), 3);
    }

    #[test]
    fn error_for_status_maps_statuses() {
        for s in [200, 204, 301, 399] {
            assert!(resp(s, &[], "").error_for_status().is_ok(), "{s}");
        }
        for s in [429, 500, 502, 503, 504, 599] {
            let e = resp(s, &[], "").error_for_status().unwrap_err();
            assert!(e.is_retryable(), "{s}");
            assert!(e.message().contains(&s.to_string()));
        }
        for s in [400, 401, 403, 404, 409, 422, 499] {
            let e = resp(s, &[], "").error_for_status().unwrap_err();
            assert!(e.is_fatal(), "{s}");
        }
        let e = resp(503, &[("retry-after", "30")], " busy\n ").error_for_status().unwrap_err();
        assert_eq!(e.message(), "HTTP 503 from https://a.example/p (retry-after: 30): busy");
        let e = resp(404, &[], "").error_for_status().unwrap_err();
        assert_eq!(e.message(), "HTTP 404 from https://a.example/p");
    }

    #[test]
    fn long_bodies_are_cut_in_messages() {
        let body = "x".repeat(500);
        let e = resp(500, &[], &body).error_for_status().unwrap_err();
        assert!(e.message().ends_with(&format!("{}…", "x".repeat(200))));
    }

    #[test]
    fn retry_after_in_seconds() {
        let r = resp(429, &[("Retry-After", " 120 ")], "");
        assert_eq!(r.retry_after(), Some(Duration::from_secs(120)));
        assert_eq!(resp(429, &[], "").retry_after(), None);
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"), Some(1_835_481_599));
        assert_eq!(parse_http_date("soon"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
    }

    #[test]
    fn json_errors_name_url_and_type() {
        let e = resp(200, &[], "{\"a\":").json::<Vec<u8>>().unwrap_err();
        assert!(e.is_fatal());
        assert!(
            e.message().starts_with("response from https://a.example/p is not valid JSON for alloc::vec::Vec<u8>: "),
            "{e}"
        );
        let v: serde_json::Value = resp(200, &[], "{\"a\":1}").json().unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn http_errors_convert_by_kind() {
        let cases = [
            (HttpErrorKind::Denied("no".into()), false, "denied: no"),
            (HttpErrorKind::InvalidRequest("bad".into()), false, "invalid-request: bad"),
            (HttpErrorKind::Timeout, true, "timeout: "),
            (HttpErrorKind::Connection("reset".into()), true, "connection: reset"),
            (HttpErrorKind::TooLarge(10), false, "too-large: "),
        ];
        for (kind, retryable, prefix) in cases {
            let e = HttpError::new("GET", "https://a.example/", kind);
            assert!(e.to_string().starts_with(prefix), "{e}");
            assert!(e.to_string().ends_with("(GET https://a.example/)"), "{e}");
            let err: Error = e.into();
            assert_eq!(err.is_retryable(), retryable, "{err}");
            assert!(err.message().starts_with(prefix));
        }
    }
}
