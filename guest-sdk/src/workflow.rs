//! Durable orchestration, for workflow components (see
//! [`macro@crate::workflow`]).
//!
//! Every call here takes the next sequence number of the run's journal. When
//! a run resumes, calls that already finished return their recorded result
//! without running again, so a workflow must make the same calls in the same
//! order every time it runs on the same history. Decide only on inputs,
//! results of these calls, and the journaled context functions
//! ([`crate::now`], [`crate::random_bytes`]…); never on `std::time` or WASI
//! randomness. The host stops a run that diverges as
//! `failed: nondeterministic`.
//!
//! Names (`name` arguments) identify a call within the run: keep them unique
//! per run (`pull-page-3`, not `pull`) and stable across versions of the
//! code.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::ferry::runtime::orchestration as wit;
use crate::bindings::ferry::runtime::types as wit_types;
use crate::{Error, Result};

/// When and how often a failed step is tried again, mirroring the WIT
/// `retry-policy`.
///
/// Attempt `n` waits `min(initial_delay * factor^(n-1), max_delay)`, plus or
/// minus a random share of up to `jitter` of that.
///
/// ```
/// use ferry_sdk::workflow::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::default()
///     .max_attempts(5)
///     .initial_delay(Duration::from_millis(500))
///     .max_delay(Duration::from_secs(30));
/// assert_eq!(policy.max_attempts, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included; 1 means no retry.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_delay: Duration,
    /// Growth of the delay from one retry to the next (2.0 doubles it).
    pub factor: f64,
    /// Upper bound of any one delay.
    pub max_delay: Duration,
    /// Share of the delay (0.0 to 1.0) randomised around it.
    pub jitter: f64,
    /// Whether running out of fuel counts as retryable.
    pub retry_fuel_exhausted: bool,
}

impl Default for RetryPolicy {
    /// The SDK's starting point: 3 attempts, 1 s initial delay doubling up
    /// to 60 s, jitter 0.1, fuel exhaustion not retried.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: 0.1,
            retry_fuel_exhausted: false,
        }
    }
}

impl RetryPolicy {
    /// A policy with a single attempt: no retry at all.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// Sets the number of attempts in all (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the delay before the second attempt.
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// Sets the growth factor of the delay.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets the upper bound of any one delay.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Sets the randomised share of each delay (clamped to 0.0..=1.0).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Sets whether running out of fuel is retried.
    pub fn retry_fuel_exhausted(mut self, retry: bool) -> Self {
        self.retry_fuel_exhausted = retry;
        self
    }

    fn to_wit(self) -> wit_types::RetryPolicy {
        wit_types::RetryPolicy {
            max_attempts: self.max_attempts,
            initial_delay_ms: millis(self.initial_delay),
            factor: self.factor,
            max_delay_ms: millis(self.max_delay),
            jitter: self.jitter,
            retry_fuel_exhausted: self.retry_fuel_exhausted,
        }
    }
}

/// Limits and retry behaviour of one step call, mirroring the WIT
/// `step-options`. Every field left `None` takes the deployment's value,
/// then the host's default.
///
/// ```
/// use ferry_sdk::workflow::{RetryPolicy, StepOptions};
/// use std::time::Duration;
///
/// let opts = StepOptions::new()
///     .retry(RetryPolicy::none())
///     .timeout(Duration::from_secs(10))
///     .fuel(50_000_000);
/// assert_eq!(opts.fuel, Some(50_000_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepOptions {
    /// Retry policy for this call.
    pub retry: Option<RetryPolicy>,
    /// Fuel budget of each attempt (wasm instructions, roughly).
    pub fuel: Option<u64>,
    /// Wall-clock limit of each attempt.
    pub timeout: Option<Duration>,
    /// Linear-memory cap of each attempt, in bytes.
    pub memory_bytes: Option<u64>,
}

impl StepOptions {
    /// Options that change nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Sets the fuel budget of each attempt.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }

    /// Sets the wall-clock limit of each attempt (millisecond precision).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the linear-memory cap of each attempt, in bytes.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }

