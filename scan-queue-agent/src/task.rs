//! One task from assignment to report: a private working directory, the scan configuration
//! file, the scanner's command line, progress and heartbeats while it runs, and then
//! `completeTask` with the report or `failTask` with the reason.

use crate::client::{Assignment, CallError, Client, TaskId, retry};
use crate::config::{Config, ScannerConfig};
use crate::process::{self, Ending, Launch};
use crate::secret::Secret;
use crate::shutdown::Phase;
use crate::template::Placeholder;
use crate::text::truncate;
use base64::Engine;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes of a status or failure message sent (the server's default bound is 4 096).
pub const MAX_MESSAGE_BYTES: usize = 3500;
/// The shorter reason sent when a server refuses a long one.
pub const SHORT_MESSAGE_BYTES: usize = 200;
/// The largest decoded scan configuration file accepted.
pub const MAX_CONFIG_FILE_BYTES: usize = 16 * 1024 * 1024;
/// The name of the scan configuration file in a task's directory (`{config_file}`).
pub const CONFIG_FILE_NAME: &str = "config";
/// Environment variables every scanner gets from the agent's environment, when set.
pub const BASE_ENV: [&str; 7] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ"];
/// How long reports are retried once the agent is stopping.
const STOPPING_REPORT_RETRY: Duration = Duration::from_secs(10);

/// What every task shares.
#[derive(Debug)]
pub struct Context {
    /// The server.
    pub client: Client,
    /// The configuration.
    pub config: Config,
    /// This agent's key.
    pub agent_key: Secret,
    /// Where the agent is in its life (running, draining, stopping).
    pub phase: watch::Receiver<Phase>,
}

/// How a task ended, from this agent's side.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// `completeTask` was accepted.
    Completed,
    /// `failTask` was accepted, with this reason.
    Failed(String),
    /// The task is no longer this agent's (lease lost, cancelled), or the server refused the
    /// report; nothing more to do.
    Lost(String),
    /// The report could not be delivered before the retries ran out.
    Undelivered(String),
}

/// What the agent will tell the server.
enum Report {
    Complete { path: PathBuf, file_name: String },
    Fail(String),
    Nothing(String),
}

/// Runs one assigned task to its end and reports it.
pub async fn run(ctx: Arc<Context>, assignment: Assignment) -> Outcome {
    let id = assignment.task_id;
    let task_key = assignment.secure_task_key.clone();
    // The working directory lives until the report is delivered, then goes (with the
    // scan configuration file in it).
    let (report, _work_dir) = match ctx.config.scanners.get(&assignment.task_type) {
        Some(scanner) => match make_work_dir(ctx.config.work_dir.as_deref(), id) {
            Ok(dir) => (
                scan_in(&ctx, &assignment, scanner, dir.path()).await,
                Some(dir),
            ),
            Err(e) => (
                Report::Fail(format!(
                    "could not create the task's working directory: {e}"
                )),
                None,
            ),
        },
        None => (
            Report::Fail(format!(
                "this scan agent has no command for the scanner \"{}\"",
                assignment.task_type
            )),
            None,
        ),
    };
    let outcome = deliver(&ctx, id, &task_key, report).await;
    match &outcome {
        Outcome::Completed => tracing::info!("task completed"),
        Outcome::Failed(reason) => tracing::warn!(reason = %reason, "task failed"),
        Outcome::Lost(why) => tracing::warn!(why = %why, "task given up"),
        Outcome::Undelivered(error) => tracing::error!(error = %error, "could not report the task"),
    }
    outcome
}

