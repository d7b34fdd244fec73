//! The `ferry` command line: one file per subcommand. anyhow lives here and
//! in `main.rs` only.

mod build;
mod demo;
mod exec;
mod format;
mod show;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::engine::{Engine, EngineConfig};
use crate::store::{Durability, Store, sqlite::SqliteStore};

/// Durable workflows whose every step is a sandboxed, fuel-metered
/// WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options of every command that opens the store.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The store: a SQLite file path or `sqlite://` URL.
    #[arg(long, env = "FERRY_DB", default_value = "ferry.db", global = true)]
    db: String,
    /// fsync every commit group (default), or leave commits to the OS.
    #[arg(long, value_enum, env = "FERRY_DURABILITY", default_value_t = Durability::Fsync, global = true)]
    durability: Durability,
    /// Where compiled components are cached.
    #[arg(long, env = "FERRY_CACHE_DIR", default_value = ".ferry/cache", global = true)]
    cache_dir: PathBuf,
}

impl StoreArgs {
    async fn open_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        let store = SqliteStore::open(&self.db, self.durability).await?;
        Ok(Arc::new(store))
    }

    fn engine(&self) -> anyhow::Result<Arc<Engine>> {
        let config = EngineConfig { cache_dir: Some(self.cache_dir.clone()), ..EngineConfig::default() };
        Ok(Arc::new(Engine::new(config)?))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the example steps and run them: the first thing to try.
    Demo(demo::Args),
    /// Compile the step crates in `steps/` to components.
    Build(build::Args),
    /// Run one step component in-process, journaled in the store.
    Exec(exec::Args),
    /// Show a run and its journal as a timeline.
    Show(show::Args),
}

impl Cli {
    /// Runs the command; the exit code says how it went.
    pub async fn run(self) -> anyhow::Result<std::process::ExitCode> {
        match self.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Build(args) => build::run(args).await,
            Command::Exec(args) => exec::run(args).await,
            Command::Show(args) => show::run(args).await,
        }
    }
}
