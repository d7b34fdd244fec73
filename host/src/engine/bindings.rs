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

/// World `ferry:runtime/workflow`; the shared interfaces are the step
/// world's, so one `context` implementation serves both.
pub mod workflow {
    wasmtime::component::bindgen!({
        path: "../wit/runtime@0.1.0",
        world: "ferry:runtime/workflow",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "ferry:runtime/types": super::step::ferry::runtime::types,
            "ferry:runtime/context": super::step::ferry::runtime::context,
        },
    });
}

pub use step::ferry::runtime::{context, http, types};
pub use workflow::ferry::runtime::orchestration;
