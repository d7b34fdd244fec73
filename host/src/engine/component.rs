//! Loading components: check the world, compile once, cache the artifact.
//!
//! A component is compiled with Cranelift the first time this host sees its
//! bytes; the serialized artifact is kept on disk under a key made of the
//! component's sha256 and the engine's compatibility hash (wasmtime version,
//! settings, features), so a restart or a second process compiles nothing.

use std::path::{Path, PathBuf};

use wasmtime::component::Component;

use crate::domain::{ComponentHash, World};

/// Why a component cannot be loaded. Each message says what is wrong and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly file: it does not start with the `\\0asm` magic bytes")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build the step with `cargo build --target wasm32-wasip2` (or `ferry build`)"
    )]
    CoreModule,
    #[error("the component is malformed and cannot be compiled: {0}")]
    Malformed(String),
    #[error("wrong world: {0}")]
    WrongWorld(String),
    #[error("the compiled-artifact cache at {path} is not usable: {message}")]
    Cache { path: PathBuf, message: String },
}

/// Import names a guest may use, by world.
const CONTEXT: &str = "ferry:runtime/context@0.1.0";
const HTTP: &str = "ferry:runtime/http@0.1.0";
const WORKFLOW: &str = "ferry:runtime/orchestration@0.1.0";
const TYPES: &str = "ferry:runtime/types@0.1.0";

const STEP_SIGNATURE: &str =
    "`run: func(input: string) -> result<string, step-error>` (world ferry:runtime/step@0.1.0)";

/// Works out which world a component implements from what it imports and
/// exports, or says precisely why it fits none.
pub fn classify(engine: &wasmtime::Engine, component: &Component) -> Result<World, LoadError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_owned()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    classify_names(&imports, &exports)
}

fn classify_names(imports: &[String], exports: &[String]) -> Result<World, LoadError> {
    if !exports.iter().any(|e| e == "run") {
        let found = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
        return Err(LoadError::WrongWorld(format!(
            "the component does not export `run`; a Ferry step must export {STEP_SIGNATURE}, and this one exports {found}. \
             Write the step with the ferry-sdk `#[step]` attribute."
        )));
    }
    let foreign: Vec<&str> = imports
        .iter()
        .map(String::as_str)
        .filter(|i| ![CONTEXT, HTTP, WORKFLOW, TYPES].contains(i) && !i.starts_with("wasi:"))
        .collect();
    if !foreign.is_empty() {
        return Err(LoadError::WrongWorld(format!(
            "the component imports {}, which Ferry does not provide; a step may import only ferry:runtime/context, \
             ferry:runtime/http and WASI p2 interfaces (ferry:runtime@0.1.0)",
            foreign.join(", ")
        )));
    }
    let uses_http = imports.iter().any(|i| i == HTTP);
    let uses_workflow = imports.iter().any(|i| i == WORKFLOW);
    match (uses_http, uses_workflow) {
        (true, true) => Err(LoadError::WrongWorld(
            "the component imports both ferry:runtime/http and ferry:runtime/orchestration: a step may not orchestrate steps, \
             and a workflow may not reach the network; split it into a workflow and the steps it calls"
                .to_owned(),
        )),
        (_, true) => Ok(World::Workflow),
        _ => Ok(World::Step),
    }
}

/// Sniffs the header: a component, a core module, or not wasm at all.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    match bytes.get(..8) {
        Some([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) => Err(LoadError::CoreModule),
        Some([0x00, 0x61, 0x73, 0x6d, ..]) => Err(LoadError::Malformed("unknown WebAssembly version or layer".into())),
        _ => Err(LoadError::NotWasm),
    }
}

/// The on-disk artifact cache.
#[derive(Clone, Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `root`, in a subfolder for this engine's settings.
    pub fn new(root: &Path, engine: &wasmtime::Engine) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Self { dir: root.join(format!("{:016x}", h.finish())) }
    }

    fn path(&self, hash: &ComponentHash) -> PathBuf {
        self.dir.join(format!("{hash}.cwasm"))
    }

    /// Loads the cached artifact of `hash`, if there is a usable one.
    pub fn load(&self, engine: &wasmtime::Engine, hash: &ComponentHash) -> Option<Component> {
        let path = self.path(hash);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below, by a host with the
        // same compatibility hash (it is part of the folder name), from a
        // component wasmtime compiled itself. The cache folder must be
        // writable only by the user running Ferry, like the store itself.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable cached artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves a compiled component's artifact (atomically: a half-written
    /// file is never seen under the final name).
    pub fn store(&self, hash: &ComponentHash, component: &Component) -> Result<(), LoadError> {
        let err = |message: String| LoadError::Cache { path: self.dir.clone(), message };
        std::fs::create_dir_all(&self.dir).map_err(|e| err(e.to_string()))?;
        let bytes = component.serialize().map_err(|e| err(e.to_string()))?;
        let tmp = self.dir.join(format!(".{hash}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, self.path(hash)).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn worlds_are_told_apart_by_imports_and_exports() {
        let step = classify_names(&names(&[CONTEXT, HTTP, "wasi:cli/stderr@0.2.6"]), &names(&["run"]));
        assert_eq!(step.unwrap(), World::Step);
        let wf = classify_names(&names(&[CONTEXT, WORKFLOW]), &names(&["run"]));
        assert_eq!(wf.unwrap(), World::Workflow);
        assert_eq!(classify_names(&[], &names(&["run"])).unwrap(), World::Step);
    }

    #[test]
    fn wrong_worlds_say_what_is_missing() {
        let no_run = classify_names(&[], &names(&["greet"])).unwrap_err().to_string();
        assert!(no_run.contains("does not export `run`"), "{no_run}");
        assert!(no_run.contains("greet"), "{no_run}");
        let foreign = classify_names(&names(&["acme:kv/store"]), &names(&["run"])).unwrap_err().to_string();
        assert!(foreign.contains("acme:kv/store"), "{foreign}");
        let both = classify_names(&names(&[HTTP, WORKFLOW]), &names(&["run"])).unwrap_err().to_string();
        assert!(both.contains("both"), "{both}");
    }

    #[test]
    fn headers_are_sniffed() {
        assert!(check_header(b"\0asm\x0d\x00\x01\x00rest").is_ok());
        assert!(matches!(check_header(b"\0asm\x01\x00\x00\x00"), Err(LoadError::CoreModule)));
        assert!(matches!(check_header(b"hello world"), Err(LoadError::NotWasm)));
        assert!(matches!(check_header(b""), Err(LoadError::NotWasm)));
    }
}
