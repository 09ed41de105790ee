//! Running one scanner process: its own process group, output read line by line, a time
//! limit, and the whole group killed when the scan is cut short or when it ends (so no
//! helper process outlives its scan).

use crate::text::{LineSplitter, Tail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of one output line kept (longer lines are cut).
pub const MAX_LINE_BYTES: usize = 1000;
/// Lines of stderr kept for a failure report.
pub const STDERR_TAIL_LINES: usize = 15;
/// How long output is still read after the process ended (a grandchild may hold the pipe).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The program and its arguments, placeholders already filled.
    pub argv: Vec<String>,
    /// The whole environment of the process.
    pub env: Vec<(String, String)>,
    /// Its current directory.
    pub dir: PathBuf,
    /// How long it may run.
    pub time_limit: Duration,
    /// Between SIGTERM and SIGKILL to its process group.
    pub kill_grace: Duration,
}

/// How a scanner process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited (or a signal killed it) by itself.
    Exited(ExitStatus),
    /// It ran past its time limit and was killed.
    TimedOut,
    /// It was stopped from outside, for this reason.
    Stopped(String),
}

/// A finished scanner process.
#[derive(Clone, Debug)]
pub struct Finished {
    /// How it ended.
    pub ending: Ending,
    /// The last lines it wrote to stderr.
    pub stderr_tail: String,
    /// Lines it wrote to stdout.
    pub stdout_lines: u64,
}

/// Runs `launch` until it exits, passes its time limit, or `stop` completes (with the
/// reason). Each stdout line goes to `on_line` as it arrives. An error only when the process
/// could not be started.
pub async fn run(
    launch: &Launch,
    mut on_line: impl FnMut(String) + Send + 'static,
    stop: impl Future<Output = String>,
) -> std::io::Result<Finished> {
    let (program, args) = launch
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&launch.dir)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("the scanner exited before it could be watched"))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdout_task = tokio::spawn(async move {
        let mut count = 0u64;
        if let Some(out) = stdout {
            read_lines(out, |line| {
                count += 1;
                on_line(line);
            })
            .await;
        }
        count
    });
    let stderr_task = tokio::spawn(async move {
        let mut tail = Tail::new(STDERR_TAIL_LINES);
        if let Some(err) = stderr {
            read_lines(err, |line| {
                tracing::debug!(line = %line, "scanner stderr");
                tail.push(line);
            })
            .await;
        }
        tail
    });

    enum Why {
        Exited(std::io::Result<ExitStatus>),
        Limit,
        Stop(String),
    }
    let why = tokio::select! {
        status = child.wait() => Why::Exited(status),
        () = tokio::time::sleep(launch.time_limit) => Why::Limit,
        reason = stop => Why::Stop(reason),
    };
    let ending = match why {
        Why::Exited(status) => Ending::Exited(status?),
        Why::Limit => {
            tracing::warn!(
                limit_s = launch.time_limit.as_secs(),
                "time limit reached: killing the scanner's process group"
            );
            kill_group(&mut child, group, launch.kill_grace).await;
            Ending::TimedOut
        }
        Why::Stop(reason) => {
            tracing::warn!(reason = %reason, "stopping the scanner's process group");
            kill_group(&mut child, group, launch.kill_grace).await;
            Ending::Stopped(reason)
        }
    };
    // Whatever the leader did, nothing of its group outlives the scan.
    signal_group(group, Signal::SIGKILL);
    let stdout_lines = tokio::time::timeout(DRAIN_TIMEOUT, stdout_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let stderr_tail = tokio::time::timeout(DRAIN_TIMEOUT, stderr_task)
        .await
        .ok()
        .and_then(Result::ok)
        .map(|t| t.text())
        .unwrap_or_default();
    Ok(Finished {
        ending,
        stderr_tail,
        stdout_lines,
    })
}

/// SIGTERM to the group, then SIGKILL if the leader has not exited after `grace`.
async fn kill_group(child: &mut tokio::process::Child, group: Pid, grace: Duration) {
    signal_group(group, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// Sends a signal to a process group; an already empty group is not an error.
fn signal_group(group: Pid, signal: Signal) {
    match killpg(group, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(error = %e, ?signal, "could not signal the scanner's process group")
        }
    }
}

/// Reads a stream to its end, line by line (bounded lines).
async fn read_lines(mut stream: impl AsyncRead + Unpin, mut line: impl FnMut(String)) {
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut buf = vec![0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => splitter.feed(&buf[..n], &mut line),
        }
    }
    if let Some(last) = splitter.finish() {
        line(last);
    }
}

/// A short description of an exit status: `exit status 3` or `killed by signal 9 (SIGKILL)`.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {sig} ({})", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        (None, None) => "an unknown exit status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(script: &str, limit: Duration) -> Launch {
        Launch {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            dir: std::env::temp_dir(),
            time_limit: limit,
            kill_grace: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn lines_exit_status_and_stderr_tail() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let l = launch(
            "echo one; echo two; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17; do echo err$i >&2; done; exit 3",
            Duration::from_secs(20),
        );
        let f = run(&l, move |line| drop(tx.send(line)), std::future::pending())
            .await
            .unwrap();
        let mut lines = Vec::new();
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        assert_eq!(lines, vec!["one", "two"]);
        assert_eq!(f.stdout_lines, 2);
        match f.ending {
            Ending::Exited(s) => assert_eq!(describe_exit(s), "exit status 3"),
            other => panic!("{other:?}"),
        }
        assert!(
            f.stderr_tail.starts_with("err3\n") && f.stderr_tail.ends_with("err17"),
            "{}",
            f.stderr_tail
        );
    }

    #[tokio::test]
    async fn the_time_limit_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        // A grandchild that ignores SIGTERM: only SIGKILL to the group ends it.
        let script = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 30' & wait",
            pidfile.display()
        );
        let started = std::time::Instant::now();
        let f = run(
            &launch(&script, Duration::from_millis(500)),
            drop,
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(f.ending, Ending::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed, hence gone once reaped by init; give it a moment.
        let mut alive = true;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            alive = !stat.is_empty() && !stat.contains(") Z ");
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!alive, "grandchild {pid} survived");
    }

    #[tokio::test]
    async fn stop_and_start_failures() {
        let f = run(&launch("sleep 30", Duration::from_secs(60)), drop, async {
            "told to stop".to_owned()
        })
        .await
        .unwrap();
        assert_eq!(f.ending, Ending::Stopped("told to stop".into()));
        let mut missing = launch("", Duration::from_secs(1));
        missing.argv = vec!["/nonexistent/scanner".into()];
        assert!(run(&missing, drop, std::future::pending()).await.is_err());
    }
}
