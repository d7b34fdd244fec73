//! [`Error`], the failure of a step or workflow, and the conversions that let
//! `?` produce it.
//!
//! The one decision an error carries is whether another attempt can help:
//! the host retries a [`ErrorKind::Retryable`] failure under the step's retry
//! policy and stops at once on a [`ErrorKind::Fatal`] one.

use std::fmt;

use crate::bindings::ferry::runtime::types::StepError;

/// `Result` with [`Error`] as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether another attempt of a failed step can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A passing failure (a 504, a rate limit, a dropped connection): the host
    /// tries the step again under its retry policy.
    Retryable,
    /// A failure another attempt cannot fix (bad input, a rejected request):
    /// the host stops the run and records the error.
    Fatal,
}

/// Why a step or workflow failed: a [`kind`](Error::kind) and a message for
/// people.
///
/// `?` converts into it from [`crate::http::HttpError`] (timeout and
/// connection failures are retryable, the rest fatal) and from
/// `serde_json::Error` (fatal). For any other error, pick the kind with
/// [`ResultExt`] or [`Error::retryable`] / [`Error::fatal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry_after: Option<std::time::Duration>,
}

impl Error {
    /// An error the host retries under the step's retry policy.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Retryable, message: message.into(), retry_after: None }
    }

    /// A retryable error that also says when another attempt can succeed
    /// (a server's `Retry-After`): the host waits at least `after`, or
    /// longer when the retry policy's backoff is longer.
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = ferry_sdk::Error::retry_after("rate limited", Duration::from_secs(2));
    /// assert!(e.is_retryable());
    /// assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(2)));
    /// ```
    pub fn retry_after(message: impl Into<String>, after: std::time::Duration) -> Self {
        Self { kind: ErrorKind::Retryable, message: message.into(), retry_after: Some(after) }
    }

    /// An error that fails the run at once, without retry.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Fatal, message: message.into(), retry_after: None }
    }

    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None }
    }

    /// Whether the host may retry.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True for [`ErrorKind::Retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// True for [`ErrorKind::Fatal`].
    pub fn is_fatal(&self) -> bool {
        self.kind == ErrorKind::Fatal
    }

    /// For a retryable error, the least time to wait before the next
    /// attempt, when the error knows it (see [`Error::retry_after`]).
    pub fn retry_after_hint(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with `context: `, keeping the kind.
    ///
    /// ```
    /// let e = ferry_sdk::Error::fatal("bad id").context("loading customer 7");
    /// assert_eq!(e.message(), "loading customer 7: bad id");
    /// ```
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    /// Writes the message; with `{:#}`, prefixed by `retryable: ` or
    /// `fatal: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            let kind = match self.kind {
                ErrorKind::Retryable => "retryable",
                ErrorKind::Fatal => "fatal",
            };
            write!(f, "{kind}: {}", self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    /// JSON that does not match the expected shape will not match on the next
    /// attempt either: fatal.
    fn from(e: serde_json::Error) -> Self {
        Error::fatal(format!("JSON error: {e}"))
    }
}

impl From<StepError> for Error {
    /// Keeps the kind the host (or another step) reported.
    fn from(e: StepError) -> Self {
        match e {
            StepError::Retryable(m) => Error::retryable(m),
            StepError::Fatal(m) => Error::fatal(m),
            StepError::RetryLater(d) => Error::retry_after(d.message, std::time::Duration::from_millis(d.after_ms)),
        }
    }
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        match (e.kind, e.retry_after) {
            (ErrorKind::Retryable, None) => StepError::Retryable(e.message),
            (ErrorKind::Retryable, Some(after)) => {
                StepError::RetryLater(crate::bindings::ferry::runtime::types::DelayedRetry {
                    message: e.message,
                    after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                })
            }
            (ErrorKind::Fatal, _) => StepError::Fatal(e.message),
        }
    }
}

/// Turns any `Result` whose error is displayable into a `Result<T, Error>` of
/// the chosen kind, so that `?` works on errors the SDK cannot classify.
///
/// ```
/// use ferry_sdk::ResultExt;
///
/// fn parse(s: &str) -> ferry_sdk::Result<u32> {
///     s.parse::<u32>().fatal()
/// }
/// assert!(parse("x").unwrap_err().is_fatal());
/// ```
pub trait ResultExt<T> {
    /// On error, a retryable [`Error`] carrying the error's message.
    fn retryable(self) -> Result<T>;
    /// On error, a fatal [`Error`] carrying the error's message.
    fn fatal(self) -> Result<T>;
}

impl<T, E: fmt::Display> ResultExt<T> for std::result::Result<T, E> {
    fn retryable(self) -> Result<T> {
        self.map_err(|e| Error::retryable(e.to_string()))
    }

    fn fatal(self) -> Result<T> {
        self.map_err(|e| Error::fatal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_kind_and_message() {
        let e = Error::retryable("later");
        assert!(e.is_retryable());
        assert!(!e.is_fatal());
        assert_eq!(e.message(), "later");
        assert_eq!(e.to_string(), "later");
        assert_eq!(format!("{e:#}"), "retryable: later");
        assert_eq!(format!("{:#}", Error::fatal("no")), "fatal: no");
    }

    #[test]
    fn serde_json_errors_are_fatal() {
        let err: Error = serde_json::from_str::<u32>("\"x\"").unwrap_err().into();
        assert!(err.is_fatal());
        assert!(err.message().starts_with("JSON error: invalid type"), "{err}");
    }

    #[test]
    fn step_error_round_trip() {
        for e in [Error::retryable("a"), Error::fatal("b")] {
            let wit: StepError = e.clone().into();
            assert_eq!(Error::from(wit), e);
        }
        assert!(matches!(
            StepError::from(Error::fatal("b")),
            StepError::Fatal(m) if m == "b"
        ));
    }

    #[test]
    fn result_ext_picks_the_kind() {
        let r: std::result::Result<(), std::io::Error> = Err(std::io::Error::other("reset"));
        let e = r.retryable().unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.message(), "reset");
        let e = "x".parse::<u8>().fatal().unwrap_err();
        assert!(e.is_fatal());
    }

    #[test]
    fn context_keeps_kind() {
        let e = Error::retryable("timeout").context("fetching page 2");
        assert!(e.is_retryable());
        assert_eq!(e.message(), "fetching page 2: timeout");
    }
}
