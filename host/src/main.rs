//! The `ferry` binary: parse the command line, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    restore_sigpipe();
    ferry::telemetry::init();
    let cli = ferry::cli::Cli::parse();
    match cli.run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `ferry runs | head` should end quietly when `head` has read enough, like
/// any Unix tool: Rust ignores SIGPIPE, which turns every later `println!`
/// into a panic, so the default action (end the process) is put back. The
/// one `unsafe` of the binary: a libc call with constant arguments.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread could
    // depend on the signal's disposition; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
