//! Resource limits and retry policies.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one attempt of a step may use. Exceeding any limit fails that
/// attempt with a clear reason; the host carries on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel budget (about one unit per wasm instruction).
    pub fuel: u64,
    /// Linear-memory cap in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline of the attempt, host calls included.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Largest output (JSON text) an attempt may return, in bytes.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { fuel: 1_000_000_000, memory_bytes: 64 << 20, timeout: Duration::from_secs(30), output_bytes: 1 << 20 }
    }
}

/// When and how often a failed step is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    #[serde(with = "millis")]
    pub initial_delay: Duration,
    pub factor: f64,
    #[serde(with = "millis")]
    pub max_delay: Duration,
    /// Share of the delay randomised around it, 0.0 to 1.0.
    pub jitter: f64,
    pub retry_fuel_exhausted: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: 0.2,
            retry_fuel_exhausted: false,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next_attempt` (2 for the first retry),
    /// with `unit` a uniform draw from [0, 1) that places the jitter.
    pub fn delay_before(&self, next_attempt: u32, unit: f64) -> Duration {
        let exponent = next_attempt.saturating_sub(2).min(64) as i32;
        let base = self.initial_delay.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let base = base.min(self.max_delay.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scaled = base * (1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0));
        Duration::from_secs_f64(scaled.clamp(0.0, self.max_delay.as_secs_f64()))
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_factor_within_jitter_and_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            factor: 3.0,
            max_delay: Duration::from_secs(2),
            jitter: 0.0,
            retry_fuel_exhausted: false,
        };
        assert_eq!(p.delay_before(2, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay_before(3, 0.5), Duration::from_millis(300));
        assert_eq!(p.delay_before(4, 0.5), Duration::from_millis(900));
        assert_eq!(p.delay_before(5, 0.5), Duration::from_secs(2));
        let j = RetryPolicy { jitter: 0.5, ..p };
        assert_eq!(j.delay_before(3, 0.0), Duration::from_millis(150));
        assert_eq!(j.delay_before(3, 1.0), Duration::from_millis(450));
    }
}
