//! The `ferry` command line: one file per subcommand. anyhow lives here and
//! in `main.rs` only.

mod activate;
mod bench;
mod build;
pub mod client;
mod demo;
mod deploy;
mod deployments;
mod events;
mod exec;
mod format;
mod replay;
mod run;
mod runs;
mod schedules;
mod serve;
mod show;
mod upstream;
mod work;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::engine::{Engine, EngineConfig};
use crate::store::{Durability, Store};

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
    /// The store: a SQLite file path or `sqlite://` URL [default: ferry.db].
    /// Commands that also talk to the daemon (`runs`, `show`, `cancel`,
    /// `send-event`) use the store only when it is given.
    #[arg(long, env = "FERRY_DB", global = true)]
    db: Option<String>,
    /// fsync every commit group (default), or leave commits to the OS.
    #[arg(long, value_enum, env = "FERRY_DURABILITY", default_value_t = Durability::Fsync, global = true)]
    durability: Durability,
    /// Where compiled components are cached.
    #[arg(long, env = "FERRY_CACHE_DIR", default_value = ".ferry/cache", global = true)]
    cache_dir: PathBuf,
}

/// The store used when `--db` is not given.
pub const DEFAULT_DB: &str = "ferry.db";

impl StoreArgs {
    /// The store's path or URL: `--db`, or `ferry.db` in the working folder.
    fn db(&self) -> &str {
        self.db.as_deref().unwrap_or(DEFAULT_DB)
    }

    async fn open_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(crate::store::open(self.db(), self.durability).await?)
    }

    /// Where a command that works on a store or on the daemon goes: the
    /// store when `--db` (or FERRY_DB) is given, the daemon otherwise.
    fn target(&self, daemon: &client::DaemonArgs) -> anyhow::Result<Option<client::Client>> {
        if self.db.is_some() { Ok(None) } else { daemon.client().map(Some) }
    }

    /// Whether a command that found no daemon should use `./ferry.db`
    /// instead (it says so on stderr).
    fn fall_back(&self, err: &anyhow::Error, client: &client::Client) -> bool {
        let fall_back = self.db.is_none() && client::is_unreachable(err) && std::path::Path::new(DEFAULT_DB).exists();
        if fall_back {
            eprintln!("note: no daemon answers at {}; using the store ./{DEFAULT_DB}", client.url());
        }
        fall_back
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
    /// List runs, newest first.
    Runs(runs::Args),
    /// Show a run and its journal as a timeline.
    Show(show::Args),
    /// Execute the ready runs in the store: resume, wake, retry.
    Work(work::Args),
    /// Send an event: wakes the runs waiting for it.
    SendEvent(events::SendArgs),
    /// Cancel a run that is queued, running or waiting.
    Cancel(events::CancelArgs),
    /// Re-execute a recorded run offline against its journal: no side effects.
    Replay(replay::ReplayArgs),
    /// Write a run's recording to a file that `ferry replay --from-file` reads.
    Export(replay::ExportArgs),
    /// Start a new run that keeps the journal before a step and executes the rest for real.
    Rerun(replay::RerunArgs),
    /// Run the daemon: HTTP API, scheduler and workers.
    Serve(serve::Args),
    /// Deploy a component to the daemon as a new version of a name.
    Deploy(deploy::Args),
    /// List the daemon's deployments: every version of every name.
    Deployments(deployments::Args),
    /// Make a version of a deployment the one new runs take (a rollback).
    Activate(activate::Args),
    /// Start a run of a deployment on the daemon; `--wait` for its output.
    Run(run::Args),
    /// List the daemon's schedules and when they fire next.
    Schedules(schedules::Args),
    /// Run the seed workload in-process on a fresh store and report throughput, latency and memory.
    Bench(bench::Args),
    /// Serve a fake of the reference pipeline's upstream APIs, with seeded faults (demo and tests).
    Upstream(upstream::Args),
}

