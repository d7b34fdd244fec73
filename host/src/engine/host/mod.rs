//! Host implementations of the WIT interfaces a step imports, one file per
//! interface. Each call is journaled through the attempt's recorder.

mod context;
mod http;

use super::bindings::types;
use super::state::Context;

impl types::Host for Context {}