    fn to_wit(self) -> wit_types::StepOptions {
        wit_types::StepOptions {
            retry: self.retry.map(RetryPolicy::to_wit),
            fuel: self.fuel,
            timeout_ms: self.timeout.map(millis),
            memory_bytes: self.memory_bytes,
        }
    }
}

/// One step call for [`call_steps`].
#[derive(Debug, Clone)]
pub struct StepCall {
    name: String,
    step: String,
    input: String,
    options: Option<StepOptions>,
}

impl StepCall {
    /// A call named `name` (unique in the run) of the step deployment `step`
    /// on `input`.
    ///
    /// # Errors
    ///
    /// A fatal [`Error`] when `input` does not serialize to JSON.
    pub fn new<I: Serialize + ?Sized>(name: &str, step: &str, input: &I) -> Result<Self> {
        Ok(Self { name: name.into(), step: step.into(), input: to_json(name, input)?, options: None })
    }

    /// Sets this call's limits and retry policy.
    pub fn options(mut self, options: StepOptions) -> Self {
        self.options = Some(options);
        self
    }

    fn to_wit(&self) -> wit::StepCall {
        wit::StepCall {
            name: self.name.clone(),
            step: self.step.clone(),
            input: self.input.clone(),
            options: self.options.map(StepOptions::to_wit),
        }
    }
}

/// Runs step `step` on `input` to completion (retrying under its policy) and
/// returns its output.
///
/// # Errors
///
/// The step's final error, with the kind it reported; a fatal error when the
/// input does not serialize or the output does not deserialize into `O`.
pub fn call_step<I, O>(name: &str, step: &str, input: &I) -> Result<O>
where
    I: Serialize + ?Sized,
    O: DeserializeOwned,
{
    let call = StepCall::new(name, step, input)?;
    finish(name, wit::call_step(&call.to_wit()))
}

/// [`call_step`] with limits and a retry policy for this call.
///
/// # Errors
///
/// As [`call_step`].
pub fn call_step_with<I, O>(name: &str, step: &str, input: &I, options: StepOptions) -> Result<O>
where
    I: Serialize + ?Sized,
    O: DeserializeOwned,
{
    let call = StepCall::new(name, step, input)?.options(options);
    finish(name, wit::call_step(&call.to_wit()))
}

/// Runs several steps concurrently; returns their outputs (as JSON values) in
/// the order of `calls`.
pub fn call_steps(calls: Vec<StepCall>) -> Vec<Result<serde_json::Value>> {
    call_steps_as(calls)
}

/// [`call_steps`] with every output deserialized into `O`.
pub fn call_steps_as<O: DeserializeOwned>(calls: Vec<StepCall>) -> Vec<Result<O>> {
    let wit_calls: Vec<wit::StepCall> = calls.iter().map(StepCall::to_wit).collect();
    wit::call_steps(&wit_calls).into_iter().zip(&calls).map(|(result, call)| finish(&call.name, result)).collect()
}

/// Sleeps durably: the run is parked and resumes once `duration` has passed,
/// even across a restart of the host.
pub fn sleep(name: &str, duration: Duration) {
    wit::sleep(name, millis(duration));
}

/// Waits durably for an event named `event` whose data contains `match_json`
/// (an object whose fields must all be equal), for at most `timeout` (or
/// forever). Returns the event's data, or `None` on timeout. An event sent
/// before the wait began is delivered too.
///
/// Event data that is not JSON comes back as a JSON string.
pub fn wait_for_event(
    name: &str,
    event: &str,
    match_json: Option<&serde_json::Value>,
    timeout: Option<Duration>,
) -> Option<serde_json::Value> {
    let matcher = match_json.map(serde_json::Value::to_string);
    let data = wit::wait_for_event(name, event, matcher.as_deref(), timeout.map(millis))?;
    Some(serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)))
}

/// Starts a child run of the workflow deployment `workflow` on `input` and
/// waits for its output.
///
/// # Errors
///
/// As [`call_step`].
pub fn call_workflow<I, O>(name: &str, workflow: &str, input: &I) -> Result<O>
where
    I: Serialize + ?Sized,
    O: DeserializeOwned,
{
    let input = to_json(name, input)?;
    finish(name, wit::call_workflow(name, workflow, &input))
}

