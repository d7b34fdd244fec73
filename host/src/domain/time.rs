//! Timestamps as microseconds since the Unix epoch.
//!
//! One integer type for every stored instant keeps the SQLite and Postgres
//! schemas identical and makes sub-millisecond step timings visible.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An instant, in microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a `SystemTime`; instants before 1970 clamp to zero.
    pub fn from_system_time(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the epoch, as guests see time.
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0 / 1000).unwrap_or(0)
    }

    /// This instant plus a duration (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Micros) -> Duration {
        Duration::from_micros(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl fmt::Display for Micros {
    /// RFC 3339 in UTC with millisecond precision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_microsecond(self.0) {
            Ok(ts) => write!(f, "{}", ts.round(jiff::Unit::Millisecond).unwrap_or(ts)),
            Err(_) => write!(f, "@{}µs", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_round_trips() {
        let t = Micros(1_000_000);
        assert_eq!(t.plus(Duration::from_millis(5)), Micros(1_005_000));
        assert_eq!(Micros(1_005_000).since(t), Duration::from_millis(5));
        assert_eq!(t.since(Micros(2_000_000)), Duration::ZERO);
        assert_eq!(Micros(1_700_000_000_123_456).as_millis(), 1_700_000_000_123);
        assert_eq!(Micros(0).to_string(), "1970-01-01T00:00:00Z");
    }
}