async fn scan_in(
    ctx: &Arc<Context>,
    a: &Assignment,
    scanner: &ScannerConfig,
    dir: &Path,
) -> Report {
    let id = a.task_id;
    let config_path = dir.join(CONFIG_FILE_NAME);
    let blob = a
        .task_config
        .data_blobs
        .as_ref()
        .and_then(|b| b.config_file.as_deref());
    let have_config = match blob {
        Some(b64) => match write_config_file(&config_path, b64) {
            Ok(()) => true,
            Err(e) => {
                return Report::Fail(format!("could not write the scan configuration file: {e}"));
            }
        },
        None => false,
    };
    let output = dir.join(&scanner.output_file);
    let value = |p: Placeholder| -> Option<String> {
        match p {
            Placeholder::TargetUrl => a.task_config.target_url.clone().filter(|u| !u.is_empty()),
            Placeholder::Output => Some(output.display().to_string()),
            Placeholder::ConfigFile => have_config.then(|| config_path.display().to_string()),
            Placeholder::TaskId => Some(id.to_string()),
            Placeholder::WorkDir => Some(dir.display().to_string()),
        }
    };
    let missing = |p: Placeholder| {
        match p {
        Placeholder::TargetUrl => "the task has no target URL, which the scanner's command needs ({target_url})".to_owned(),
        Placeholder::ConfigFile => "the task has no scan configuration (setTaskConfig), which the scanner's command needs ({config_file})".to_owned(),
        other => format!("no value for {other}"),
    }
    };
    let mut argv = Vec::with_capacity(scanner.command.len());
    for t in &scanner.command {
        match t.fill(value) {
            Ok(arg) => argv.push(arg),
            Err(p) => return Report::Fail(missing(p)),
        }
    }
    let mut env: Vec<(String, String)> = BASE_ENV
        .iter()
        .map(|s| (*s).to_owned())
        .chain(ctx.config.inherit_env.iter().cloned())
        .filter(|name| Some(name) != ctx.config.api_key_env.as_ref())
        .filter_map(|name| std::env::var(&name).ok().map(|v| (name, v)))
        .collect();
    for (name, t) in &scanner.env {
        match t.fill(value) {
            Ok(v) => env.push((name.clone(), v)),
            Err(p) => return Report::Fail(missing(p)),
        }
    }
    let launch = Launch {
        argv,
        env,
        dir: dir.to_path_buf(),
        time_limit: scanner.time_limit,
        kill_grace: ctx.config.kill_grace,
    };
    let program = launch.argv[0].clone();
    tracing::info!(program = %program, "starting the scanner");

    // Progress: the latest stdout line, read by the reporter at its own pace.
    let (line_tx, line_rx) = watch::channel(String::new());
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<String>();
    let reporter = tokio::spawn(report_progress(
        Arc::clone(ctx),
        id,
        a.secure_task_key.clone(),
        a.task_type.clone(),
        line_rx,
        lost_tx,
    ));
    let mut phase = ctx.phase.clone();
    let stop = async move {
        let lost = async {
            match lost_rx.await {
                Ok(why) => why,
                Err(_) => std::future::pending().await,
            }
        };
        let stopping = async {
            let _ = phase.wait_for(|p| *p == Phase::Stopping).await;
            "stopping".to_owned()
        };
        tokio::select! {
            why = lost => format!("lost: {why}"),
            s = stopping => s,
        }
    };
    let on_line = move |line: String| {
        tracing::debug!(line = %line, "scanner output");
        line_tx.send_replace(line);
    };
    let finished = process::run(&launch, on_line, stop).await;
    reporter.abort();
    let _ = reporter.await;
    let finished = match finished {
        Ok(f) => f,
        Err(e) => return Report::Fail(format!("could not start the scanner \"{program}\": {e}")),
    };
    let stderr = || {
        if finished.stderr_tail.is_empty() {
            String::new()
        } else {
            format!("; last lines of stderr:\n{}", finished.stderr_tail)
        }
    };
    match &finished.ending {
        Ending::Exited(status) => {
            let code = status.code();
            let exit = process::describe_exit(*status);
            tracing::info!(exit = %exit, stdout_lines = finished.stdout_lines, "the scanner ended");
            if !code.is_some_and(|c| scanner.success_exit_codes.contains(&c)) {
                return Report::Fail(format!(
                    "the scanner \"{program}\" ended with {exit}{}",
                    stderr()
                ));
            }
            match check_report(&output, ctx.config.max_report_bytes) {
                Ok(()) => Report::Complete {
                    path: output,
                    file_name: scanner.output_file.clone(),
                },
                Err(problem) => Report::Fail(format!(
                    "the scanner \"{program}\" ended with {exit} but {problem}{}",
                    stderr()
                )),
            }
        }
        Ending::TimedOut => Report::Fail(format!(
            "the scanner \"{program}\" ran past its time limit of {} and was killed{}",
            humantime::format_duration(scanner.time_limit),
            stderr()
        )),
        Ending::Stopped(why) if why.starts_with("lost: ") => {
            Report::Nothing(why.trim_start_matches("lost: ").to_owned())
        }
        Ending::Stopped(_) => Report::Fail(format!(
            "the scan agent was stopped (SIGTERM) and killed the scanner \"{program}\" after its {} grace period",
            humantime::format_duration(ctx.config.shutdown_grace)
        )),
    }
}