/// Starts a run of the workflow deployment `workflow` on `input` without
/// waiting for it and returns the new run's id (`run_…`). Journaled like a
/// step call: a workflow resumed after a crash gets back the run it already
/// started instead of starting another. The run is queued under its
/// deployment's flow control, so this is how one scheduled workflow fans out
/// into many runs (one per customer, say) that each keep their own limits.
///
/// ```no_run
/// # fn f() -> ferry_sdk::Result<()> {
/// for client in ["c01", "c02"] {
///     let run = ferry_sdk::workflow::start_workflow(
///         &format!("report-{client}"),
///         "weekly-report",
///         &serde_json::json!({ "client": client }),
///     )?;
///     ferry_sdk::info!("started {run}");
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// Fatal when `workflow` is not a deployed workflow or the input does not
/// serialize.
pub fn start_workflow<I>(name: &str, workflow: &str, input: &I) -> Result<String>
where
    I: Serialize + ?Sized,
{
    let input = to_json(name, input)?;
    wit::start_workflow(name, workflow, &input, None).map_err(Error::from)
}

/// [`start_workflow`] under an idempotency key: when `workflow` already has
/// a run with `key` (started by any run, or through the API), that run's id
/// comes back and nothing new starts. Key the run by what makes it unique
/// (`weekly-report:c07:2026-W49`) and two batches for the same week start
/// each report once.
///
/// # Errors
///
/// As [`start_workflow`].
pub fn start_workflow_keyed<I>(name: &str, workflow: &str, input: &I, key: &str) -> Result<String>
where
    I: Serialize + ?Sized,
{
    let input = to_json(name, input)?;
    wit::start_workflow(name, workflow, &input, Some(key)).map_err(Error::from)
}

fn to_json<I: Serialize + ?Sized>(name: &str, input: &I) -> Result<String> {
    serde_json::to_string(input).map_err(|e| Error::fatal(format!("input of call `{name}` is not serializable: {e}")))
}

fn finish<O: DeserializeOwned>(name: &str, result: std::result::Result<String, wit_types::StepError>) -> Result<O> {
    let output = result.map_err(Error::from)?;
    serde_json::from_str(&output).map_err(|e| {
        Error::fatal(format!("output of call `{name}` is not valid for {}: {e}", std::any::type_name::<O>()))
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_map_to_wit() {
        let o = StepOptions::new()
            .retry(RetryPolicy::default().max_attempts(0).initial_delay(Duration::from_millis(250)).jitter(3.0))
            .timeout(Duration::from_secs(5))
            .memory_bytes(1 << 20)
            .to_wit();
        let r = o.retry.unwrap();
        assert_eq!(r.max_attempts, 1);
        assert_eq!(r.initial_delay_ms, 250);
        assert_eq!(r.max_delay_ms, 60_000);
        assert_eq!(r.jitter, 1.0);
        assert_eq!(o.timeout_ms, Some(5000));
        assert_eq!(o.memory_bytes, Some(1 << 20));
        assert_eq!(o.fuel, None);
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }

    #[test]
    fn step_call_serializes_input() {
        let c = StepCall::new("a", "hello", &serde_json::json!({"name": "Ada"})).unwrap();
        let w = c.to_wit();
        assert_eq!(w.input, r#"{"name":"Ada"}"#);
        assert!(w.options.is_none());
    }

    #[test]
    fn finish_maps_errors_and_output() {
        let v: u32 = finish("a", Ok("7".into())).unwrap();
        assert_eq!(v, 7);
        let e = finish::<u32>("a", Err(wit_types::StepError::Retryable("x".into()))).unwrap_err();
        assert!(e.is_retryable());
        let e = finish::<u32>("pull", Ok("\"x\"".into())).unwrap_err();
        assert!(e.is_fatal());
        assert!(e.message().starts_with("output of call `pull` is not valid for u32: "));
    }
}
