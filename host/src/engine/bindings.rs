//! The only `bindgen!` of the host: Rust types and traits for the WIT
//! package `ferry:runtime@0.1.0`.
//!
//! Imports are async (HTTP is real I/O) and trappable: a host function
//! returns `Err` only for what must stop the guest (a replay divergence, a
//! host fault); failures the guest should handle are WIT `result` values.

/// World `ferry:runtime/step`.
pub mod step {
    wasmtime::component::bindgen!({
        path: "../wit/runtime@0.1.0",
        world: "ferry:runtime/step",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use step::ferry::runtime::{context, http, types};
