//! The Ferry guest SDK: write durable-execution steps and workflows as plain
//! Rust functions that take and return serde types.
//!
//! A step is one unit of work. It runs in a fresh WebAssembly sandbox for
//! every attempt, under a fuel budget, a memory cap and a deadline, and it
//! reaches the outside world only through the host: HTTP ([`http`]), time,
//! randomness, secrets and logging (the functions at the crate root). Every
//! host call is journaled, so a replayed attempt sees exactly what the live
//! one saw.
//!
//! # A step
//!
//! ```no_run
//! use ferry_sdk::{http, step, Error};
//!
//! #[derive(serde::Deserialize)]
//! struct In {
//!     url: String,
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Page {
//!     rows: Vec<serde_json::Value>,
//!     next: Option<String>,
//! }
//!
//! #[derive(serde::Serialize)]
//! struct Out {
//!     rows: Vec<serde_json::Value>,
//! }
//!
//! /// Pulls every page of a paginated API.
//! #[step]
//! fn pull(input: In) -> Result<Out, Error> {
//!     let token = ferry_sdk::secret("token").unwrap_or_default();
//!     let mut rows = vec![];
//!     let mut next = Some(input.url);
//!     while let Some(url) = next {
//!         // A 429 or 5xx becomes a retryable error, any other 4xx a fatal
//!         // one; a body that is not a `Page` is fatal too.
//!         let page: Page = http::get(&url)
//!             .bearer(&token)
//!             .send()?
//!             .error_for_status()?
//!             .json()?;
//!         ferry_sdk::info!("page with {} rows", page.rows.len());
//!         rows.extend(page.rows);
//!         next = page.next;
//!     }
//!     Ok(Out { rows })
//! }
//! # fn main() {}
//! ```
//!
//! Build it as a component with a `cdylib` crate and
//! `cargo build --release --target wasm32-wasip2`; no other tool is needed.
//!
//! The function must take exactly one argument (anything
//! [`serde::de::DeserializeOwned`]) and return either `Result<T, E>` (where
//! `T: Serialize` and `E: Into<Error>`) or a plain `T: Serialize`. Input that
//! does not deserialize into the argument type fails the step with a fatal
//! error before the function runs.
//!
//! # Errors and retries
//!
//! A step fails with an [`Error`], which is either *retryable* (the host tries
//! again under the step's retry policy) or *fatal* (the run stops at once).
//! `?` converts the usual errors: [`http::HttpError`] (timeouts and connection
//! failures are retryable, the rest fatal), `serde_json::Error` (fatal), and
//! anything else through [`ResultExt::retryable`] or [`ResultExt::fatal`].
//! A panic aborts the attempt; the host records it as a crash.
//!
//! # A workflow
//!
//! [`macro@workflow`] marks the entry point of a workflow component, which
//! orchestrates steps durably through the [`workflow`](mod@workflow) module
//! and cannot use [`http`].
//!
//! # Determinism
//!
//! Use [`now`], [`random_bytes`] and friends rather than `std::time` and
//! WASI randomness: the host journals these calls, so retries and replays
//! see the same values.

mod context;
mod error;
pub mod http;
pub mod workflow;

#[doc(hidden)]
pub mod __private;

pub use context::{
    Level, RunInfo, get_blob, log, now, now_millis, put_blob, random_bytes, random_u64, run_info, secret,
};
pub use error::{Error, ErrorKind, Result, ResultExt};

/// Marks a function as the entry point of a step component.
///
/// The function takes one argument that implements
/// [`serde::de::DeserializeOwned`] and returns `Result<T, E>` (with
/// `T: Serialize` and `E: Into<`[`Error`]`>`) or a plain `T: Serialize`. The
/// attribute keeps the function as written and generates, in a private
/// module of the calling crate, the component export `run` of the WIT world
/// `ferry:runtime/step@0.1.0`: it parses the input JSON, calls the function
/// and serializes its output.
///
/// A crate holds at most one `#[step]` or `#[workflow]`.
///
/// ```no_run
/// #[ferry_sdk::step]
/// fn echo(input: serde_json::Value) -> serde_json::Value {
///     input
/// }
/// # fn main() {}
/// ```
///
/// # Compile errors
///
/// The input is the one argument; there is no other shape:
///
/// ```compile_fail
/// #[ferry_sdk::step]
/// fn no_input() -> u32 { 1 }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[ferry_sdk::step]
/// fn two(a: u32, b: u32) -> u32 { a + b }
/// # fn main() {}
/// ```
///
/// Steps are synchronous: the host runs each attempt to completion.
///
/// ```compile_fail
/// #[ferry_sdk::step]
/// async fn later(a: u32) -> u32 { a }
/// # fn main() {}
/// ```
pub use ferry_sdk_macros::step;

/// Marks a function as the entry point of a workflow component.
///
/// Same contract as [`macro@step`], for the WIT world
/// `ferry:runtime/workflow@0.1.0`: the function may call
/// [`workflow`](mod@workflow) functions but not [`http`].
///
/// ```no_run
/// use ferry_sdk::{workflow, Result};
///
/// #[ferry_sdk::workflow]
/// fn greet_twice(input: serde_json::Value) -> Result<Vec<serde_json::Value>> {
///     let first: serde_json::Value = workflow::call_step("first", "hello", &input)?;
///     workflow::sleep("pause", std::time::Duration::from_secs(60));
///     let second: serde_json::Value = workflow::call_step("second", "hello", &input)?;
///     Ok(vec![first, second])
/// }
/// # fn main() {}
/// ```
pub use ferry_sdk_macros::workflow;

/// Raw bindings of the Ferry WIT (`ferry:runtime@0.1.0`, world `imports`:
/// interfaces `types`, `context`, `http` and `orchestration`), generated by
/// `wit-bindgen`.
///
/// The ergonomic API of this crate wraps these; they are public so that the
/// code generated by [`macro@step`] and [`macro@workflow`] can share their
/// types, and as an escape hatch.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/runtime@0.1.0",
        world: "ferry:runtime/imports@0.1.0",
        additional_derives: [PartialEq],
    });
}