/// Sends the report, retrying while the server is unreachable.
async fn deliver(ctx: &Context, id: TaskId, task_key: &Secret, report: Report) -> Outcome {
    let retry_for = if *ctx.phase.borrow() == Phase::Stopping {
        STOPPING_REPORT_RETRY.min(ctx.config.report_retry_for)
    } else {
        ctx.config.report_retry_for
    };
    let until = Instant::now() + retry_for;
    let max_delay = ctx.config.retry_max_delay;
    let key = &ctx.agent_key;
    let (result, reason) = match report {
        Report::Nothing(why) => return Outcome::Lost(why),
        Report::Complete { path, file_name } => {
            let result = retry("completeTask", until, max_delay, || {
                ctx.client
                    .complete_task(id, key, task_key, &path, &file_name)
            })
            .await;
            match result {
                Err(CallError::Local(e)) => {
                    let reason = truncate(
                        &format!("the report could not be read: {e}"),
                        MAX_MESSAGE_BYTES,
                    )
                    .into_owned();
                    let r = retry("failTask", until, max_delay, || {
                        ctx.client.fail_task(id, &reason, key, task_key)
                    })
                    .await;
                    (r, Some(reason))
                }
                other => (other, None),
            }
        }
        Report::Fail(reason) => {
            let mut reason = truncate(&reason, MAX_MESSAGE_BYTES).into_owned();
            let mut r = retry("failTask", until, max_delay, || {
                ctx.client.fail_task(id, &reason, key, task_key)
            })
            .await;
            // A server with a smaller message bound: the reason's start still says why.
            if matches!(&r, Err(CallError::Refused(m)) if refuses_only_the_message(m)) {
                reason = truncate(&reason, SHORT_MESSAGE_BYTES).into_owned();
                r = retry("failTask", until, max_delay, || {
                    ctx.client.fail_task(id, &reason, key, task_key)
                })
                .await;
            }
            (r, Some(reason))
        }
    };
    match (result, reason) {
        (Ok(()), None) => Outcome::Completed,
        (Ok(()), Some(reason)) => Outcome::Failed(reason),
        (Err(CallError::Refused(m)), _) => {
            Outcome::Lost(format!("the server refused the report: {m}"))
        }
        (Err(e), _) => Outcome::Undelivered(e.to_string()),
    }
}

