//! `scan-queue-agent`: runs scanners for the tasks of a scan-queue (or ThreadFix) server.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use clap::Parser;
use scan_queue_agent::{Config, agent, shutdown};
use std::path::PathBuf;
use std::process::ExitCode;

/// A scan agent for ThreadFix's Tasks API.
///
/// Asks the server for tasks of the scanners named in the configuration file, runs each
/// scanner's command (its own process group, a time limit), reports its output lines as
/// status updates, and uploads the report (completeTask) or fails the task (failTask) with
/// the exit status and the end of stderr. SIGTERM or SIGINT: stop asking for tasks, let the
/// running scans finish within shutdown_grace, then kill them and fail their tasks. Logs go
/// to stderr (filter with RUST_LOG, e.g. RUST_LOG=debug shows scanner output); they never
/// contain a key.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// The configuration file (TOML; see scan-queue-agent/examples/).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Take at most one task, run it, report it and exit (for cron-style use).
    #[arg(long)]
    once: bool,

    /// Check the configuration file and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("scan-queue-agent: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!(
            "{}: OK; server {}, scanners: {}",
            args.config.display(),
            config.server_url,
            config.scanner_list()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scan-queue-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let phase = match shutdown::on_signals(config.shutdown_grace) {
            Ok(phase) => phase,
            Err(e) => {
                eprintln!("scan-queue-agent: cannot listen for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        match agent::run(config, args.once, phase).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "scan agent stopped");
                eprintln!("scan-queue-agent: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
