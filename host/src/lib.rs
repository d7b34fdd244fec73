//! Ferry: durable workflows whose every step is a sandboxed, fuel-metered WebAssembly component.

pub mod api;
pub mod bench;
pub mod cli;
pub mod daemon;
pub mod dashboard;
pub mod domain;
pub mod engine;
pub mod exec;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod workflow;