/// Sends the latest output line at most every `status_interval`, and a heartbeat when
/// nothing was sent for `heartbeat_interval`. A refusal means the task is no longer ours:
/// the reason goes to `lost` and the reporter ends.
async fn report_progress(
    ctx: Arc<Context>,
    id: TaskId,
    task_key: Secret,
    scanner: String,
    mut lines: watch::Receiver<String>,
    lost: tokio::sync::oneshot::Sender<String>,
) {
    let config = &ctx.config;
    let started = Instant::now();
    let mut backoff =
        crate::client::Backoff::new(config.retry_max_delay.min(config.heartbeat_interval));
    let mut first = Some(format!("{scanner} started by scan agent {}", config.name));
    let mut last_sent = started;
    let mut retry_at: Option<Instant> = None;
    let mut unsent: Option<String> = None;
    let mut open = true;
    // A line arrived that is not sent yet (`changed()` marks it seen, so it is noted here).
    let mut pending = false;
    loop {
        pending = pending || lines.has_changed().unwrap_or(false);
        let due = if first.is_some() {
            started
        } else if let Some(at) = retry_at {
            at
        } else if pending {
            last_sent + config.status_interval
        } else {
            last_sent + config.heartbeat_interval
        };
        if !pending && open && first.is_none() {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                changed = lines.changed() => {
                    match changed {
                        Ok(()) => pending = true,
                        Err(_) => open = false,
                    }
                    continue;
                }
            }
        } else {
            tokio::time::sleep_until(due).await;
        }
        let message = if let Some(m) = first.take() {
            m
        } else if pending {
            pending = false;
            unsent = None;
            lines.borrow_and_update().clone()
        } else if let Some(m) = unsent.take() {
            m
        } else {
            format!(
                "{scanner} still running ({} elapsed)",
                humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
            )
        };
        let message = truncate(&message, MAX_MESSAGE_BYTES).into_owned();
        let message = if message.is_empty() {
            " ".to_owned()
        } else {
            message
        };
        match ctx
            .client
            .status_update(id, &message, &ctx.agent_key, &task_key)
            .await
        {
            Ok(()) => {
                last_sent = Instant::now();
                retry_at = None;
                backoff.reset();
            }
            Err(CallError::Refused(why)) if refuses_only_the_message(&why) => {
                tracing::warn!(why = %why, "the server refused one status update; going on");
                last_sent = Instant::now();
                retry_at = None;
            }
            Err(CallError::Refused(why)) => {
                tracing::warn!(why = %why, "the server refused a status update: the task is no longer this agent's");
                let _ = lost.send(why);
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "status update failed");
                retry_at = Some(Instant::now() + delay);
                unsent = Some(message);
            }
        }
    }
}

/// Whether a refusal is about the message itself (a server with a smaller message bound, or
/// one that refuses its content), not about the task: the server's "Limit reached for
/// message length …" and "Invalid message …" answers. Any other refusal means the task is no
/// longer this agent's.
fn refuses_only_the_message(why: &str) -> bool {
    why.starts_with("Limit reached for message") || why.starts_with("Invalid message")
}

/// A fresh private (0700) directory for one task.
fn make_work_dir(root: Option<&Path>, id: TaskId) -> std::io::Result<tempfile::TempDir> {
    let root = root.map_or_else(std::env::temp_dir, Path::to_path_buf);
    std::fs::create_dir_all(&root)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("scan-queue-task-{id}-"))
        .tempdir_in(root)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Decodes `dataBlobs.configFile` into a `0600` file.
fn write_config_file(path: &Path, b64: &str) -> Result<(), String> {
    if b64.len() > MAX_CONFIG_FILE_BYTES / 3 * 4 + 4 {
        return Err(format!("larger than {MAX_CONFIG_FILE_BYTES} bytes"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("configFile is not base64: {e}"))?;
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| e.to_string())?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(&bytes))
        .map_err(|e| e.to_string())
}

/// Whether the report exists, is a non-empty regular file and within the bound.
fn check_report(path: &Path, max: u64) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match std::fs::symlink_metadata(path) {
        Err(_) => Err(format!("wrote no report ({name})")),
        Ok(m) if !m.is_file() => Err(format!("its report ({name}) is not a regular file")),
        Ok(m) if m.len() == 0 => Err(format!("its report ({name}) is empty")),
        Ok(m) if m.len() > max => Err(format!(
            "its report ({name}) has {} bytes, more than the {max} bytes allowed (max_report_bytes)",
            m.len()
        )),
        Ok(_) => Ok(()),
    }
}
