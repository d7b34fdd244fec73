//! The README tutorial's step: greets someone by name.
//!
//! Input `{"name": "Ada"}`, output `{"greeting": "Hello, Ada!", "at_ms": …}`.

use ferry_sdk::{Error, step};
use serde::{Deserialize, Serialize};

/// The step's input.
#[derive(Deserialize)]
struct Input {
    /// Who to greet.
    name: Option<String>,
}

/// The step's output.
#[derive(Serialize)]
struct Output {
    greeting: String,
    /// When the greeting was made (host time, journaled).
    at_ms: u64,
}

#[step]
fn hello(input: Input) -> Result<Output, Error> {
    let name = input.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| Error::fatal("`name` is missing"))?;
    ferry_sdk::info!("greeting {name}");
    Ok(Output { greeting: format!("Hello, {name}!"), at_ms: ferry_sdk::now_millis() })
}
