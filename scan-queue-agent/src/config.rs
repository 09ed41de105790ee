//! The agent's configuration file (TOML), read and checked once at start.
//!
//! ```toml
//! server_url = "http://127.0.0.1:8080/threadfix/rest/latest/tasks"
//! api_key_env = "SCAN_QUEUE_API_KEY"     # or api_key = "…", or api_key_file = "/path"
//! state_file = "/var/lib/scan-queue-agent/state.toml"
//!
//! [scanners."Wapiti"]
//! command = ["wapiti", "-u", "{target_url}", "-f", "json", "-o", "{output}"]
//! output_file = "report.json"
//! time_limit = "1h"
//! ```

use crate::secret::Secret;
use crate::template::{Placeholder, Template};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest configuration file read, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Scanners one agent may be configured with (the server takes at most 64 per request).
pub const MAX_SCANNERS: usize = 64;
/// Tasks one agent may run at once.
pub const MAX_CONCURRENCY: usize = 64;
/// Arguments in one scanner command.
pub const MAX_ARGS: usize = 256;
/// Extra environment variables of one scanner.
pub const MAX_ENV: usize = 256;
/// Bytes of a scanner name (the server's bound).
pub const MAX_SCANNER_NAME_LEN: usize = 128;

/// A configuration problem, with what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

/// The file as written (before checks and the API key's lookup).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server_url: String,
    api_key: Option<Secret>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    state_file: PathBuf,
    work_dir: Option<PathBuf>,
    name: Option<String>,
    #[serde(default = "defaults::poll_interval", with = "humantime_serde")]
    poll_interval: Duration,
    #[serde(default = "defaults::concurrency")]
    concurrency: usize,
    #[serde(default = "defaults::heartbeat_interval", with = "humantime_serde")]
    heartbeat_interval: Duration,
    #[serde(default = "defaults::status_interval", with = "humantime_serde")]
    status_interval: Duration,
    #[serde(default = "defaults::shutdown_grace", with = "humantime_serde")]
    shutdown_grace: Duration,
    #[serde(default = "defaults::kill_grace", with = "humantime_serde")]
    kill_grace: Duration,
    #[serde(default = "defaults::report_retry_for", with = "humantime_serde")]
    report_retry_for: Duration,
    #[serde(default = "defaults::retry_max_delay", with = "humantime_serde")]
    retry_max_delay: Duration,
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    request_timeout: Duration,
    #[serde(default = "defaults::upload_timeout", with = "humantime_serde")]
    upload_timeout: Duration,
    #[serde(default = "defaults::max_report_bytes")]
    max_report_bytes: u64,
    #[serde(default)]
    inherit_env: Vec<String>,
    scanners: BTreeMap<String, ScannerFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScannerFile {
    command: Vec<Template>,
    #[serde(default = "defaults::output_file")]
    output_file: String,
    #[serde(default = "defaults::time_limit", with = "humantime_serde")]
    time_limit: Duration,
    #[serde(default = "defaults::success_exit_codes")]
    success_exit_codes: Vec<i32>,
    #[serde(default)]
    env: BTreeMap<String, Template>,
}

mod defaults {
    use std::time::Duration;
    pub fn poll_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn concurrency() -> usize {
        1
    }
    pub fn heartbeat_interval() -> Duration {
        Duration::from_secs(60)
    }
    pub fn status_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(30)
    }
    pub fn kill_grace() -> Duration {
        Duration::from_secs(5)
    }
    pub fn report_retry_for() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub fn retry_max_delay() -> Duration {
        Duration::from_secs(30)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn upload_timeout() -> Duration {
        Duration::from_secs(10 * 60)
    }
    pub fn max_report_bytes() -> u64 {
        100 * 1024 * 1024
    }
    pub fn output_file() -> String {
        "report".to_owned()
    }
    pub fn time_limit() -> Duration {
        Duration::from_secs(4 * 60 * 60)
    }
    pub fn success_exit_codes() -> Vec<i32> {
        vec![0]
    }
}

