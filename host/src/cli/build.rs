//! `ferry build`: compile the step crates to components.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};

use super::format::bytes;
use crate::domain::ComponentHash;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Cargo workspace of the steps (default: `steps/` here or in a
    /// parent folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where Cargo puts its build output (default: the workspace's `target/`).
    #[arg(long, env = "FERRY_STEPS_TARGET_DIR")]
    target_dir: Option<PathBuf>,
    /// Build only these packages (repeatable).
    #[arg(long, short)]
    package: Vec<String>,
    /// Build with Cargo's debug profile instead of release.
    #[arg(long)]
    debug: bool,
    /// Print the components as JSON, for programs.
    #[arg(long)]
    json: bool,
}

/// The target every step is built for.
pub const TARGET: &str = "wasm32-wasip2";

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = match args.dir {
        Some(d) => d,
        None => find_steps_dir()?,
    };
    let (out_dir, components) = build_steps(&dir, args.target_dir.as_deref(), args.debug, &args.package).await?;
    if args.json {
        let doc: Vec<_> = components
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "path": c.path, "bytes": c.size, "sha256": c.hash}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{} components in {}", components.len(), out_dir.display());
        for c in &components {
            println!("  {:<20} {:>10}  sha256:{}  {}", c.name, bytes(c.size), c.hash.short(), c.path.display());
        }
        let example = components.first().map_or("FILE.wasm".into(), |c| c.path.display().to_string());
        println!("run one with: ferry exec {example} --input '{{}}'");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `cargo build` for the steps workspace in `dir` and lists the
/// components it produced. Cargo's progress goes to stderr.
pub async fn build_steps(
    dir: &Path,
    target_dir: Option<&Path>,
    debug: bool,
    packages: &[String],
) -> anyhow::Result<(PathBuf, Vec<Built>)> {
    // Cargo runs in `dir`, so paths given relative to here must not be
    // read relative to there.
    let dir = &std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let target_dir = target_dir.map(std::path::absolute).transpose().context("cannot resolve --target-dir")?;
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!("{} has no Cargo.toml: point --dir at the Cargo workspace of your steps", dir.display());
    }
    let target_dir = target_dir.unwrap_or_else(|| dir.join("target"));
    let profile = if debug { "debug" } else { "release" };
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build").arg("--target").arg(TARGET).arg("--manifest-path").arg(&manifest);
    cmd.arg("--target-dir").arg(&target_dir);
    if !debug {
        cmd.arg("--release");
    }
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    cmd.current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    eprintln!("building the steps in {} for {TARGET} ({profile})…", dir.display());
    let status =
        tokio::task::spawn_blocking(move || cmd.status()).await?.context("cannot run cargo: is Rust installed?")?;
    if !status.success() {
        bail!(
            "cargo build failed ({status}); the errors are above. If the {TARGET} target is missing, run `rustup target add {TARGET}`"
        );
    }
    let out_dir = target_dir.join(TARGET).join(profile);
    let components = list_components(&out_dir)?;
    Ok((out_dir, components))
}

/// A component `cargo build` produced.
pub struct Built {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub hash: ComponentHash,
}

/// The `.wasm` components (not core modules) in Cargo's output folder.
fn list_components(dir: &Path) -> anyhow::Result<Vec<Built>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("cargo produced no output in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        if !bytes.starts_with(b"\0asm\x0d\x00\x01\x00") {
            continue;
        }
        let name = path.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_default();
        out.push(Built { name, size: bytes.len() as u64, hash: ComponentHash::of(&bytes), path });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `steps/` in the working folder or the nearest parent that has one.
pub fn find_steps_dir() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    for dir in cwd.ancestors() {
        let candidate = dir.join("steps");
        if candidate.join("Cargo.toml").exists() {
            return Ok(candidate);
        }
    }
    bail!("no steps/Cargo.toml here or in a parent folder: run from your project, or pass --dir")
}