impl Cli {
    /// Runs the command; the exit code says how it went.
    pub async fn run(self) -> anyhow::Result<std::process::ExitCode> {
        match self.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Build(args) => build::run(args).await,
            Command::Exec(args) => exec::run(args).await,
            Command::Runs(args) => runs::run(args).await,
            Command::Show(args) => show::run(args).await,
            Command::Work(args) => work::run(args).await,
            Command::SendEvent(args) => events::send(args).await,
            Command::Cancel(args) => events::cancel(args).await,
            Command::Replay(args) => replay::replay(args).await,
            Command::Export(args) => replay::export(args).await,
            Command::Rerun(args) => replay::rerun(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Deployments(args) => deployments::run(args).await,
            Command::Activate(args) => activate::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Schedules(args) => schedules::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Upstream(args) => upstream::run(args).await,
        }
    }
}

/// Options of every command that executes workflows.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Binds a step name a workflow calls to a component (repeatable):
    /// `--step pull-source=target/pull_source.wasm`.
    #[arg(long = "step", value_name = "NAME=FILE", value_parser = crate::workflow::StepResolver::parse_binding)]
    steps: Vec<(String, PathBuf)>,
    /// A folder of step components named `<name>.wasm` (repeatable;
    /// default: the output folder of `ferry build`).
    #[arg(long = "steps-dir", value_name = "DIR")]
    steps_dirs: Vec<PathBuf>,
    /// A host steps may reach over HTTP (repeatable): `api.example.com`,
    /// `127.0.0.1:8080`, `*.example.com`.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Attempts per step call unless the workflow says otherwise (retries
    /// back off exponentially with jitter).
    #[arg(long, default_value_t = crate::domain::RetryPolicy::default().max_attempts)]
    max_attempts: u32,
    /// Runs executed at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long a claimed run stays this process's without a heartbeat;
    /// after a crash, another process takes the run over once it expires.
    #[arg(long, value_parser = format::parse_duration, default_value = "10s")]
    lease_ttl: std::time::Duration,
    /// Call each step only once every entry before it is durable, instead
    /// of running ahead of the commits (slower; the same guarantees as seen
    /// from outside the run: docs/DECISIONS.md).
    #[arg(long)]
    no_run_ahead: bool,
}

impl WorkerArgs {
    /// Binds step `name` to `file`, over any earlier binding.
    fn bind_step(&mut self, name: &str, file: &std::path::Path) {
        self.steps.push((name.to_owned(), file.to_path_buf()));
    }

    /// A worker over `host`'s store and engine.
    fn worker(
        &self,
        host: &crate::exec::Host,
        limits: crate::domain::Limits,
    ) -> anyhow::Result<crate::workflow::Worker> {
        use crate::workflow::{RunPolicy, StepResolver, Worker, WorkerConfig};
        let dirs = if self.steps_dirs.is_empty() { StepResolver::default_dirs() } else { self.steps_dirs.clone() };
        let resolver =
            StepResolver::new(host.engine.clone(), host.store.clone(), self.steps.iter().cloned().collect(), dirs);
        let retry = crate::domain::RetryPolicy { max_attempts: self.max_attempts.max(1), ..Default::default() };
        let allow = crate::engine::AllowList::new(self.allow_hosts.iter().cloned());
        let policy = RunPolicy { retry, limits, allow, run_ahead: !self.no_run_ahead, ..RunPolicy::default() };
        let ttl = self.lease_ttl.max(std::time::Duration::from_millis(500));
        let config = WorkerConfig {
            owner: host.owner.clone(),
            max_runs: self.concurrency.max(1),
            lease_ttl: ttl,
            heartbeat: (ttl / 4).min(std::time::Duration::from_secs(2)),
            policy,
            ..WorkerConfig::default()
        };
        Worker::new(host.store.clone(), host.engine.clone(), Arc::new(resolver), host.secrets.clone(), config)
            .map_err(anyhow::Error::msg)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