/// The agent's checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Tasks API base, ending in `/tasks` (e.g. `http://host:8080/threadfix/rest/latest/tasks`).
    pub server_url: String,
    /// The API key every call presents (`Authorization: APIKEY …`).
    pub api_key: Secret,
    /// The environment variable the API key came from, if any: never passed on to scanners.
    pub api_key_env: Option<String>,
    /// A PEM file of extra CA certificates trusted for HTTPS (besides the system's).
    pub ca_file: Option<PathBuf>,
    /// Where the scan agent key is kept between runs (written `0600`).
    pub state_file: PathBuf,
    /// Where each task's private directory is made (default: the system's temp directory).
    pub work_dir: Option<PathBuf>,
    /// This agent's name in `agentConfig` (default: the host name).
    pub name: String,
    /// How long to wait before asking again when no task is found.
    pub poll_interval: Duration,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Longest silence towards the server while a scan runs: keep it well inside the lease.
    pub heartbeat_interval: Duration,
    /// Shortest time between two status updates carrying scanner output (rate limit).
    pub status_interval: Duration,
    /// On SIGTERM, how long running scans may go on before they are killed and failed.
    pub shutdown_grace: Duration,
    /// After SIGTERM to a scanner's process group, how long before SIGKILL.
    pub kill_grace: Duration,
    /// How long a completion or failure report is retried while the server is unreachable.
    pub report_retry_for: Duration,
    /// The longest pause between two retries (back-off doubles up to this).
    pub retry_max_delay: Duration,
    /// Timeout of one API call (other than the upload).
    pub request_timeout: Duration,
    /// Timeout of one `completeTask` upload.
    pub upload_timeout: Duration,
    /// The largest report uploaded; a larger one fails the task.
    pub max_report_bytes: u64,
    /// Environment variables passed on to scanners besides `PATH`, `HOME`, `LANG`, `LC_ALL`,
    /// `TMPDIR`, `USER` and `TZ` (scanners get no other variable of the agent's).
    pub inherit_env: Vec<String>,
    /// The commands, by the scanner name the server uses (its display name).
    pub scanners: BTreeMap<String, ScannerConfig>,
}

/// How to run one scanner.
#[derive(Clone, Debug)]
pub struct ScannerConfig {
    /// The program and its arguments, with placeholders. Run directly, never through a shell.
    pub command: Vec<Template>,
    /// The report's file name inside the task's directory (`{output}`), also the uploaded name.
    pub output_file: String,
    /// How long a scan may run before its process group is killed and the task failed.
    pub time_limit: Duration,
    /// Exit codes that mean the scan ran (some scanners exit non-zero when they find issues).
    pub success_exit_codes: Vec<i32>,
    /// Extra environment variables (values may hold placeholders).
    pub env: BTreeMap<String, Template>,
}

