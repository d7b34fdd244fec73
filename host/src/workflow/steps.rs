//! Finding the step components a workflow calls by name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::domain::{Micros, World};
use crate::engine::{Engine, Loaded};
use crate::store::{Component, Store};

/// Resolves step (and child workflow) names to loaded components: explicit `NAME=FILE` bindings
/// first, then `<dir>/<name with - as _>.wasm` in the step folders given
/// (e.g. the output of `ferry build`). Each component is stored in the
/// store by hash the first time it is used, so the journal's runs can name
/// exactly what ran.
pub struct StepResolver {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    files: HashMap<String, PathBuf>,
    dirs: Vec<PathBuf>,
    /// Resolve names through the store's active deployments (the daemon).
    deployments: bool,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
}

/// Why a name did not resolve through the deployments.
#[derive(Debug)]
pub enum Unresolved {
    /// The store could not be read (a lost connection): the same name may
    /// resolve in a moment, so this must not fail the run.
    Store(String),
    /// No such deployment, the wrong world, a component that does not load.
    Invalid(String),
}

/// A resolved step and its deployment's settings, if it has a deployment.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub loaded: Arc<Loaded>,
    pub config: Option<crate::domain::DeploymentConfig>,
}

impl StepResolver {
    pub fn new(
        engine: Arc<Engine>,
        store: Arc<dyn Store>,
        files: HashMap<String, PathBuf>,
        dirs: Vec<PathBuf>,
    ) -> Self {
        Self { engine, store, files, dirs, deployments: false, loaded: Mutex::new(HashMap::new()) }
    }

    /// A resolver that finds names among the store's active deployments:
    /// each call takes the version active at that moment.
    pub fn from_deployments(engine: Arc<Engine>, store: Arc<dyn Store>) -> Self {
        let loaded = Mutex::new(HashMap::new());
        Self { engine, store, files: HashMap::new(), dirs: Vec::new(), deployments: true, loaded }
    }

    /// Step `name` with its deployment settings.
    pub async fn resolve(&self, name: &str) -> Result<Resolved, Unresolved> {
        if !self.deployments {
            return self.get(name).await.map(|loaded| Resolved { loaded, config: None }).map_err(Unresolved::Invalid);
        }
        let d = self
            .store
            .deployment(name, None)
            .await
            .map_err(|e| Unresolved::Store(format!("cannot look up step `{name}`: {e}")))?
            .ok_or_else(|| {
                Unresolved::Invalid(format!(
                    "no step named `{name}` is deployed: deploy it with `ferry deploy FILE.wasm --name {name}`"
                ))
            })?;
        if d.world != World::Step {
            return Err(Unresolved::Invalid(format!("`{name}` is a {}, not a step", d.world)));
        }
        let loaded = self.by_hash(&d.hash, name).await?;
        Ok(Resolved { loaded, config: Some(d.config) })
    }

    /// The component with this hash, from the store.
    pub async fn by_hash(&self, hash: &crate::domain::ComponentHash, name: &str) -> Result<Arc<Loaded>, Unresolved> {
        let key = format!("sha256:{hash}");
        if let Some(l) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(l.clone());
        }
        let c = self
            .store
            .component(hash)
            .await
            .map_err(|e| Unresolved::Store(format!("cannot read component of `{name}`: {e}")))?
            .ok_or_else(|| Unresolved::Invalid(format!("component {hash} of `{name}` is not in the store")))?;
        let loaded = self.engine.load(&c.bytes).await.map_err(|e| Unresolved::Invalid(format!("`{name}`: {e}")))?;
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(key, loaded.clone());
        Ok(loaded)
    }

    /// The workflow `name` for a child run: the active deployment, or a file.
    pub async fn resolve_workflow(&self, name: &str) -> Result<Resolved, Unresolved> {
        if !self.deployments {
            return self
                .get_workflow(name)
                .await
                .map(|loaded| Resolved { loaded, config: None })
                .map_err(Unresolved::Invalid);
        }
        let d = self
            .store
            .deployment(name, None)
            .await
            .map_err(|e| Unresolved::Store(format!("cannot look up workflow `{name}`: {e}")))?
            .ok_or_else(|| Unresolved::Invalid(format!("no workflow named `{name}` is deployed")))?;
        if d.world != World::Workflow {
            return Err(Unresolved::Invalid(format!("`{name}` is a {}, not a workflow", d.world)));
        }
        let loaded = self.by_hash(&d.hash, name).await?;
        Ok(Resolved { loaded, config: Some(d.config) })
    }

    /// The component of step `name`, or why there is none.
    pub async fn get(&self, name: &str) -> Result<Arc<Loaded>, String> {
        self.load(name, World::Step).await
    }

    /// The component of workflow `name` (for child runs), or why there is none.
    pub async fn get_workflow(&self, name: &str) -> Result<Arc<Loaded>, String> {
        self.load(name, World::Workflow).await
    }

    async fn load(&self, name: &str, world: World) -> Result<Arc<Loaded>, String> {
        if let Some(l) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return if l.world == world {
                Ok(l.clone())
            } else {
                Err(format!("`{name}` is a {}, not a {world}", l.world))
            };
        }
        let path = self.path_of(name).ok_or_else(|| {
            format!(
                "no step named `{name}`: bind it with --step {name}=FILE.wasm, or build it into one of: {}",
                if self.dirs.is_empty() {
                    "(no step folders)".to_owned()
                } else {
                    self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                }
            )
        })?;
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read step `{name}` from {}: {e}", path.display()))?;
        let loaded = self.engine.load(&bytes).await.map_err(|e| format!("step `{name}` ({}): {e}", path.display()))?;
        if loaded.world != world {
            return Err(format!("`{name}` ({}) is a {}, not a {world}", path.display(), loaded.world));
        }
        let component = Component { hash: loaded.hash.clone(), world, bytes, created_at: Micros::now() };
        self.store.put_component(&component).await.map_err(|e| format!("cannot store step `{name}`: {e}"))?;
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), loaded.clone());
        Ok(loaded)
    }

    fn path_of(&self, name: &str) -> Option<PathBuf> {
        if let Some(p) = self.files.get(name) {
            return Some(p.clone());
        }
        let file = format!("{}.wasm", name.replace('-', "_"));
        self.dirs.iter().map(|d| d.join(&file)).find(|p| p.exists())
    }

    /// The default step folder: `steps/target/wasm32-wasip2/release` under
    /// the working folder or the nearest parent that has one.
    pub fn default_dirs() -> Vec<PathBuf> {
        let Ok(cwd) = std::env::current_dir() else { return Vec::new() };
        cwd.ancestors().map(|d| d.join("steps/target/wasm32-wasip2/release")).find(|p| p.is_dir()).into_iter().collect()
    }

    /// Parses `NAME=FILE` bindings.
    pub fn parse_binding(text: &str) -> Result<(String, PathBuf), String> {
        let (name, file) = text.split_once('=').ok_or_else(|| format!("`{text}` is not NAME=FILE.wasm"))?;
        if name.is_empty() || file.is_empty() {
            return Err(format!("`{text}` is not NAME=FILE.wasm"));
        }
        Ok((name.to_owned(), Path::new(file).to_path_buf()))
    }
}