impl Config {
    /// Reads and checks the configuration file, and looks up the API key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_bounded(path, MAX_CONFIG_BYTES)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        let config = Config::parse(&text, |name| std::env::var(name).ok())?;
        if config.api_key_env.is_none() {
            warn_if_shared(path);
        }
        Ok(config)
    }

    /// Checks a configuration text; `env` looks up environment variables (for `api_key_env`).
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let server_url = normalize_server_url(&file.server_url)?;
        let api_key = match (
            file.api_key,
            file.api_key_env.as_deref(),
            file.api_key_file.as_deref(),
        ) {
            (Some(key), None, None) => key,
            (None, Some(var), None) => Secret::new(env(var).ok_or_else(|| {
                ConfigError(format!(
                    "api_key_env: the environment variable {var} is not set"
                ))
            })?),
            (None, None, Some(path)) => {
                let text = read_bounded(path, 64 * 1024).map_err(|e| {
                    ConfigError(format!("api_key_file: cannot read {}: {e}", path.display()))
                })?;
                Secret::new(text.trim())
            }
            _ => {
                return err(
                    "give the API key exactly one way: api_key, api_key_env or api_key_file",
                );
            }
        };
        let key_ok = !api_key.is_empty()
            && api_key.expose().len() <= 1024
            && !api_key.expose().chars().any(char::is_control);
        if !key_ok {
            return err("the API key must be 1 to 1024 characters without control characters");
        }
        let name = match file.name {
            Some(name) => name,
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "scan-queue-agent".to_owned()),
        };
        if name.len() > 256 || name.chars().any(char::is_control) {
            return err("name: at most 256 characters, without control characters");
        }
        if !(1..=MAX_CONCURRENCY).contains(&file.concurrency) {
            return err(format!("concurrency: 1 to {MAX_CONCURRENCY}"));
        }
        for (field, value) in [
            ("poll_interval", file.poll_interval),
            ("heartbeat_interval", file.heartbeat_interval),
            ("status_interval", file.status_interval),
            ("request_timeout", file.request_timeout),
            ("upload_timeout", file.upload_timeout),
            ("retry_max_delay", file.retry_max_delay),
        ] {
            if value.is_zero() {
                return err(format!("{field} must be more than zero"));
            }
        }
        if file.status_interval > file.heartbeat_interval {
            return err("status_interval must not be longer than heartbeat_interval");
        }
        if file.inherit_env.len() > MAX_ENV {
            return err(format!("inherit_env: at most {MAX_ENV} names"));
        }
        if file.scanners.is_empty() {
            return err("configure at least one scanner ([scanners.\"Name\"] with a command)");
        }
        if file.scanners.len() > MAX_SCANNERS {
            return err(format!("at most {MAX_SCANNERS} scanners"));
        }
        let mut scanners = BTreeMap::new();
        for (name, s) in file.scanners {
            let valid_name = !name.trim().is_empty()
                && name.trim() == name
                && name.len() <= MAX_SCANNER_NAME_LEN
                && !name.contains(',')
                && !name.chars().any(char::is_control);
            if !valid_name {
                return err(format!(
                    "scanner name \"{name}\": 1 to {MAX_SCANNER_NAME_LEN} bytes, no commas, control characters or surrounding spaces"
                ));
            }
            if s.command.is_empty() || s.command.len() > MAX_ARGS {
                return err(format!(
                    "scanners.\"{name}\".command: 1 to {MAX_ARGS} arguments"
                ));
            }
            let valid_output = !s.output_file.is_empty()
                && s.output_file.len() <= 255
                && !s.output_file.contains('/')
                && s.output_file != "."
                && s.output_file != ".."
                && s.output_file != "config"
                && !s.output_file.chars().any(char::is_control);
            if !valid_output {
                return err(format!(
                    "scanners.\"{name}\".output_file: a plain file name (no '/', not \"config\")"
                ));
            }
            if s.time_limit.is_zero() {
                return err(format!(
                    "scanners.\"{name}\".time_limit must be more than zero"
                ));
            }
            if s.success_exit_codes.is_empty() || s.success_exit_codes.len() > 256 {
                return err(format!(
                    "scanners.\"{name}\".success_exit_codes: 1 to 256 codes"
                ));
            }
            if s.env.len() > MAX_ENV {
                return err(format!(
                    "scanners.\"{name}\".env: at most {MAX_ENV} variables"
                ));
            }
            scanners.insert(
                name,
                ScannerConfig {
                    command: s.command,
                    output_file: s.output_file,
                    time_limit: s.time_limit,
                    success_exit_codes: s.success_exit_codes,
                    env: s.env,
                },
            );
        }
        Ok(Config {
            server_url,
            api_key,
            api_key_env: file.api_key_env,
            ca_file: file.ca_file,
            state_file: file.state_file,
            work_dir: file.work_dir,
            name,
            poll_interval: file.poll_interval,
            concurrency: file.concurrency,
            heartbeat_interval: file.heartbeat_interval,
            status_interval: file.status_interval,
            shutdown_grace: file.shutdown_grace,
            kill_grace: file.kill_grace,
            report_retry_for: file.report_retry_for,
            retry_max_delay: file.retry_max_delay,
            request_timeout: file.request_timeout,
            upload_timeout: file.upload_timeout,
            max_report_bytes: file.max_report_bytes,
            inherit_env: file.inherit_env,
            scanners,
        })
    }

    /// The scanner names joined with commas, as `requestTask` takes them.
    pub fn scanner_list(&self) -> String {
        self.scanners
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl ScannerConfig {
    /// Whether any argument or environment value uses this placeholder.
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.command
            .iter()
            .chain(self.env.values())
            .any(|t| t.uses(placeholder))
    }
}

/// A TOML error as its message and line, without the quoted source line (which could be
/// the one holding `api_key`).
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|span| {
        let before = &text.as_bytes()[..span.start.min(text.len())];
        before.iter().filter(|&&b| b == b'\n').count() + 1
    });
    let message = e.message().trim();
    ConfigError(match line {
        Some(line) => format!("line {line}: {message}"),
        None => message.to_owned(),
    })
}

/// `http(s)://host[:port]` alone gets ThreadFix's path `/threadfix/rest/latest/tasks`; a
/// trailing `/` is dropped.
fn normalize_server_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return err("server_url: an absolute http:// or https:// URL");
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() || url.len() > 2048 {
        return err("server_url: an absolute http:// or https:// URL");
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_control() || c == ' ') {
        return err("server_url: no query, fragment, spaces or control characters");
    }
    let url = url.trim_end_matches('/');
    let has_path = url[scheme.len() + 3..].contains('/');
    Ok(if has_path {
        url.to_owned()
    } else {
        format!("{url}/threadfix/rest/latest/tasks")
    })
}

/// Reads a whole file of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(text)
}

/// Warns when a configuration file that may hold the API key is readable by others.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the configuration file is readable by other users; if it holds api_key, chmod 600 it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        server_url = "http://127.0.0.1:8080"
        api_key = "k-123"
        state_file = "/tmp/state.toml"
        [scanners."Fake"]
        command = ["fake", "{target_url}", "{output}"]
    "#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = Config::parse(MINIMAL, no_env).unwrap();
        assert_eq!(
            c.server_url,
            "http://127.0.0.1:8080/threadfix/rest/latest/tasks"
        );
        assert_eq!(c.api_key.expose(), "k-123");
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert_eq!(c.scanner_list(), "Fake");
        let fake = &c.scanners["Fake"];
        assert_eq!(fake.output_file, "report");
        assert_eq!(fake.success_exit_codes, vec![0]);
        assert!(fake.uses(Placeholder::TargetUrl));
        assert!(!fake.uses(Placeholder::ConfigFile));
        assert!(!format!("{c:?}").contains("k-123"));
    }

    #[test]
    fn full_file() {
        let text = r#"
            server_url = "https://queue.example/threadfix/rest/v2.8/tasks/"
            api_key_env = "MY_KEY"
            state_file = "state.toml"
            name = "agent-7"
            poll_interval = "250ms"
            concurrency = 3
            heartbeat_interval = "2m"
            status_interval = "1s"
            shutdown_grace = "10s"
            inherit_env = ["JAVA_HOME"]
            [scanners."OWASP Zed Attack Proxy"]
            command = ["zap-baseline.py", "-t", "{target_url}", "-J", "{output}"]
            output_file = "zap.json"
            time_limit = "90m"
            success_exit_codes = [0, 1, 2]
            env = { ZAP_TASK = "{task_id}" }
            [scanners."Wapiti"]
            command = ["wapiti", "-u", "{target_url}"]
        "#;
        let env = |name: &str| (name == "MY_KEY").then(|| "from-env".to_owned());
        let c = Config::parse(text, env).unwrap();
        assert_eq!(
            c.server_url,
            "https://queue.example/threadfix/rest/v2.8/tasks"
        );
        assert_eq!(c.api_key.expose(), "from-env");
        assert_eq!(c.api_key_env.as_deref(), Some("MY_KEY"));
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.scanner_list(), "OWASP Zed Attack Proxy,Wapiti");
        let zap = &c.scanners["OWASP Zed Attack Proxy"];
        assert_eq!(zap.time_limit, Duration::from_secs(90 * 60));
        assert_eq!(zap.success_exit_codes, vec![0, 1, 2]);
        assert!(zap.uses(Placeholder::TaskId));
    }

    #[test]
    fn syntax_errors_do_not_quote_the_key() {
        let text = MINIMAL.replace("api_key = \"k-123\"", "api_key = \"k-123");
        let e = Config::parse(&text, no_env).unwrap_err();
        assert!(e.0.starts_with("line 3:"), "{e}");
        assert!(!e.0.contains("k-123"), "{e}");
    }

    #[test]
    fn api_key_from_a_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "file-key\n").unwrap();
        let text = MINIMAL.replace(
            "api_key = \"k-123\"",
            &format!("api_key_file = \"{}\"", key.display()),
        );
        assert_eq!(
            Config::parse(&text, no_env).unwrap().api_key.expose(),
            "file-key"
        );
    }

    #[test]
    fn refusals_say_what_to_change() {
        let cases = [
            (
                MINIMAL.replace("api_key = \"k-123\"", ""),
                "exactly one way",
            ),
            (
                MINIMAL.replace(
                    "api_key = \"k-123\"",
                    "api_key = \"a\"\napi_key_env = \"B\"",
                ),
                "exactly one way",
            ),
            (
                MINIMAL.replace("api_key = \"k-123\"", "api_key_env = \"UNSET\""),
                "not set",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:8080", "ftp://x"),
                "server_url",
            ),
            (MINIMAL.replace("{output}", "{out}"), "unknown placeholder"),
            (
                MINIMAL.replace("[\"fake\", \"{target_url}\", \"{output}\"]", "[]"),
                "command",
            ),
            (MINIMAL.replace("\"Fake\"", "\"A,B\""), "no commas"),
            (
                MINIMAL.replace("state_file =", "concurrency = 0\nstate_file ="),
                "concurrency",
            ),
            (MINIMAL.replace("state_file", "statefile"), "unknown field"),
            (format!("{MINIMAL}output_file = \"../x\""), "output_file"),
            (format!("{MINIMAL}time_limit = \"0s\""), "time_limit"),
        ];
        for (text, expected) in cases {
            let e = Config::parse(&text, no_env).unwrap_err();
            assert!(e.0.contains(expected), "{expected}: {e}");
        }
    }
}
